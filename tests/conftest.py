"""The suite's fixtures: moto on a free loopback port (reset per test), a git repository of the example stacks, and
a Container Driver run in a fresh shared directory. What the tests share beyond fixtures is in tests/helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iac_runner.local.cloud import Emulator, running
from tests.helpers import Container, base_env, make_repo


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    with running() as emu:
        yield emu


@pytest.fixture
def aws(emulator: Emulator) -> dict[str, str]:
    """A fresh moto (reset per test) and the AWS environment pointing at it."""
    emulator.reset()
    return emulator.env()


@pytest.fixture(scope="session")
def stacks_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("git") / "stacks.git")


@pytest.fixture
def container(tmp_path: Path) -> Container:
    return Container(tmp_path, base_env())
