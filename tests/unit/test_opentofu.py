"""The opentofu backend without tofu: the argv of every command, the parsing of tofu's JSON UI (progress, planned
changes, diagnostics) and the classification of its failures, and the reading of a configuration in both
syntaxes. The messages are tofu's own shapes (internal/command/views/json in OpenTofu)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iac_runner.backends.opentofu import backend_settings, config
from iac_runner.backends.opentofu import diagnostics as diag
from iac_runner.backends.opentofu.commands import Commands
from iac_runner.common.errors import ConfigError, EngineError, ExitCode

COMMANDS = Commands("/opt/bin/tofu", Path("/work/stack"), Path("/work/run/inputs.tfvars.json"), 60)


def test_argv_of_each_command() -> None:
    assert COMMANDS.init() == [
        "/opt/bin/tofu",
        "-chdir=/work/stack",
        "init",
        "-input=false",
        "-no-color",
        "-reconfigure",
    ]
    assert COMMANDS.init(backend_config=Path("/w/b.tfbackend"), lock_readonly=True)[-2:] == [
        "-lockfile=readonly",
        "-backend-config=/w/b.tfbackend",
    ]
    assert COMMANDS.init(backend=False)[-1] == "-backend=false"
    plan = COMMANDS.plan(out=Path("/w/plan"))
    assert plan[2:] == [
        "plan", "-json", "-input=false", "-detailed-exitcode", "-lock-timeout=60s",
        "-var-file=/work/run/inputs.tfvars.json", "-out=/w/plan",
    ]  # fmt: skip
    assert COMMANDS.apply(Path("/w/plan"))[-2:] == ["-var-file=/work/run/inputs.tfvars.json", "/w/plan"]
    assert COMMANDS.destroy()[2:4] == ["destroy", "-json"] and "-auto-approve" in COMMANDS.destroy()
    assert COMMANDS.output()[2:] == ["output", "-json", "-no-color"]
    assert COMMANDS.version() == ["/opt/bin/tofu", "version", "-json"]


def test_no_secret_ever_reaches_an_argv() -> None:
    """Inputs travel in a file (plain ones) or TF_VAR_* (secret ones): every argv is built from paths and flags."""
    argvs = [COMMANDS.init(), COMMANDS.plan(), COMMANDS.apply(Path("p")), COMMANDS.destroy(), COMMANDS.output()]
    assert all("=" not in arg or arg.startswith(("-", "/")) or "-chdir" in arg for argv in argvs for arg in argv[1:])


def test_backend_settings_for_s3_behind_an_emulator_and_for_a_folder() -> None:
    kind, settings = backend_settings(
        "s3://state-bucket/team/a", "My App", {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    )
    assert kind == "s3"
    assert settings["bucket"] == "state-bucket" and settings["region"] == "eu-west-1"
    assert settings["key"].startswith("team/a/My-App-") and settings["key"].endswith("/terraform.tfstate")
    assert settings["use_lockfile"] is True and settings["use_path_style"] is True
    assert settings["endpoints"] == {"s3": "http://127.0.0.1:5000"}
    kind, settings = backend_settings("file:///var/state", "app", {})
    assert (kind, settings) == ("local", {"path": "/var/state/app/terraform.tfstate"})


def _line(message: dict[str, object]) -> str:
    return json.dumps({"@level": "info", "@message": "", **message})


def test_planned_changes_and_replacement_reasons() -> None:
    found = diag.Diagnostics()
    found.line(
        _line(
            {
                "type": "planned_change",
                "change": {
                    "resource": {"addr": "aws_s3_bucket.b", "resource_type": "aws_s3_bucket"},
                    "action": "replace",
                    "reason": "cannot_update",
                },
            }
        )
    )
    found.line(
        _line({"type": "planned_change", "change": {"resource": {"addr": "terraform_data.x"}, "action": "update"}})
    )
    found.line(_line({"type": "planned_change", "change": {"resource": {"addr": "y"}, "action": "noop"}}))
    found.line("not json: a provider's crash line")
    assert [(c.address, c.action, c.reason) for c in found.changes] == [
        ("aws_s3_bucket.b", "replace", "cannot update"),
        ("terraform_data.x", "change", ""),
    ]
    assert found.other == ["not json: a provider's crash line"]


def test_a_syntax_error_becomes_a_config_error_with_the_engines_file_and_line() -> None:
    found = diag.Diagnostics()
    diagnostic = {
        "severity": "error",
        "summary": "Unsupported argument",
        "detail": 'An argument named "colour" is not expected here.',
        "range": {"filename": "main.tf", "start": {"line": 7, "column": 3}},
    }
    found.line(_line({"type": "diagnostic", "diagnostic": diagnostic}))
    error = diag.config_error(found.errors, "The OpenTofu configuration is invalid")
    assert error.exit_code == ExitCode.CONFIG
    assert error.summary == "The OpenTofu configuration is invalid: Unsupported argument."
    assert error.where == "main.tf:7"
    assert error.diagnostics[0].location == "main.tf:7" and error.diagnostics[0].severity == "error"


INPUT_PROBLEMS = [
    (
        "No value for required variable",
        'The root module input variable "name" is not set',
        "",
        "Required variable 'name' has no value.",
    ),
    (
        "Value for undeclared variable",
        'A variable named "colour" was assigned',
        "",
        "Input 'colour' is not a declared variable of the stack.",
    ),
    (
        "Invalid value for input variable",
        "Unsuitable value for var.size: a number is required.",
        "",
        "Input 'size' has the wrong type: a number is required.",
    ),
    (
        "Invalid value for variable",
        "size must be between 1 and 100.",
        'variable "size" {',
        "Input 'size' is not accepted by the stack's validation rule: size must be between 1 and 100.",
    ),
]


@pytest.mark.parametrize(("summary", "detail", "snippet", "expected"), INPUT_PROBLEMS)
def test_input_problems_name_the_variable(summary: str, detail: str, snippet: str, expected: str) -> None:
    diagnostic = {"severity": "error", "summary": summary, "detail": detail, "snippet": {"code": snippet}}
    assert diag.input_problems([diagnostic]) == [diagnostic]
    assert diag.input_summary(diagnostic) == expected


LOCK_DETAIL = """Error message: operation error S3: PutObject, https response error StatusCode: 412, PreconditionFailed
Lock Info:
  ID:        0c2e8d4a-9f1b-4b7e-8d0e-6a3f0a1b2c3d
  Path:      tofu-state/team/a/app/terraform.tfstate
  Operation: OperationTypeApply
  Who:       runner@job-7f9c
  Version:   1.12.6
  Created:   2026-12-01 10:00:00.000000000 +0000 UTC
  Info:
"""


def test_a_held_lock_names_holder_time_and_the_force_unlock_command() -> None:
    errors = [{"severity": "error", "summary": "Error acquiring the state lock", "detail": LOCK_DETAIL}]
    error = diag.lock_error(errors, "/opt/bin/tofu", "s3://tofu-state/team/a")
    assert isinstance(error, EngineError)
    assert "locked by another run (runner@job-7f9c, since 2026-12-01 10:00:00" in error.summary
    assert "force-unlock 0c2e8d4a-9f1b-4b7e-8d0e-6a3f0a1b2c3d" in error.fix
    assert diag.lock_error([{"severity": "error", "summary": "Unsupported argument"}], "tofu", None) is None


def test_init_errors_missing_bucket_missing_provider_and_syntax() -> None:
    bucket = diag.init_error('Error: S3 bucket "nope" does not exist.\n', "s3://nope/x", Path("/s"))
    assert isinstance(bucket, ConfigError) and bucket.summary == "The state bucket does not exist."
    provider = diag.init_error(
        "Error: Failed to query available provider packages\n\nCould not retrieve the list of available versions "
        "for provider hashicorp/aws: could not connect to registry.opentofu.org\n",
        None,
        Path("/s"),
    )
    assert "A provider the stack needs is not available" in provider.summary
    syntax = diag.init_error(
        'Error: Invalid block definition\n\n  on main.tf line 3:\n   3: resource "x" {\n', None, Path("/s")
    )
    assert syntax.summary == "tofu init failed: Invalid block definition." and syntax.where == "main.tf:3 in /s"


def test_both_syntaxes_are_read(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('variable "name" {\n  type = string\n}\n# variable "commented" {}\n')
    (tmp_path / "variables.tf.json").write_text(
        json.dumps({"variable": {"size": {"type": "number", "default": 1}, "token": {"sensitive": True}}})
    )
    (tmp_path / "backend.tf.json").write_text(json.dumps({"terraform": {"backend": {"s3": {}}}}))
    declared, complete = config.declared_variables(tmp_path)
    assert complete
    assert {n: (s.required, s.secret) for n, s in declared.items()} == {
        "name": (True, False),
        "size": (False, False),
        "token": (True, True),
    }
    assert config.variable_names(tmp_path) == {"name", "size", "token"}
    assert [p.name for p in config.backend_files(tmp_path)] == ["backend.tf.json"]


def test_a_json_only_stack_is_a_stack(tmp_path: Path) -> None:
    (tmp_path / "main.tf.json").write_text(json.dumps({"output": {"x": {"value": 1}}}))
    assert [p.name for p in config.sources(tmp_path)] == ["main.tf.json"]


def test_a_folder_named_like_a_configuration_file_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "main.tf").mkdir()
    with pytest.raises(ConfigError, match=r"main\.tf in the stack folder is not a regular file"):
        config.sources(tmp_path)


def test_local_modules_are_followed_as_tofu_joins_them(tmp_path: Path) -> None:
    stack = tmp_path / "stacks" / "app"
    (stack).mkdir(parents=True)
    (stack / "main.tf").write_text(
        'module "net" {\n  source = "../../modules/net"\n}\nmodule "r" {\n  source = "hashicorp/x"\n}\n'
    )
    net = tmp_path / "modules" / "net"
    net.mkdir(parents=True)
    (net / "main.tf.json").write_text(json.dumps({"module": {"sub": {"source": "../common"}}}))
    (tmp_path / "modules" / "common").mkdir()
    assert config.module_dirs(stack) == {net, tmp_path / "modules" / "common"}
