"""OpenTofu (or Terraform) through its CLI and machine-readable UI.

The stack folder is used in place; `.terraform` (TF_DATA_DIR), the saved plan and the runner's tfvars live in
the stack's private work dir. Progress comes from the JSON lines of `plan -json` / `apply -json`; results from
`output -json`; nothing is scraped from human text. Diagnostics are trusted as the engine reports them: when a
plan fails, `tofu validate` tells a configuration error (exit 2) from a failure reading infrastructure (exit 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backends.base import ChangeSummary, Declared, EngineUnavailable, InputSpec, ResourceChange, StackContext
from runner import process
from runner.errors import ConfigError, EngineError, RunnerError
from runner.files import write_atomic
from runner.log import log
from runner.naming import sanitize
from runner.outputs import Output
from runner.settings import StackFile

DEFAULT_BINARY = "tofu"
# The pinned engines `make tools` builds; used when the binary is not on PATH.
TOOLS = Path(__file__).resolve().parent.parent / ".tools"
OVERRIDE_FILE = "zz_iac_runner_backend_override.tf"
_VARIABLE_HEADER = re.compile(r'^\s*variable\s+"([^"]+)"', re.MULTILINE)
_BACKEND_BLOCK = re.compile(r'^\s*backend\s+"[A-Za-z0-9_-]+"\s*\{', re.MULTILINE)
_ACTIONS = {"create": "add", "update": "change", "delete": "remove", "replace": "replace"}
# Diagnostics about the inputs: configuration errors however late the engine finds them.
_INPUT_PROBLEMS = (
    "No value for required variable",
    "Value for undeclared variable",
    "Invalid value for input variable",
    "Invalid value for variable",
)


def _find_binary(configured: str | None) -> str:
    name = configured or os.environ.get("IAC_RUNNER_TOFU_BINARY") or DEFAULT_BINARY
    found = shutil.which(name) or shutil.which(name, path=str(TOOLS / "bin"))
    if found is None:
        raise EngineUnavailable(
            f"{name!r} is not on PATH: run `make tools` (builds the pinned OpenTofu into .tools/bin), install "
            "OpenTofu, or use Terraform with --engine-binary terraform / IAC_RUNNER_TOFU_BINARY=terraform"
        )
    return found


@dataclass
class _Diagnostics:
    """Diagnostics and progress from one engine command's JSON lines."""

    #: apply and destroy repeat the plan's changes: shown once, by the plan.
    show_changes: bool = True
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    changes: list[ResourceChange] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def line(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            log.engine_line("tofu", raw)
            return
        kind = message.get("type")
        hook = message.get("hook") or {}
        address = (hook.get("resource") or {}).get("addr", "")
        if kind == "diagnostic":
            diagnostic = message.get("diagnostic", {})
            if diagnostic.get("severity") == "error":
                self.errors.append(diagnostic)
            else:
                self.warnings.append(diagnostic)
                log.warning(_describe(diagnostic))
        elif kind == "planned_change":
            change = message.get("change", {})
            action = _ACTIONS.get(change.get("action", ""))
            resource = change.get("resource", {})
            if action:
                self.changes.append(
                    ResourceChange(resource.get("addr", "?"), action, resource.get("resource_type", ""))
                )
                if self.show_changes:
                    log.resource(resource.get("addr", "?"), f"will {action}")
        elif kind == "apply_start":
            log.resource(address, "in progress", hook.get("action", ""))
        elif kind == "apply_progress":
            log.resource(address, "in progress", f"{hook.get('action', '')}, {hook.get('elapsed_seconds', 0)}s elapsed")
        elif kind == "apply_complete":
            log.resource(address, "done", f"{hook.get('action', '')} in {hook.get('elapsed_seconds', 0)}s")
        elif kind == "apply_errored":
            self.failed.append(address)
            log.resource(address, "failed", hook.get("action", ""))
        elif kind == "provision_progress":
            log.engine_line("tofu", f"{address}: {hook.get('output', '')}")
        elif kind in ("change_summary", "version", "outputs", "resource_drift", "refresh_start", "refresh_complete"):
            log.debug(message.get("@message", ""))
        else:
            log.debug(message.get("@message", raw))


def _describe(diagnostic: Mapping[str, Any]) -> str:
    where = _where(diagnostic)
    text = diagnostic.get("summary", "")
    detail = diagnostic.get("detail", "")
    return f"{where + ': ' if where else ''}{text}" + (f" — {detail}" if detail else "")


def _where(diagnostic: Mapping[str, Any]) -> str:
    rng = diagnostic.get("range") or {}
    if not rng.get("filename"):
        return ""
    return f"{rng['filename']}:{rng.get('start', {}).get('line', '?')}"


class OpenTofuBackend:
    name = "opentofu"
    companions = ("terraform.tfvars", "terraform.tfvars.json", "*.auto.tfvars", "*.auto.tfvars.json", "backend.tf")

    def detect(self, folder: Path) -> str | None:
        found = _sources(folder)
        return found[0].name if found else None

    def needs_state(self, folder: Path) -> bool:
        return not _declares_backend(folder)

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        return _declared_variables(folder)

    def engine_version(self) -> str:
        binary = _find_binary(None)
        done = process.run(
            [binary, "version", "-json"],
            env=_cli_config(dict(os.environ)),
            engine="tofu",
            deadline=process.Deadline(30),
            on_stdout=lambda line: None,
            on_stderr=lambda line: None,
        )
        try:
            version = json.loads(done.stdout)["terraform_version"]
        except (json.JSONDecodeError, KeyError):
            raise EngineUnavailable(f"{binary} version -json gave no version") from None
        return f"{Path(binary).name} {version} ({binary})"

    # -- verbs -------------------------------------------------------------------------------------------

    def validate(self, ctx: StackContext) -> None:
        with _Tofu(ctx) as tofu:
            tofu.init(backend=False)
            tofu.validate()
            tofu.check_inputs()
        log.info("the configuration is valid")

    def plan(self, ctx: StackContext) -> ChangeSummary:
        with _Tofu(ctx) as tofu:
            tofu.init()
            tofu.check_secret_names()
            return tofu.plan(save=False).summary

    def apply(self, ctx: StackContext) -> list[Output]:
        with _Tofu(ctx) as tofu:
            tofu.init()
            tofu.check_secret_names()
            planned = tofu.plan(save=True)
            if planned.summary.changes:
                tofu.apply_plan()
            else:
                log.info("no changes: the infrastructure matches the configuration")
            return tofu.outputs()

    def destroy(self, ctx: StackContext) -> None:
        with _Tofu(ctx) as tofu:
            tofu.init()
            if not tofu.resources():
                log.info("the state holds no resources: nothing to destroy")
                return
            tofu.destroy()

    def outputs(self, ctx: StackContext) -> list[Output]:
        with _Tofu(ctx) as tofu:
            tofu.init()
            return tofu.outputs()


@dataclass(frozen=True)
class _Planned:
    summary: ChangeSummary


class _Tofu:
    """One run's engine invocations over a stack folder and its private work dir."""

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.binary = _find_binary_or_fail(ctx.engine_binary)
        self.work = ctx.work_dir
        self.work.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.plan_file = self.work / "plan.tfplan"
        self.var_file = self.work / "inputs.tfvars.json"
        self.override = ctx.folder / OVERRIDE_FILE
        self.env = self._environment()

    def __enter__(self) -> _Tofu:
        write_atomic(self.var_file, json.dumps(dict(self.ctx.inputs), indent=2), mode=0o600)
        return self

    def __exit__(self, *exc: object) -> None:
        for path in (self.plan_file, self.var_file, self.override):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _environment(self) -> dict[str, str]:
        env = dict(self.ctx.env)
        env.update(
            {
                "TF_IN_AUTOMATION": "1",
                "TF_INPUT": "0",
                "TF_DATA_DIR": str(self.work / "data"),
                "CHECKPOINT_DISABLE": "1",
            }
        )
        env.setdefault("TF_PLUGIN_CACHE_DIR", str(_plugin_cache()))
        Path(env["TF_PLUGIN_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
        _cli_config(env)
        for name, value in self.ctx.secret_inputs.items():
            # Secrets reach the engine only through its environment, never a file on disk.
            env[f"TF_VAR_{name}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    # -- commands ----------------------------------------------------------------------------------------

    def run(self, *args: str, on_line: Callable[[str], None] | None = None, doing: str) -> process.Completed:
        return process.run(
            [self.binary, f"-chdir={self.ctx.folder}", *args],
            engine="tofu",
            deadline=self.ctx.deadline,
            env=self.env,
            on_stdout=on_line or log.debug,
            on_stderr=lambda line: log.engine_line("tofu", line),
            doing=doing,
        )

    def init(self, backend: bool = True) -> None:
        log.step("tofu init" + ("" if backend else " (no state backend: validation only)"))
        args = ["init", "-input=false", "-no-color", "-reconfigure"]
        if _lock_file_fits(self.ctx.folder, self.binary):
            args.append("-lockfile=readonly")  # a committed lock file is the stack's contract
        if not backend:
            args.append("-backend=false")
        elif not _declares_backend(self.ctx.folder):
            args.append(f"-backend-config={self._backend_config()}")
        elif self.ctx.state_url:
            log.warning("the stack declares its own backend block: it is used, and IAC_RUNNER_STATE_URL is ignored")
        done = self.run(*args, doing="initialising the stack")
        if done.returncode != 0:
            raise _init_error(done.stderr + done.stdout, self.ctx)

    def validate(self) -> None:
        diagnostics = _Diagnostics()
        done = self.run("validate", "-json", on_line=lambda line: None, doing="validating")
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise EngineError("tofu validate gave no JSON report.", details=done.stderr) from None
        for diagnostic in report.get("diagnostics", []):
            (diagnostics.errors if diagnostic.get("severity") == "error" else diagnostics.warnings).append(diagnostic)
        for warning in diagnostics.warnings:
            log.warning(_describe(warning))
        if diagnostics.errors:
            raise _config_error(diagnostics.errors, "The OpenTofu configuration is invalid")

    def check_inputs(self, *, required: bool = True) -> None:
        """Inputs against the declared variables (what `validate` alone does not check). Unknown names are
        checked only when every .tf file could be read here (tofu itself ignores an undeclared TF_VAR_*, the
        way secret inputs arrive); `required=False` leaves missing values to tofu, which knows every source."""
        declared, complete = _declared_variables(self.ctx.folder)
        unknown = [name for name in self.ctx.all_inputs if name not in declared]
        if unknown and complete:
            raise _inputs_error(f"Input {unknown[0]!r} is not a declared variable of the stack.", declared)
        if not required:
            return
        provided = set(self.ctx.all_inputs) | provided_elsewhere(self.ctx.folder, self.env)
        missing = [name for name, spec in declared.items() if spec.required and name not in provided]
        if missing:
            raise _inputs_error(f"Required variable {missing[0]!r} has no value.", declared)

    def check_secret_names(self) -> None:
        """Secret inputs reach tofu as TF_VAR_*, which it ignores when undeclared, so their names are checked here
        (plain inputs tofu checks itself, through the tfvars file). A quick look at the `variable` headers first;
        the full parse only when one seems missing, for the message."""
        text = "\n".join(_strip_comments(path.read_text(errors="replace")) for path in _sources(self.ctx.folder))
        if not set(self.ctx.secret_inputs) <= set(_VARIABLE_HEADER.findall(text)):
            self.check_inputs(required=False)

    def plan(self, save: bool) -> _Planned:
        log.step("tofu plan")
        diagnostics = _Diagnostics()
        args = [
            "plan",
            "-json",
            "-input=false",
            "-detailed-exitcode",
            f"-lock-timeout={self.ctx.lock_timeout}s",
            f"-var-file={self.var_file}",
        ]
        if save:
            args.append(f"-out={self.plan_file}")
        done = self.run(*args, on_line=diagnostics.line, doing="planning")
        undeclared = [w for w in diagnostics.warnings if w.get("summary") == "Value for undeclared variable"]
        if done.returncode == 1 or diagnostics.errors or undeclared:
            raise self._plan_error(diagnostics.errors or undeclared, done)
        summary = ChangeSummary(tuple(diagnostics.changes))
        log.info(f"plan: {summary}")
        return _Planned(summary)

    def _plan_error(self, errors: list[dict[str, Any]], done: process.Completed) -> RunnerError:
        problems = [e for e in errors if e.get("summary", "").startswith(_INPUT_PROBLEMS)]
        if problems:
            return _inputs_error(_input_summary(problems[0]), _variables(self.ctx.folder), errors)
        lock = _lock_error(errors, self.binary, self.ctx)
        if lock:
            return lock
        # Is the configuration itself wrong (exit 2), or did reading the infrastructure fail (exit 1)?
        report = self.run("validate", "-json", on_line=lambda line: None, doing="validating")
        with contextlib.suppress(json.JSONDecodeError):
            invalid = [d for d in json.loads(report.stdout).get("diagnostics", []) if d.get("severity") == "error"]
            if invalid:
                return _config_error(invalid, "The OpenTofu configuration is invalid")
        return _engine_error(errors, "tofu plan failed", done.stderr)

    def apply_plan(self) -> None:
        log.step("tofu apply")
        diagnostics = _Diagnostics(show_changes=False)
        done = self.run(
            "apply",
            "-json",
            "-input=false",
            f"-lock-timeout={self.ctx.lock_timeout}s",
            # The plan's own inputs again: otherwise tofu applies with the auto-loaded terraform.tfvars(.json)
            # values, which the plan's inputs overrode, and refuses ("Mismatch between input and plan variable").
            f"-var-file={self.var_file}",
            str(self.plan_file),
            on_line=diagnostics.line,
            doing="applying",
        )
        if done.returncode != 0 or diagnostics.errors:
            raise _lock_error(diagnostics.errors, self.binary, self.ctx) or _engine_error(
                diagnostics.errors, "tofu apply failed", done.stderr, diagnostics.failed
            )

    def destroy(self) -> None:
        log.step("tofu destroy")
        diagnostics = _Diagnostics()
        done = self.run(
            "destroy",
            "-json",
            "-auto-approve",
            "-input=false",
            f"-lock-timeout={self.ctx.lock_timeout}s",
            f"-var-file={self.var_file}",
            on_line=diagnostics.line,
            doing="destroying",
        )
        if done.returncode != 0 or diagnostics.errors:
            problems = [e for e in diagnostics.errors if e.get("summary", "").startswith(_INPUT_PROBLEMS)]
            if problems:
                raise _inputs_error(_input_summary(problems[0]), _variables(self.ctx.folder), diagnostics.errors)
            raise _lock_error(diagnostics.errors, self.binary, self.ctx) or _engine_error(
                diagnostics.errors, "tofu destroy failed", done.stderr, diagnostics.failed
            )

    def resources(self) -> list[str]:
        done = self.run("state", "list", "-no-color", on_line=lambda line: None, doing="reading the state")
        if done.returncode != 0 and "No state file was found" in done.stderr:
            return []  # never created (or its state was removed): nothing to destroy
        if done.returncode != 0:
            raise _lock_error([], self.binary, self.ctx, done.stderr) or EngineError(
                "tofu could not read the stack's state.", details=done.stderr
            )
        return [line for line in done.stdout.splitlines() if line.strip()]

    def outputs(self) -> list[Output]:
        done = self.run("output", "-json", "-no-color", on_line=lambda line: None, doing="reading outputs")
        if done.returncode != 0:
            raise EngineError("tofu output failed.", details=done.stderr)
        try:
            values = json.loads(done.stdout or "{}")
        except json.JSONDecodeError:
            raise EngineError("tofu output -json did not return JSON.") from None
        return [Output(name, item.get("value"), bool(item.get("sensitive"))) for name, item in values.items()]

    # -- state ---------------------------------------------------------------------------------------------

    def _backend_config(self) -> Path:
        """The override that selects the backend for IAC_RUNNER_STATE_URL, and its -backend-config file."""
        url = self.ctx.state_url or ""
        parts = urlsplit(url)
        key = sanitize(self.ctx.stack_name, allowed="a-zA-Z0-9_.-", max_length=200)
        if parts.scheme == "s3":
            kind = "s3"
            settings: dict[str, Any] = {
                "bucket": parts.netloc,
                "key": "/".join(p for p in (parts.path.strip("/"), key, "terraform.tfstate") if p),
                "region": self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION") or "us-east-1",
                "use_lockfile": True,
            }
            endpoint = self.env.get("AWS_ENDPOINT_URL_S3") or self.env.get("AWS_ENDPOINT_URL")
            if endpoint:
                # An emulator or S3-compatible store: path-style and no AWS account lookups.
                settings.update(
                    {
                        "endpoints": {"s3": endpoint},
                        "use_path_style": True,
                        "skip_credentials_validation": True,
                        "skip_requesting_account_id": True,
                        "skip_metadata_api_check": True,
                        "skip_region_validation": True,
                    }
                )
        else:
            kind = "local"
            state_dir = Path(parts.path) / key
            state_dir.mkdir(parents=True, exist_ok=True)
            settings = {"path": str(state_dir / "terraform.tfstate")}
        write_atomic(self.override, f'terraform {{\n  backend "{kind}" {{}}\n}}\n')
        config = self.work / "backend.tfbackend"
        write_atomic(config, "".join(f"{k} = {_hcl(v)}\n" for k, v in settings.items()), mode=0o600)
        log.info(f"state: {kind} backend at {_state_location(kind, settings)}")
        return config


def _find_binary_or_fail(configured: str | None) -> str:
    try:
        return _find_binary(configured)
    except EngineUnavailable as exc:
        reason, _, how = str(exc).partition(": ")
        raise ConfigError(
            f"The OpenTofu engine is not available: {reason}.",
            fix=f"{how[:1].upper()}{how[1:]}; `iac-runner backends` shows what each backend finds."
            if how
            else "See `iac-runner backends`.",
        ) from None


def _cli_config(env: dict[str, str]) -> dict[str, str]:
    """Use the offline provider mirror `make tools` lays out unless the user's own CLI config exists."""
    configured = env.get("TF_CLI_CONFIG_FILE")
    if (not configured or not Path(configured).is_file()) and (TOOLS / "tofu.tfrc").is_file():
        env["TF_CLI_CONFIG_FILE"] = str(TOOLS / "tofu.tfrc")
    return env


def _plugin_cache() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "iac-driver-runner" / "tofu-plugin-cache"


def _hcl(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_hcl(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def _state_location(kind: str, settings: Mapping[str, Any]) -> str:
    return f"s3://{settings['bucket']}/{settings['key']}" if kind == "s3" else str(settings["path"])


def _declares_backend(folder: Path) -> bool:
    """Whether the stack brings its own backend block (e.g. a `backend.tf` the driver's files wrote)."""
    for path in _sources(folder):
        if path.name != OVERRIDE_FILE and _BACKEND_BLOCK.search(_strip_comments(path.read_text(errors="replace"))):
            return True
    return False


def _sources(folder: Path) -> list[Path]:
    """The stack's configuration files."""
    return sorted((*folder.glob("*.tf"), *folder.glob("*.tofu")))


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|(#|//)[^\n]*", "", text, flags=re.DOTALL)


def _variables(folder: Path) -> dict[str, InputSpec]:
    return _declared_variables(folder)[0]


def _declared_variables(folder: Path) -> Declared:
    """Declared variables, and whether every .tf/.tofu file could be parsed."""
    import hcl2

    declared: dict[str, InputSpec] = {}
    complete = True
    for path in _sources(folder):
        try:
            with path.open() as handle:
                blocks = hcl2.load(handle).get("variable", [])
        except Exception:  # a broken file is validate's to report
            complete = False
            continue
        for block in blocks:
            for name, body in block.items():
                declared[name.strip('"')] = InputSpec("default" not in body, body.get("sensitive") is True)
    return declared, complete


def _lock_file_fits(folder: Path, binary: str) -> bool:
    """Whether the committed lock file can be enforced read-only: not when it locks providers only for the
    other engine's registry (a lock file written by tofu names registry.opentofu.org, terraform's
    registry.terraform.io); the engine then records its own entries beside them."""
    lock = folder / ".terraform.lock.hcl"
    if not lock.is_file():
        return False
    hosts = set(re.findall(r'^provider\s+"([^/"]+)/', lock.read_text(errors="replace"), re.MULTILINE))
    engine = Path(binary).name
    own = "registry.terraform.io" if engine.startswith("terraform") else "registry.opentofu.org"
    other = {"registry.terraform.io", "registry.opentofu.org"} - {own}
    if hosts & other and own not in hosts:
        log.warning(
            f"the stack's .terraform.lock.hcl locks providers of {', '.join(sorted(hosts))} only, but {engine} "
            f"installs them from {own}: it is not enforced read-only, and {engine} adds its own entries"
        )
        return False
    return True


def provided_elsewhere(folder: Path, env: Iterable[str]) -> set[str]:
    """Variables set the way Container Driver users set them today: tfvars files beside the code, TF_VAR_* (the
    names in `env`)."""
    import hcl2

    names = {k.removeprefix("TF_VAR_") for k in env if k.startswith("TF_VAR_")}
    for pattern in ("terraform.tfvars", "*.auto.tfvars"):
        for path in folder.glob(pattern):
            with contextlib.suppress(Exception), path.open() as handle:
                names.update(hcl2.load(handle))
    for pattern in ("terraform.tfvars.json", "*.auto.tfvars.json"):
        for path in folder.glob(pattern):
            with contextlib.suppress(Exception):
                names.update(json.loads(path.read_text()))
    return names


# -- errors --------------------------------------------------------------------------------------------


def _config_error(errors: list[dict[str, Any]], what: str) -> ConfigError:
    lines = [_describe(e) for e in errors[:10]]
    return ConfigError(
        f"{what}: {errors[0].get('summary', 'error')}.",
        where=_where(errors[0]) or "the stack's .tf files",
        fix="Correct the configuration at the place shown; `iac-runner validate` checks it without touching state.",
        details="\n".join(lines),
    )


def _input_summary(diagnostic: Mapping[str, Any]) -> str:
    """One sentence for an input problem tofu reported, naming the variable (tofu's detail goes to details)."""
    summary = diagnostic.get("summary", "")
    detail = diagnostic.get("detail", "")
    code = (diagnostic.get("snippet") or {}).get("code") or ""
    found = re.search(r'named "([^"]+)"|variable "([^"]+)"|\bvar\.([A-Za-z0-9_-]+)', f"{code}\n{detail}")
    name = next((g for g in found.groups() if g), "") if found else ""
    first = detail.strip().split("\n", 1)[0].strip().rstrip(".")
    if not name:
        return f"{summary}: {first}." if first else f"{summary}."
    if summary.startswith("Value for undeclared variable"):
        return f"Input {name!r} is not a declared variable of the stack."
    if summary.startswith("No value for required variable"):
        return f"Required variable {name!r} has no value."
    if summary.startswith("Invalid value for input variable"):
        return f"Input {name!r} has the wrong type: {first.rsplit(': ', 1)[-1]}."
    return f"Input {name!r} is not accepted by the stack's validation rule: {first}."


def _inputs_error(
    summary: str, declared: Mapping[str, InputSpec], errors: list[dict[str, Any]] | None = None
) -> ConfigError:
    listing = ", ".join(f"{n}{'' if spec.required else ' (optional)'}" for n, spec in sorted(declared.items()))
    return ConfigError(
        summary if summary.endswith(".") else summary + ".",
        where=f"declared variables: {listing or 'none'}",
        fix="Give each required variable a value in the resource inputs (or a secret input), remove inputs the stack "
        "does not declare, and match each variable's type.",
        details="\n".join(_describe(e) for e in (errors or [])[:5]),
    )


def _engine_error(errors: list[dict[str, Any]], what: str, stderr: str, failed: list[str] | None = None) -> EngineError:
    lines = [_describe(e) for e in errors[:10]] or [line for line in stderr.splitlines() if line.strip()][-10:]
    return EngineError(
        f"{what}: {errors[0].get('summary', 'see details') if errors else 'see details'}.",
        where=", ".join(failed or []) or (_where(errors[0]) if errors else "") or "",
        fix="Fix the cause shown below and run again; OpenTofu saved its state, so the next run continues from there.",
        details="\n".join(lines),
    )


_LOCK_FIELDS = re.compile(r"^\s*(ID|Path|Operation|Who|Version|Created|Info):\s*(.*)$", re.MULTILINE)


def _lock_error(errors: list[dict[str, Any]], binary: str, ctx: StackContext, text: str = "") -> EngineError | None:
    lock = next((e for e in errors if "state lock" in e.get("summary", "").lower()), None)
    body = (lock.get("detail", "") if lock else "") or (text if "state lock" in text.lower() else "")
    if not body:
        return None
    info = dict(_LOCK_FIELDS.findall(body))
    return EngineError(
        f"The stack's state is locked by another run ({info.get('Who', 'unknown holder')}, "
        f"since {info.get('Created', 'an unknown time')}).",
        where=f"lock {info.get('ID', '?')} on {info.get('Path', ctx.state_url or 'the state')}, "
        f"operation {info.get('Operation', '?')}",
        fix=f"Wait for that run to finish (IAC_RUNNER_LOCK_TIMEOUT waits longer). If it died, release the lock: "
        f"`{Path(binary).name} -chdir=<stack> force-unlock {info.get('ID', '<ID>')}` with the same backend "
        "configuration. iac-runner never force-unlocks by itself.",
    )


def _init_error(text: str, ctx: StackContext) -> ConfigError:
    lower = text.lower()
    tail = "\n".join(line for line in text.splitlines() if line.strip())[-1500:]
    if "nosuchbucket" in lower or "bucket does not exist" in lower or ("s3 bucket" in lower and "not exist" in lower):
        return ConfigError(
            "The state bucket does not exist.",
            where=f"IAC_RUNNER_STATE_URL={ctx.state_url}",
            fix="Create the bucket (versioning recommended) or point IAC_RUNNER_STATE_URL at an existing one.",
            details=tail,
        )
    if "provider" in lower and ("could not" in lower or "failed to" in lower or "no available" in lower):
        return ConfigError(
            "A provider the stack needs is not available to `tofu init` (no network registry here).",
            where=str(ctx.folder),
            fix="Add the provider to the offline mirror (`make tools`, TF_CLI_CONFIG_FILE with a filesystem_mirror), "
            "or run where the registry is reachable.",
            details=tail,
        )
    first = re.search(r"^Error: (.+)$", text, re.MULTILINE)
    at = re.search(r"^\s*on (\S+) line (\d+)", text, re.MULTILINE)
    return ConfigError(
        f"tofu init failed: {first.group(1).strip().rstrip('.')}." if first else "tofu init failed.",
        where=f"{at.group(1)}:{at.group(2)} in {ctx.folder}" if at else str(ctx.folder),
        fix="Correct the configuration at the place shown (see the engine's message below).",
        details=tail,
    )


BACKEND = OpenTofuBackend()
