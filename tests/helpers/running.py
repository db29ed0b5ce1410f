"""`iac-runner container` started in the background, for locks, signals and concurrency."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.helpers import REPORT_FILE, Container, Result, check_no_leak


class Running:
    """`iac-runner container` started in the background, exactly as Container.run would start it."""

    def __init__(self, proc: subprocess.Popen[str], scripts: Path) -> None:
        self.proc = proc
        self.scripts = scripts
        self.stderr: list[str] = []
        self.stdout = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        expires = time.monotonic() + timeout
        while time.monotonic() < expires:
            if any(text in line for line in list(self.stderr)):
                return
            if self.proc.poll() is not None:
                self._reader.join(5)
                if any(text in line for line in self.stderr):
                    return
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{text!r} did not show up in the log:\n{''.join(self.stderr)}")

    def stop(self) -> None:
        """Leave nothing running: SIGTERM reaches the engine through the runner, as the driver's would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def result(self, timeout: float = 120) -> Result:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self._reader.join(10)
        result = Result(
            code,
            self.stdout,
            "".join(self.stderr),
            out_dir=self.scripts,
            files={
                "values": self.scripts / "outputs.json",
                "secrets": self.scripts / "secret-outputs.json",
                "error": self.scripts / "error.txt",
                "report": self.scripts / REPORT_FILE,
            },
        )
        check_no_leak(result)
        return result


def start(
    container: Container,
    action: str = "create",
    inputs: Mapping[str, Any] | None = None,
    *,
    secrets: Mapping[str, str] | None = None,
    env: Mapping[str, str | None] | None = None,
    files: Mapping[str, str] | None = None,
) -> Running:
    container.runs += 1
    scripts = container.root / f"run{container.runs}"
    scripts.mkdir()
    for name, text in (files or {}).items():
        (scripts / name).write_text(text)
    (scripts / "inputs.json").write_text(json.dumps(inputs or {}))
    merged: dict[str, str | None] = {
        **container.env,
        "ACTION": action,
        "SCRIPTS_DIRECTORY": str(scripts),
        "RESOURCE_INPUTS_FILE": "inputs.json",
        "OUTPUTS_FILE": "outputs.json",
        "SECRET_OUTPUTS_FILE": "secret-outputs.json",
        "ERROR_FILE": "error.txt",
        "IAC_RUNNER_REPORT_FILE": REPORT_FILE,
        **{f"IAC_RUNNER_SECRET_{k}": v for k, v in (secrets or {}).items()},
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "iac_runner", "container"],
        env={k: v for k, v in merged.items() if v is not None},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Running(proc, scripts)
