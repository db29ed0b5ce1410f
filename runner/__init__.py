"""iac-driver-runner: the core that runs a stack through a backend and writes the driver's output files."""
