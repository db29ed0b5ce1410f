"""Running things on this machine: the embedded cloud (moto on loopback) and `iac-runner demo`."""
