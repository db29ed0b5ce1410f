"""The Container Driver job: contract -> settings -> source -> run (a backend's verb) -> outputs."""
