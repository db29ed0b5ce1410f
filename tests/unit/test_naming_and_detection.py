from __future__ import annotations

import re
from pathlib import Path

import pytest

from iac_runner import backends
from iac_runner.common.errors import ConfigError
from iac_runner.common.naming import sanitize


def cfn(name: str) -> str:
    return sanitize(name, allowed="a-zA-Z0-9-", max_length=128)


def test_valid_names_are_kept() -> None:
    assert cfn("my-stack-1") == "my-stack-1"


@pytest.mark.parametrize("raw", ["modules.my-app.externals.db", "my_app", "1abc", "-x-", "a" * 200, "ünïcode"])
def test_sanitized_names_fit_the_rules_and_are_deterministic(raw: str) -> None:
    name = cfn(raw)
    assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]*", name) and len(name) <= 128
    assert name == cfn(raw)


def test_names_differing_in_forbidden_characters_do_not_collide() -> None:
    assert cfn("my.app") != cfn("my_app")


def _template(
    folder: Path, name: str = "template.yaml", body: str = "Resources:\n  T:\n    Type: AWS::SNS::Topic\n"
) -> None:
    (folder / name).write_text(body)


def test_detects_cloudformation_by_template_with_resources(tmp_path: Path) -> None:
    _template(
        tmp_path,
        "template.yml",
        "Resources:\n  T:\n    Type: AWS::SNS::Topic\n    Properties:\n      TopicName: !Sub x\n",
    )
    assert backends.detect(tmp_path).name == "cloudformation"


def test_a_yaml_without_resources_is_not_a_template(tmp_path: Path) -> None:
    _template(tmp_path, body="just: data\n")
    with pytest.raises(ConfigError, match="No stack was detected"):
        backends.detect(tmp_path)


def test_unknown_backend_lists_the_known() -> None:
    with pytest.raises(ConfigError, match="Unknown backend 'nope'") as info:
        backends.get("nope")
    assert "cloudformation" in info.value.fix
