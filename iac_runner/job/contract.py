"""The Container Driver's side of the contract (part A): ACTION, SCRIPTS_DIRECTORY and the file variables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iac_runner.common.errors import ConfigError
from iac_runner.common.log import log
from iac_runner.job.outputs import OutputFiles
from iac_runner.job.run import Action, RunRequest
from iac_runner.job.settings import (
    check_no_overlap,
    load_inputs_file,
    load_settings,
    secret_inputs_from_env,
)

ACTIONS: dict[str, Action] = {"create": "apply", "destroy": "destroy"}
#: The names the runner's own jobs (demo, driver emulate) give the driver's files in SCRIPTS_DIRECTORY.
FILES = {"OUTPUTS_FILE": "outputs.json", "SECRET_OUTPUTS_FILE": "secret-outputs.json", "ERROR_FILE": "error.txt"}


def error_file(environ: Mapping[str, str]) -> Path | None:
    """Where to write the failure reason; resolved first so that every later error can be reported."""
    raw = environ.get("ERROR_FILE")
    if not raw:
        return None
    base = Path(environ.get("SCRIPTS_DIRECTORY") or ".")
    return base / raw


def request(environ: Mapping[str, str]) -> RunRequest:
    action = _action(environ)
    scripts = _scripts_directory(environ)
    files = OutputFiles(
        values=_path(environ, "OUTPUTS_FILE", scripts),
        secrets=_path(environ, "SECRET_OUTPUTS_FILE", scripts),
    )
    if not environ.get("ERROR_FILE"):
        raise _missing("ERROR_FILE", "the file where the failure reason is written for the user")
    settings = load_settings({}, environ)
    inputs = _inputs(environ, scripts)
    secrets = secret_inputs_from_env(environ)
    check_no_overlap(inputs, secrets)
    return RunRequest(action, settings, scripts, inputs, secrets, output_files=files, container=True)


def _action(environ: Mapping[str, str]) -> Action:
    raw = environ.get("ACTION")
    if not raw:
        raise _missing("ACTION", "create or destroy")
    action = ACTIONS.get(raw.strip().lower())
    if action is None:
        raise ConfigError(
            f"ACTION must be 'create' or 'destroy', not {raw!r}.",
            where="environment variable ACTION",
            fix="The Container Driver sets ACTION itself; when running by hand use ACTION=create or ACTION=destroy "
            "(an update is a create).",
        )
    return action


def _scripts_directory(environ: Mapping[str, str]) -> Path:
    raw = environ.get("SCRIPTS_DIRECTORY")
    if not raw:
        raise _missing("SCRIPTS_DIRECTORY", "the shared working directory of the job")
    path = Path(raw)
    if not path.is_dir():
        raise ConfigError(
            f"SCRIPTS_DIRECTORY {raw} does not exist or is not a directory.",
            where="environment variable SCRIPTS_DIRECTORY",
            fix="Point it at the job's shared directory (job.shared_directory in the definition).",
        )
    return path.resolve()


def _path(environ: Mapping[str, str], name: str, base: Path) -> Path:
    raw = environ.get(name)
    if not raw:
        raise _missing(name, "a path the runner writes the outputs to")
    return base / raw


def _inputs(environ: Mapping[str, str], base: Path) -> dict[str, Any]:
    raw = environ.get("RESOURCE_INPUTS_FILE")
    if not raw:
        return {}
    path = base / raw
    if not path.exists():
        log.warning(f"RESOURCE_INPUTS_FILE {path} does not exist: running with no inputs")
        return {}
    return load_inputs_file(path, "RESOURCE_INPUTS_FILE")


def _missing(name: str, meaning: str) -> ConfigError:
    return ConfigError(
        f"The environment variable {name} is not set.",
        where="the job's environment (Container Driver contract)",
        fix=f"Set {name}: {meaning}. The Container Driver sets it; when running by hand, see docs/contract.md.",
    )
