"""Deprecated: the 0.1 import root of the Backend protocol. Use `iac_runner.backends.base`; removed in 0.3."""
