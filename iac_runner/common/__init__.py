"""What every layer uses: one exception tree, the log, the secret registry, the process seam, file writing."""
