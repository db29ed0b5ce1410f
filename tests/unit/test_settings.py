from __future__ import annotations

from pathlib import Path

import pytest

from iac_runner.common.errors import ConfigError
from iac_runner.job.settings import (
    check_no_overlap,
    load_inputs_file,
    load_settings,
    load_stack_file,
    parse_assignments,
    secret_inputs_from_env,
)


def test_flag_beats_env_beats_default() -> None:
    env = {"IAC_RUNNER_BACKEND": "pulumi", "IAC_RUNNER_TIMEOUT": "60"}
    assert load_settings({"backend": "opentofu"}, env).backend == "opentofu"
    assert load_settings({"backend": None}, env).backend == "pulumi"
    assert load_settings({}, env).timeout == 60
    assert load_settings({}, {}).timeout == 3600
    assert load_settings({}, {}).log_format == "text"


def test_empty_values_are_unset() -> None:
    assert load_settings({}, {"IAC_RUNNER_SOURCE_REF": "  "}).source_ref is None


def test_invalid_value_names_the_setting_and_hides_secrets() -> None:
    with pytest.raises(ConfigError, match="env var IAC_RUNNER_TIMEOUT"):
        load_settings({}, {"IAC_RUNNER_TIMEOUT": "-5"})
    with pytest.raises(ConfigError, match="flag --timeout"):
        load_settings({"timeout": 0}, {})
    with pytest.raises(ConfigError, match="IAC_RUNNER_SOURCE_URL") as info:
        load_settings({}, {"IAC_RUNNER_SOURCE_URL": "not a url"})
    assert "https://" in info.value.summary


def test_unknown_env_setting_is_an_error_but_secret_inputs_are_not() -> None:
    with pytest.raises(ConfigError, match="IAC_RUNNER_BAKEND"):
        load_settings({}, {"IAC_RUNNER_BAKEND": "x"})
    load_settings({}, {"IAC_RUNNER_SECRET_db_password": "x"})


@pytest.mark.parametrize("url", ["file:///var/state", "s3://my-bucket", "s3://my-bucket/team/a"])
def test_state_url_forms(url: str) -> None:
    assert load_settings({"state_url": url}, {}).state_url == url


@pytest.mark.parametrize("url", ["file://relative", "gs://b", "s3://UPPER"])
def test_state_url_rejected(url: str) -> None:
    with pytest.raises(ConfigError):
        load_settings({"state_url": url}, {})


@pytest.mark.parametrize(
    "url", ["https://host/repo.git", "ssh://git@host/repo.git", "git@github.com:org/repo.git", "file:///tmp/r"]
)
def test_source_url_forms(url: str) -> None:
    assert load_settings({"source_url": url}, {}).source_url == url


def test_stack_file(tmp_path: Path) -> None:
    assert load_stack_file(tmp_path).backend is None
    (tmp_path / "iac-runner.yaml").write_text("backend: cloudformation\nsecret_outputs: [a, b]\n")
    stack_file = load_stack_file(tmp_path)
    assert stack_file.backend == "cloudformation" and stack_file.secret_outputs == ("a", "b")
    (tmp_path / "iac-runner.yaml").write_text("backend: cloudformation\n\ntemplat: t.yaml\n")
    with pytest.raises(ConfigError, match="Unknown key 'templat'") as info:
        load_stack_file(tmp_path)
    assert info.value.where.endswith("iac-runner.yaml:3")
    (tmp_path / "iac-runner.yaml").write_text("secret_outputs: 5\n")
    with pytest.raises(ConfigError, match="Invalid value for 'secret_outputs'"):
        load_stack_file(tmp_path)
    (tmp_path / "iac-runner.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_stack_file(tmp_path)


def test_inputs_file(tmp_path: Path) -> None:
    path = tmp_path / "inputs.json"
    path.write_text('{"a": 1, "b": [true], "c": {"d": null}}')
    assert load_inputs_file(path, "x") == {"a": 1, "b": [True], "c": {"d": None}}
    path.write_text('"text"')
    with pytest.raises(ConfigError, match="not a JSON string"):
        load_inputs_file(path, "x")
    with pytest.raises(ConfigError, match="does not exist"):
        load_inputs_file(tmp_path / "missing.json", "x")


def test_assignments_and_secrets() -> None:
    assert parse_assignments(["a=1", "b=x", "c=[1]", "d=a=b"], "--var", as_json=True) == {
        "a": 1,
        "b": "x",
        "c": [1],
        "d": "a=b",
    }
    assert parse_assignments(["a=1"], "--secret", as_json=False) == {"a": "1"}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_assignments(["novalue"], "--var", as_json=True)
    assert secret_inputs_from_env({"IAC_RUNNER_SECRET_token": "t", "OTHER": "x"}) == {"token": "t"}
    with pytest.raises(ConfigError, match="'token'"):
        check_no_overlap({"token": 1}, {"token": "t"})


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"IAC_RUNNER_REFRESH": "yes"}, "refresh", True),
        ({"IAC_RUNNER_REFRESH": "0"}, "refresh", False),
        ({"IAC_RUNNER_TIMEOUT": " 60 "}, "timeout", 60),
        ({"IAC_RUNNER_LOCK_TIMEOUT": "0"}, "lock_timeout", 0),
        ({"IAC_RUNNER_LOG_FORMAT": "json"}, "log_format", "json"),
        ({"IAC_RUNNER_STATE_URL": " s3://bucket/a "}, "state_url", "s3://bucket/a"),
        ({"IAC_RUNNER_TOFU_BINARY": "terraform"}, "tofu_binary", "terraform"),
    ],
)
def test_setting_values_are_read(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(load_settings({}, env), field) == value


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"timeout": 60.5}, "flag --timeout: Input should be a valid integer, got a number with a fractional part"),
        ({"retries": 11}, "flag --retries: Input should be less than or equal to 10"),
        ({"lock_timeout": -1}, "flag --lock-timeout: Input should be greater than or equal to 0"),
        ({"refresh": "maybe"}, "flag --refresh: Input should be a valid boolean, unable to interpret input"),
        ({"log_format": "JSON"}, "flag --log-format: Input should be 'text' or 'json' (got 'JSON')"),
        ({"stack_name": 5}, "flag --stack-name: Input should be a valid string (got 5)"),
    ],
)
def test_setting_problems_name_the_flag(values: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(values, {})
    assert says in info.value.summary


def test_secret_settings_are_never_shown() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, {"IAC_RUNNER_SOURCE_TOKEN": 5, "IAC_RUNNER_TIMEOUT": "x"})  # type: ignore[dict-item]
    assert "IAC_RUNNER_SOURCE_TOKEN" in info.value.render() and "(got 5)" not in info.value.render()
    settings = load_settings({}, {"IAC_RUNNER_SOURCE_URL": "https://h/r.git", "IAC_RUNNER_SOURCE_TOKEN": "tok-123"})
    assert "tok-123" not in repr(settings)
    git = settings.git_source()
    assert git is not None and git.token == "tok-123"


def test_stack_file_list_item(tmp_path: Path) -> None:
    (tmp_path / "iac-runner.yaml").write_text("backend: cloudformation\nprotect: [a, 1]\n")
    with pytest.raises(ConfigError, match=r"Invalid value for 'protect.1' in iac-runner.yaml: Input should be a valid"):
        load_stack_file(tmp_path)
