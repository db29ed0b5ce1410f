"""Every tofu command the backend runs, its argv built in one place (terraform-exec's way): what the engine is
asked to do can be read and tested without the binary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Commands:
    binary: str
    #: The root module the engine runs in (`-chdir`).
    folder: Path
    #: The inputs as a tfvars file (secret inputs never: they travel as TF_VAR_* in the environment).
    var_file: Path
    lock_timeout: int

    def _tofu(self, *args: str) -> list[str]:
        return [self.binary, f"-chdir={self.folder}", *args]

    def _locking(self) -> list[str]:
        return [f"-lock-timeout={self.lock_timeout}s"]

    def version(self) -> list[str]:
        return [self.binary, "version", "-json"]

    def init(
        self, *, backend: bool = True, backend_config: Path | None = None, lock_readonly: bool = False
    ) -> list[str]:
        args = ["init", "-input=false", "-no-color", "-reconfigure"]
        if lock_readonly:
            args.append("-lockfile=readonly")  # a committed lock file is the stack's contract
        if not backend:
            args.append("-backend=false")
        elif backend_config is not None:
            args.append(f"-backend-config={backend_config}")
        return self._tofu(*args)

    def validate(self) -> list[str]:
        return self._tofu("validate", "-json")

    def plan(self, *, out: Path | None = None) -> list[str]:
        args = ["plan", "-json", "-input=false", "-detailed-exitcode", *self._locking(), f"-var-file={self.var_file}"]
        if out is not None:
            args.append(f"-out={out}")
        return self._tofu(*args)

    def apply(self, plan: Path) -> list[str]:
        # The plan's own inputs again: otherwise tofu applies with the auto-loaded terraform.tfvars(.json) values,
        # which the plan's inputs overrode, and refuses ("Mismatch between input and plan variable").
        return self._tofu("apply", "-json", "-input=false", *self._locking(), f"-var-file={self.var_file}", str(plan))

    def destroy(self) -> list[str]:
        return self._tofu(
            "destroy", "-json", "-auto-approve", "-input=false", *self._locking(), f"-var-file={self.var_file}"
        )

    def state_list(self) -> list[str]:
        return self._tofu("state", "list", "-no-color")

    def output(self) -> list[str]:
        return self._tofu("output", "-json", "-no-color")

    def show(self, plan: Path) -> list[str]:
        return self._tofu("show", "-json", "-no-color", str(plan))
