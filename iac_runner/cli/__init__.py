"""`iac-runner`: the parser and one module per command group; the only place that turns errors into exit codes."""
