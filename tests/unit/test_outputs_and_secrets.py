from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from iac_runner.backends.base import Output
from iac_runner.common.errors import EngineError, RunnerError, truncate
from iac_runner.common.secrets import REGISTRY, SecretRegistry
from iac_runner.job import outputs
from iac_runner.job.outputs import OutputFiles


def test_split_keeps_types() -> None:
    outs = [Output("n", 1), Output("l", [1, "a"]), Output("o", {"k": True}), Output("s", "x", secret=True)]
    values, secrets = outputs.split(outs)
    assert values == {"n": 1, "l": [1, "a"], "o": {"k": True}}
    assert secrets == {"s": "x"}


def test_output_equal_to_secret_input_becomes_secret() -> None:
    classified = outputs.classify([Output("a", "hunter22"), Output("b", "other")], {"pw": "hunter22"})
    assert [o.secret for o in classified] == [True, False]


def test_output_containing_a_secret_becomes_secret() -> None:
    REGISTRY.add("conn-secret-xyz")
    outs = [
        Output("url", "postgres://u:conn-secret-xyz@db"),
        Output("nested", {"list": ["a", "conn-secret-xyz"]}),
        Output("copy", "sensitive-value-1"),
        Output("sensitive", "sensitive-value-1", secret=True),
        Output("plain", "nothing"),
    ]
    classified = outputs.classify(outs, {})
    assert [o.secret for o in classified] == [True, True, True, True, False]


def test_write_is_atomic_and_private(tmp_path: Path) -> None:
    files = OutputFiles(tmp_path / "out.json", tmp_path / "secret.json")
    outputs.write([Output("a", 1), Output("b", "s", secret=True)], files)
    assert json.loads(files.values.read_text()) == {"a": 1}
    assert json.loads(files.secrets.read_text()) == {"b": "s"}
    assert stat.S_IMODE(files.secrets.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "secret.json"]


def test_empty_outputs_write_empty_objects(tmp_path: Path) -> None:
    files = OutputFiles(tmp_path / "out.json", tmp_path / "secret.json")
    outputs.write([], files)
    assert files.values.read_text().strip() == "{}" and files.secrets.read_text().strip() == "{}"


def test_size_guard_names_the_largest(tmp_path: Path) -> None:
    files = OutputFiles(tmp_path / "out.json", tmp_path / "secret.json")
    big = [Output("huge", "x" * 700_000), Output("large", "y" * 400_000, secret=True), Output("small", 1)]
    with pytest.raises(EngineError, match="over the driver's limit") as info:
        outputs.write(big, files)
    assert "huge" in info.value.where and "large" in info.value.where
    assert list(tmp_path.iterdir()) == []


def test_masked() -> None:
    assert outputs.masked([Output("a", 1), Output("b", "s", secret=True)]) == {"a": 1, "b": "***"}


def test_registry_redacts_all_forms() -> None:
    registry = SecretRegistry()
    registry.add("pa$$word-1")
    registry.add({"nested": ["deep-secret"]})
    registry.add("abc")  # too short to search for in free text
    text = 'pw=pa$$word-1 json="deep-secret" b64=cGEkJHdvcmQtMQ== abc'
    assert registry.redact(text) == 'pw=*** json="***" b64=*** abc'
    registry.add('quote"d')
    assert registry.redact('{"v": "quote\\"d"}') == '{"v": "***"}'


def test_registry_masks_longest_first() -> None:
    registry = SecretRegistry()
    registry.add_all(["secret", "secret-and-more"])
    assert registry.redact("x secret-and-more y") == "x *** y"


def test_error_render_and_truncate() -> None:
    err = RunnerError("Summary.", where="here", fix="do this", details="d" * 5000)
    text = err.render()
    assert text.splitlines()[:3] == ["Summary.", "Where: here", "Fix: do this"]
    assert len(text.encode()) <= 4096 and text.endswith("[... truncated]")
    assert truncate("é" * 3000, 100).endswith("[... truncated]")
