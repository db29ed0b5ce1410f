"""OpenTofu (or Terraform) through its CLI and machine-readable UI.

`.terraform` (TF_DATA_DIR), the saved plan and the runner's tfvars live in the stack's private work dir.
Progress comes from the JSON lines of `plan -json` / `apply -json`; results from `output -json`; nothing is scraped
from human text. Diagnostics are trusted as the engine reports them: when a plan fails, `tofu validate` tells a
configuration error (exit 2) from a failure reading infrastructure (exit 1).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from iac_runner.backends.base import (
    BackendDefaults,
    ChangeSummary,
    Declared,
    Drift,
    EngineUnavailable,
    Output,
    ResourceChange,
    StackContext,
    StackFile,
)
from iac_runner.backends.opentofu import config
from iac_runner.backends.opentofu import diagnostics as diag
from iac_runner.backends.opentofu.commands import Commands
from iac_runner.common import aws, paths, process
from iac_runner.common.errors import ConfigError, EngineError, RunnerError
from iac_runner.common.files import write_atomic
from iac_runner.common.log import log
from iac_runner.common.naming import sanitize
from iac_runner.common.process import Deadline
from iac_runner.common.retry import Retry

DEFAULT_BINARY = "tofu"


def _find_binary(configured: str | None) -> str:
    name = configured or os.environ.get("IAC_RUNNER_TOFU_BINARY") or DEFAULT_BINARY
    found = paths.find_executable(name)
    if found is None:
        raise EngineUnavailable(
            f"{name!r} is not on PATH: run `make tools` (builds the pinned OpenTofu into .tools/bin), install "
            "OpenTofu, or use Terraform with --engine-binary terraform / IAC_RUNNER_TOFU_BINARY=terraform"
        )
    return found


class OpenTofuBackend(BackendDefaults):
    name = "opentofu"
    companions = (
        *config.TFVARS,
        *config.TFVARS_JSON,
        "backend.tf",
        "backend.tf.json",
    )
    host_variables = ("TF_CLI_CONFIG_FILE", "TF_PLUGIN_CACHE_DIR")

    def detect(self, folder: Path) -> str | None:
        found = config.sources(folder)
        return found[0].name if found else None

    def needs_state(self, folder: Path | None) -> bool:
        return folder is None or not config.backend_files(folder)

    def state_identity(self, folder: Path) -> str | None:
        declared = config.backend_files(folder)
        return f"the backend block in {declared[0].name}" if declared else None

    def declared_inputs(self, folder: Path, stack_file: StackFile) -> Declared:
        return config.declared_variables(folder)

    def provided_inputs(self, folder: Path, env_names: set[str]) -> set[str]:
        return config.provided_elsewhere(folder, env_names)

    def engine_version(self) -> str:
        binary = _find_binary(None)
        done = process.run(
            Commands(binary, Path("."), Path("."), 0).version(),
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

    def local_dependencies(self, folder: Path) -> set[Path]:
        return config.module_dirs(folder)

    # -- verbs -------------------------------------------------------------------------------------------

    def validate(self, ctx: StackContext) -> None:
        with _Tofu(ctx) as tofu:
            tofu.init(backend=False)
            with ctx.events.phase("validate"):
                tofu.validate()
                tofu.check_inputs()
        log.info("the configuration is valid")

    def plan(self, ctx: StackContext) -> ChangeSummary:
        with _Tofu(ctx) as tofu:
            tofu.init()
            tofu.check_secret_names()
            return tofu.plan(save=True).summary

    def apply(self, ctx: StackContext) -> list[Output]:
        with _Tofu(ctx) as tofu:
            tofu.init()
            tofu.check_secret_names()
            # A transient fault before any resource was touched is tried again from a new plan.
            Retry(ctx.retries, ctx.deadline).run(tofu.plan_and_apply, "tofu plan and apply")
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

    def drift(self, ctx: StackContext) -> Drift:
        with _Tofu(ctx) as tofu:
            tofu.init()
            tofu.check_secret_names()
            return tofu.drift()


@dataclass(frozen=True)
class _Planned:
    summary: ChangeSummary
    #: tofu's -detailed-exitcode said the plan changes something (resources or outputs).
    changes: bool


class _Tofu:
    """One run's engine invocations over the stack's view (the run's own copy of its folder) and work dir."""

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.binary = _find_binary_or_fail(ctx.options.binary)
        self.work = paths.private_dir(ctx.work_dir)
        self.plan_file = self.work / "plan.tfplan"
        self.commands = Commands(self.binary, ctx.folder, self.work / "inputs.tfvars.json", ctx.lock_timeout)
        self.retry = Retry(ctx.retries, ctx.deadline)
        self.env = self._environment()
        #: Where the state lives, as the log says it: what an operator needs to push an emergency copy back.
        self.state_where = "the stack's state backend"

    def __enter__(self) -> _Tofu:
        write_atomic(self.commands.var_file, json.dumps(dict(self.ctx.inputs), indent=2), 0o600, durable=False)
        return self

    def __exit__(self, *exc: object) -> None:
        # The saved plan holds every input's value, secret ones too: it does not outlive the run.
        for path in (self.plan_file, self.commands.var_file):
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
        cache = Path(env.get("TF_PLUGIN_CACHE_DIR") or paths.cache_home() / "tofu-plugin-cache")
        env["TF_PLUGIN_CACHE_DIR"] = str(paths.writable(cache, "OpenTofu plugin cache", setting="TF_PLUGIN_CACHE_DIR"))
        # Without it, the first init of a stack that has no dependency lock file installs its providers into the
        # shared cache again, replacing binaries that parallel runs are executing (bench: 11 of 60 first creates,
        # 20 at once, failed with "Failed to load plugin schemas"; 0 of 60 with it). The lock file tofu then
        # writes, in the run's view, holds this platform's checksum only; a committed lock file is used as it is.
        env.setdefault("TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE", "true")
        _cli_config(env)
        for name, value in self.ctx.secret_inputs.items():
            # Secrets reach the engine only through its environment, never a file on disk.
            env[f"TF_VAR_{name}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    # -- commands ----------------------------------------------------------------------------------------

    def run(
        self,
        argv: list[str],
        on_line: Callable[[str], None] | None = None,
        *,
        doing: str,
        deadline: Deadline | None = None,
    ) -> process.Completed:
        return process.run(
            argv,
            engine="tofu",
            deadline=deadline or self.ctx.deadline,
            env=self.env,
            on_stdout=on_line or log.debug,
            on_stderr=lambda line: log.engine_line("tofu", line),
            doing=doing,
        )

    def init(self, backend: bool = True) -> None:
        log.step("tofu init" + ("" if backend else " (no state backend: validation only)"))
        backend_config = None
        declared = config.backend_files(self.ctx.folder)
        if backend and len(declared) > 1:
            raise ConfigError(
                f"The stack declares its state backend twice: in {' and '.join(p.name for p in declared)}.",
                where=str(self.ctx.folder),
                fix="Keep one backend block: a backend.tf the driver's `files` write replaces nothing, it adds a "
                "second one. Drop one of the files (or the block in the stack's code).",
            )
        if backend and declared:
            self.state_where = f"the backend block in {declared[0].name}"
            log.info(f"state: the stack's own backend block in {declared[0].name}")
            if self.ctx.state_url:
                log.warning("the stack declares its own backend block: it is used, and IAC_RUNNER_STATE_URL is ignored")
        elif backend:
            backend_config = self._backend_config()
        argv = self.commands.init(
            backend=backend, backend_config=backend_config, lock_readonly=_lock_file_fits(self.ctx.folder, self.binary)
        )
        limit = self.ctx.deadline.phase(
            "init",
            self.ctx.init_timeout,
            "IAC_RUNNER_INIT_TIMEOUT",
            "the provider registry (or mirror) and the state backend",
        )

        def attempt() -> None:
            with _plugin_cache_lock(self.env["TF_PLUGIN_CACHE_DIR"], limit):
                done = self.run(
                    argv, doing="initialising the stack (providers, modules, state backend)", deadline=limit
                )
            if done.returncode != 0:
                raise diag.init_error(done.stderr + done.stdout, self.ctx.state_url, self.ctx.folder)

        with self.ctx.events.phase("init"):
            Retry(self.ctx.retries, limit).run(attempt, "tofu init")

    def validate(self) -> None:
        done = self.run(self.commands.validate(), lambda line: None, doing="validating")
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise diag.panic(done.stderr) or EngineError(
                "tofu validate gave no JSON report.", details=done.stderr
            ) from None
        found = report.get("diagnostics", [])
        for warning in (d for d in found if d.get("severity") != "error"):
            log.warning(diag.describe(warning))
        errors = [d for d in found if d.get("severity") == "error"]
        if errors:
            raise diag.config_error(errors, "The OpenTofu configuration is invalid")

    def check_inputs(self, *, required: bool = True) -> None:
        """Inputs against the declared variables (what `validate` alone does not check). Unknown names are
        checked only when every configuration file could be read here (tofu itself ignores an undeclared
        TF_VAR_*, the way secret inputs arrive); `required=False` leaves missing values to tofu, which knows every
        source."""
        declared, complete = config.declared_variables(self.ctx.folder)
        unknown = [name for name in self.ctx.all_inputs if name not in declared]
        if unknown and complete:
            raise diag.inputs_error(f"Input {unknown[0]!r} is not a declared variable of the stack.", declared)
        if not required:
            return
        provided = set(self.ctx.all_inputs) | config.provided_elsewhere(self.ctx.folder, self.env)
        missing = [name for name, spec in declared.items() if spec.required and name not in provided]
        if missing:
            raise diag.inputs_error(f"Required variable {missing[0]!r} has no value.", declared)

    def check_secret_names(self) -> None:
        """Secret inputs reach tofu as TF_VAR_*, which it ignores when undeclared, so their names are checked here
        (plain inputs tofu checks itself, through the tfvars file). A quick look at the variables' names first;
        the full parse only when one seems missing, for the message."""
        if not set(self.ctx.secret_inputs) <= config.variable_names(self.ctx.folder):
            self.check_inputs(required=False)

    def plan(self, save: bool) -> _Planned:
        with self.ctx.events.phase("plan"):
            return self.retry.run(lambda: self._plan(save), "tofu plan")

    def _plan(self, save: bool, drift: bool = False) -> _Planned:
        """`drift`: the plan is read for what changed behind the state's back, not shown as the run's changes."""
        log.step("tofu plan" + (" (drift detection)" if drift else ""))
        found = diag.Diagnostics(show_changes=not drift)
        out = self.plan_file if save else None
        done = self.run(self.commands.plan(out=out), found.line, doing="planning")
        if found.version:
            self.ctx.events.engine_version(Path(self.binary).name, found.version)
        undeclared = [w for w in found.warnings if w.get("summary") == "Value for undeclared variable"]
        if done.returncode == 1 or found.errors or undeclared:
            raise self._plan_error(found.errors or undeclared, done)
        changes = tuple(found.changes)
        if save and not drift and any(c.action in ("replace", "remove") for c in changes):
            changes = self._with_replace_paths(changes)
        summary = ChangeSummary(changes)
        if not drift:
            self.ctx.events.changes(summary)
            log.info(f"plan: {summary}")
        return _Planned(summary, done.returncode == 2)

    def _with_replace_paths(self, changes: tuple[ResourceChange, ...]) -> tuple[ResourceChange, ...]:
        """The attributes that force each replacement (`replace_paths` of `tofu show -json`), for the guard and
        the report; the streamed plan gives only the reason."""
        done = self.run(self.commands.show(self.plan_file), lambda line: None, doing="reading the plan")
        with contextlib.suppress(json.JSONDecodeError):
            forced = diag.replace_paths(json.loads(done.stdout))
            return tuple(replace(c, attributes=forced.get(c.address, c.attributes)) for c in changes)
        return changes

    def plan_and_apply(self) -> None:
        """One attempt; the caller tries it again as a whole, so the plan is not retried on its own as well
        (retries within retries would multiply the bound)."""
        with self.ctx.events.phase("plan"):
            planned = self._plan(save=True)
        self.ctx.approve(planned.summary)
        if not planned.changes:
            log.info("no changes: the infrastructure matches the configuration")
            return
        with self.ctx.events.phase("apply"):
            self.apply_plan()

    def _plan_error(self, errors: list[dict[str, Any]], done: process.Completed) -> RunnerError:
        problems = diag.input_problems(errors)
        if problems:
            declared = config.declared_variables(self.ctx.folder)[0]
            return diag.inputs_error(diag.input_summary(problems[0]), declared, errors)
        lock = diag.lock_error(errors, self.binary, self.ctx.state_url)
        if lock:
            return lock
        crashed = diag.panic(done.stderr)
        if crashed:
            return crashed
        if diag.transient(errors, done.stderr):
            return diag.engine_error(errors, "tofu plan failed", done.stderr)
        # Is the configuration itself wrong (exit 2), or did reading the infrastructure fail (exit 1)?
        report = self.run(self.commands.validate(), lambda line: None, doing="validating")
        with contextlib.suppress(json.JSONDecodeError):
            invalid = [d for d in json.loads(report.stdout).get("diagnostics", []) if d.get("severity") == "error"]
            if invalid:
                return diag.config_error(invalid, "The OpenTofu configuration is invalid")
        return diag.engine_error(errors, "tofu plan failed", done.stderr)

    def apply_plan(self) -> None:
        log.step("tofu apply")
        found = diag.Diagnostics(show_changes=False)
        done = self.run(self.commands.apply(self.plan_file), found.line, doing="applying")
        if done.returncode != 0 or found.errors:
            raise self._change_error(found, done, "tofu apply failed")

    def _change_error(self, found: diag.Diagnostics, done: process.Completed, what: str) -> RunnerError:
        """A failed apply or destroy: a state tofu could not save, a held lock, or the engine's failure (tried
        again only when no resource was touched yet)."""
        if diag.state_not_saved(found.errors, found.other):
            return diag.state_lost_error(found, self._keep_errored_state(), self.binary, self.state_where)
        return diag.lock_error(found.errors, self.binary, self.ctx.state_url) or diag.engine_error(
            found.errors, what, done.stderr, found.failed, retry_safe=not found.started
        )

    def _keep_errored_state(self) -> Path | None:
        """tofu's emergency copy (`errored.tfstate`, written where it runs: the run's own view of the stack, which
        goes away with the run) moved where it survives, readable by its owner only: it holds the stack's
        secrets."""
        errored = self.ctx.folder / "errored.tfstate"
        if not errored.is_file() or self.ctx.keep_dir is None:
            return errored if errored.is_file() else None
        try:
            paths.private_dir(self.ctx.keep_dir)
            kept = self.ctx.keep_dir / "errored.tfstate"
            write_atomic(kept, errored.read_text(), mode=0o600)
        except OSError:
            return errored
        return kept

    def destroy(self) -> None:
        log.step("tofu destroy")
        found = diag.Diagnostics()
        with self.ctx.events.phase("destroy"):
            done = self.run(self.commands.destroy(), found.line, doing="destroying")
        if done.returncode != 0 or found.errors:
            problems = diag.input_problems(found.errors)
            if problems:
                declared = config.declared_variables(self.ctx.folder)[0]
                raise diag.inputs_error(diag.input_summary(problems[0]), declared, found.errors)
            raise self._change_error(found, done, "tofu destroy failed")

    def resources(self) -> list[str]:
        done = self.run(self.commands.state_list(), lambda line: None, doing="reading the state")
        if done.returncode != 0 and "No state file was found" in done.stderr:
            return []  # never created (or its state was removed): nothing to destroy
        if done.returncode != 0:
            raise diag.lock_error([], self.binary, self.ctx.state_url, done.stderr) or EngineError(
                "tofu could not read the stack's state.",
                details=done.stderr,
                transient=diag.transient([], done.stderr),
            )
        return [line for line in done.stdout.splitlines() if line.strip()]

    def outputs(self) -> list[Output]:
        with self.ctx.events.phase("outputs"):
            done = self.run(self.commands.output(), lambda line: None, doing="reading outputs")
        if done.returncode != 0:
            raise EngineError("tofu output failed.", details=done.stderr)
        try:
            values = json.loads(done.stdout or "{}")
        except json.JSONDecodeError:
            raise EngineError("tofu output -json did not return JSON.") from None
        return [Output(name, item.get("value"), bool(item.get("sensitive"))) for name, item in values.items()]

    def drift(self) -> Drift:
        """A plan, saved and read back (`show -json`): its refresh's `resource_drift` is what changed behind the
        state's back, kept to what an apply would put back (diag.drift). Nothing is applied or written to the
        state. Not `plan -refresh-only`: that also reports attributes the provider computes, which another resource
        of the stack moved (an aws_s3_bucket's `versioning` once its aws_s3_bucket_versioning applied), so a stack
        would drift right after its create."""
        with self.ctx.events.phase("refresh"):
            self.retry.run(lambda: self._plan(save=True, drift=True), "tofu plan")
            done = self.run(self.commands.show(self.plan_file), lambda line: None, doing="reading the drift")
        try:
            found = diag.drift(json.loads(done.stdout))
        except json.JSONDecodeError:
            raise EngineError("tofu show -json gave no JSON plan.", details=done.stderr) from None
        for resource in found.resources:
            what = "deleted" if resource.deleted else f"changed: {', '.join(resource.attributes) or '?'}"
            log.resource(resource.address, "drifted", what, type=resource.type)
        log.info(f"drift: {len(found.resources)} resource(s) differ from the state" if found.resources else "no drift")
        return found

    # -- state ---------------------------------------------------------------------------------------------

    def _backend_config(self) -> Path:
        """The override that selects the backend for IAC_RUNNER_STATE_URL (in the run's own view of the stack,
        never the user's folder), and its -backend-config file."""
        kind, settings = backend_settings(self.ctx.state_url or "", self.ctx.stack_name, self.env)
        if kind == "local":
            _private_state(Path(settings["path"]).parent, self.ctx.state_url or "")
        override = f'terraform {{\n  backend "{kind}" {{}}\n}}\n'
        write_atomic(self.ctx.folder / config.OVERRIDE_FILE, override, durable=False)
        backend_file = self.work / "backend.tfbackend"
        lines = "".join(f"{k} = {config.hcl_value(v)}\n" for k, v in settings.items())
        write_atomic(backend_file, lines, 0o600, durable=False)
        where = f"s3://{settings['bucket']}/{settings['key']}" if kind == "s3" else settings["path"]
        self.state_where = f"{kind} backend at {where}"
        log.info(f"state: {self.state_where}")
        return backend_file


def backend_settings(state_url: str, stack_name: str, env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The backend type and its settings for IAC_RUNNER_STATE_URL: S3 (key per stack, S3-native locking) or a
    local folder per stack."""
    parts = urlsplit(state_url)
    key = sanitize(stack_name, allowed="a-zA-Z0-9_.-", max_length=200)
    if parts.scheme != "s3":
        return "local", {"path": str(Path(parts.path) / key / "terraform.tfstate")}
    settings: dict[str, Any] = {
        "bucket": parts.netloc,
        "key": "/".join(p for p in (parts.path.strip("/"), key, "terraform.tfstate") if p),
        "region": aws.region(env),
        "use_lockfile": True,
    }
    endpoint = aws.s3_endpoint(env)
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
    return "s3", settings


@contextlib.contextmanager
def _plugin_cache_lock(cache: str, deadline: Deadline) -> Iterator[None]:
    """tofu's shared plugin cache is not safe for concurrent inits (they panic in LinkFromOtherCache): runs on
    one machine take turns for init, which is quick with a warm cache; plans and applies still run side by side."""
    lock = Path(cache) / ".iac-runner-init.lock"
    with open(lock, "a") as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("another run is initialising with the shared plugin cache: waiting for it")
                    waited = True
                deadline.check("waiting for the shared plugin cache")
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _private_state(folder: Path, state_url: str) -> None:
    """A local state folder private to its owner (the state holds the stack's secrets), older files included."""
    try:
        paths.private_dir(folder)
        folder.chmod(0o700)
        for file in folder.iterdir():
            if file.is_file():
                file.chmod(0o600)
    except OSError as exc:
        raise ConfigError(
            f"The state folder {folder} cannot be used: {exc.strerror}.",
            where=f"IAC_RUNNER_STATE_URL={state_url}",
            fix="Point IAC_RUNNER_STATE_URL at a writable folder (file:///abs/dir) or an S3 bucket.",
        ) from None


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
    tfrc = paths.TOOLS / "tofu.tfrc"
    if (not configured or not Path(configured).is_file()) and tfrc.is_file():
        env["TF_CLI_CONFIG_FILE"] = str(tfrc)
    return env


def _lock_file_fits(folder: Path, binary: str) -> bool:
    """Whether the committed lock file can be enforced read-only: not when it locks providers only for the
    other engine's registry (a lock file written by tofu names registry.opentofu.org, terraform's
    registry.terraform.io); the engine then records its own entries beside them."""
    hosts = config.lock_hosts(folder)
    if hosts is None:
        return False
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


BACKEND = OpenTofuBackend()
