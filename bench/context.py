"""What every section of the bench shares: a private temp folder, the environment both sides start from, the
emulator, the counters, and how the runner is invoked (its console script, as a user runs it)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.counting import ApiCounter, EngineCounter
from bench.measure import Command, Report
from iac_runner.local.cloud import Emulator

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
TOOLS_BIN = ROOT / ".tools" / "bin"
PYTHON = sys.executable
CLI = str(Path(PYTHON).parent / "iac-runner")


def engine(name: str) -> Path | None:
    """The engine `make tools` linked (or one on PATH), resolved to the real file."""
    found = shutil.which(name, path=str(TOOLS_BIN)) or shutil.which(name)
    return Path(found).resolve() if found else None


def base_env(tmp: Path, cloud: Emulator) -> dict[str, str]:
    """The environment both sides start from: the user's own runner and AWS settings dropped, the emulator's
    in, the engines on PATH, and caches in the bench's temp folder so that nothing of the user's is used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IAC_RUNNER_", "AWS_", "PULUMI_", "TF_"))}
    env.update(cloud.env())
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")
    env["XDG_STATE_HOME"] = str(tmp / "xdg-state")
    return env


@dataclass(frozen=True)
class Family:
    """A stack family under stacks/: the same resource written for each engine, with example inputs."""

    name: str

    @property
    def inputs(self) -> dict[str, Any]:
        return dict(json.loads((STACKS / self.name / "inputs.json").read_text()))

    @property
    def secrets(self) -> dict[str, str]:
        path = STACKS / self.name / "secret-inputs.json"
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    def folder(self, engine: str) -> Path:
        return STACKS / self.name / engine


@dataclass(frozen=True)
class Bench:
    tmp: Path
    env: dict[str, str]
    cloud: Emulator
    api: ApiCounter
    engines: EngineCounter
    report: Report

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def copy(self, source: Path, name: str) -> Path:
        """A private copy of a stack folder (engines write beside the program: lock files, stack config)."""
        dest = self.tmp / name
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".terraform*", "__pycache__"))
        return dest

    def runner(
        self,
        action: str,
        stack: Path,
        name: str,
        inputs: Mapping[str, Any],
        secrets: Mapping[str, str],
        *,
        backend: str,
        state_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Command:
        """`iac-runner ACTION STACK` as the driver's job would run it: inputs from a file, secret inputs from the
        environment, outputs written to files, the backend named as the rendered definitions name it
        (IAC_RUNNER_BACKEND; `detecting` drops it)."""
        out = self.folder(f"out-{name}")
        inputs_file = out / "inputs.json"
        inputs_file.write_text(json.dumps(dict(inputs)))
        argv = [CLI, action, str(stack), "--inputs", str(inputs_file), "--stack-name", name, "--out-dir", str(out)]
        if state_url:
            argv += ["--state-url", state_url]
        argv += ["--backend", backend]
        secret_env = {f"IAC_RUNNER_SECRET_{k}": v for k, v in secrets.items()}
        return Command(argv, {**self.env, **(env or {}), **secret_env})

    @staticmethod
    def detecting(runner: Command) -> Command:
        """The same run with the backend detected from the stack folder, as a CLI user without --backend has it."""
        assert runner.argv[-2] == "--backend", runner.argv
        return replace(runner, argv=runner.argv[:-2])

    def bare_python(self, script: str, args: list[str], env: Mapping[str, str]) -> Command:
        """A bare script run by the same interpreter, as its own process (start and imports count too)."""
        return Command([PYTHON, "-c", script, *args], {**self.env, **env})
