"""iac-driver-runner: runs OpenTofu, Pulumi and CloudFormation stacks as a Container Driver job.

The package's folders are its layers; each imports only the layers below it (tests/unit/test_layers.py checks):

    common     errors, log, secrets, the process seam, files, naming, paths, AWS settings
    backends   the Backend protocol and its types, the registry, one module per engine
    job        the Container Driver job: contract, settings, source, run, outputs
    local      the embedded cloud (moto) and the demo
    humanitec  resource definitions: model, validate, render (+ templates), driver emulate
    cli        `iac-runner`: flags and environment in, a job or a tool run, an exit code out
"""
