"""A CloudFormation template as the backend reads it: finding and loading it (within the stack folder), cfn-lint,
the inputs as parameters, and the fingerprint that lets an unchanged create skip the change set.

The fingerprint: what a create would deploy (template, parameters — secret ones too —, tags, capabilities) hashed,
and kept in the deployed template's own `Metadata` (invisible to resources; stack tags would spread to every
resource). The next create compares: the same template and fingerprint prove "no change" without a change set.
Secret parameter values enter a salted slow hash (PBKDF2), never the template in a form that can be read back.
Where equality proves nothing (a Transform, nested stacks, SSM parameter types, dynamic references) there is no
fingerprint and every create takes the full path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from iac_runner.backends.base import StackContext
from iac_runner.common import yamlfile
from iac_runner.common.errors import ConfigError
from iac_runner.common.files import read_text

TEMPLATE_NAMES = ("template.yaml", "template.yml", "template.json")
TEMPLATE_BODY_LIMIT = 51_200
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
FINGERPRINT_KEY = "IacRunnerFingerprint"
_PBKDF2_ROUNDS = 50_000
_YAML_MARK = "\n# iac-runner: what was deployed, for the next unchanged create (no secret can be read back)\n"


@dataclass(frozen=True)
class Template:
    path: Path
    body: str
    data: dict[str, Any]

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("Parameters") or {})

    @property
    def output_names(self) -> list[str]:
        return list(self.data.get("Outputs") or {})

    @property
    def is_json(self) -> bool:
        return self.body.lstrip().startswith("{")


def find_template(folder: Path, configured: str | None) -> Path | None:
    if configured:
        pure = PurePosixPath(configured)
        if pure.is_absolute() or ".." in pure.parts:
            raise ConfigError(
                f"`template: {configured}` in iac-runner.yaml leaves the stack folder.",
                where="iac-runner.yaml: template",
                fix="Name a template file inside the stack folder, e.g. `template: template.yaml`.",
            )
        return folder / configured
    for name in TEMPLATE_NAMES:
        path = folder / name
        if path.is_file():
            try:
                data = yamlfile.parse(read_text(path, "template"), tags=False)
            except (yamlfile.YamlError, ConfigError):
                return path  # a broken template is still this backend's; validate says what is wrong
            if isinstance(data, dict) and "Resources" in data:
                return path
    return None


def load_template(ctx: StackContext) -> Template:
    """The stack's template, read without cfn-lint (which takes a second to import: the fast path of an unchanged
    create needs none of it); a syntax error is reported at its line."""
    path = find_template(ctx.folder, ctx.stack_file.template)
    if path is None or not path.is_file():
        wanted = ctx.stack_file.template or " / ".join(TEMPLATE_NAMES)
        raise ConfigError(
            f"The CloudFormation template {wanted} was not found in the stack folder.",
            where=str(ctx.folder),
            fix="Add the template, or name it with `template:` in iac-runner.yaml.",
        )
    body = read_text(path, "CloudFormation template")
    try:
        # Intrinsic function tags (!Ref, !Sub) read as None: the runner needs the template's shape, not their values.
        data = yamlfile.parse(body, tags=False)  # JSON is YAML too
    except yamlfile.YamlError as exc:
        raise ConfigError(
            f"The CloudFormation template cannot be parsed: {exc.reason}.",
            where=f"{path}:{exc.line}" if exc.line else str(path),
            fix="Fix the template's syntax at that line.",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise ConfigError(
            "The CloudFormation template has no `Resources` mapping.",
            where=str(path),
            fix="A template needs at least one resource under `Resources:`.",
        )
    if len(body.encode()) > TEMPLATE_BODY_LIMIT:
        raise ConfigError(
            f"The template is {len(body.encode()):,} bytes, over CloudFormation's inline limit of "
            f"{TEMPLATE_BODY_LIMIT:,} bytes.",
            where=str(path),
            fix="Split it into nested stacks or shorten it (templates from S3 URLs are not supported yet).",
        )
    return Template(path=path, body=body, data=data)


def read_declared(path: Path) -> dict[str, Any] | None:
    """The template's data without cfn-lint (for `definition validate`), or None when it cannot be read."""
    try:
        data = yamlfile.parse(read_text(path, "template"), tags=False)
    except (yamlfile.YamlError, ConfigError):
        return None
    return data if isinstance(data, dict) else None


def lint(template: Template, region: str) -> list[Any]:
    """cfn-lint's findings (imported only here: it takes a second to load)."""
    from cfnlint.api import lint as cfn_lint

    return list(cfn_lint(template.body, regions=[region]))


def lint_error(path: Path, matches: list[Any], what: str) -> ConfigError:
    lines = [f"{path.name}:{m.linenumber}:{m.columnnumber} {m.rule.id} {m.message}" for m in matches[:10]]
    more = f"\n(and {len(matches) - 10} more)" if len(matches) > 10 else ""
    return ConfigError(
        f"The CloudFormation template {what}: {len(matches)} error(s) found by cfn-lint.",
        where=lines[0] if lines else str(path),
        fix="Fix the template at the lines shown; run `iac-runner validate` to check again.",
        details="\n".join(lines) + more,
    )


def is_no_echo(spec: Mapping[str, Any]) -> bool:
    return str(spec.get("NoEcho", "false")).lower() == "true"


def secret_parameter_problem(name: str, no_echo: bool) -> tuple[str, str] | None:
    if no_echo:
        return None
    return (
        f"Secret input {name!r} maps to a CloudFormation parameter without NoEcho: true, so CloudFormation would "
        "show its value",
        f"Add `NoEcho: true` to parameter {name}, or pass the input as a plain input.",
    )


def parameters(template: Template, ctx: StackContext) -> list[dict[str, str]]:
    """The inputs as CloudFormation parameters, checked against what the template declares."""
    declared = template.parameters
    listing = ", ".join(f"{name} ({spec.get('Type', '?')})" for name, spec in declared.items()) or "none"
    unknown = [name for name in ctx.all_inputs if name not in declared]
    if unknown:
        from difflib import get_close_matches  # for this message only

        close = get_close_matches(unknown[0], list(declared), n=1)
        raise ConfigError(
            f"Input {unknown[0]!r} is not a parameter of the template"
            + (f" (did you mean {close[0]!r}?)." if close else "."),
            where=f"{template.path.name}: declared parameters: {listing}",
            fix="Remove the input or declare it under Parameters in the template.",
        )
    missing = [name for name, spec in declared.items() if "Default" not in spec and name not in ctx.all_inputs]
    if missing:
        raise ConfigError(
            f"Required parameter {missing[0]!r} has no input value"
            + (f" (also missing: {', '.join(missing[1:])})." if missing[1:] else "."),
            where=f"{template.path.name}: declared parameters: {listing}",
            fix="Add it to the resource inputs, or give the parameter a Default in the template.",
        )
    for name in ctx.secret_inputs:
        problem = secret_parameter_problem(name, is_no_echo(declared[name]))
        if problem:
            raise ConfigError(problem[0], where=f"{template.path.name}: Parameters.{name}", fix=problem[1])
    return [
        {"ParameterKey": name, "ParameterValue": _parameter_value(name, value, declared[name].get("Type", "String"))}
        for name, value in ctx.all_inputs.items()
    ]


def _parameter_value(name: str, value: Any, kind: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if not (kind.startswith("List<") or kind == "CommaDelimitedList"):
            raise ConfigError(
                f"Input {name!r} is a list but parameter {name} has type {kind}.",
                where=f"Parameters.{name}",
                fix="Declare it as CommaDelimitedList or List<...>, or pass a single value.",
            )
        return ",".join(_parameter_value(name, item, "String") for item in value)
    if isinstance(value, dict) or value is None:
        raise ConfigError(
            f"Input {name!r} is {'null' if value is None else 'an object'}; CloudFormation parameters are strings.",
            where=f"Parameters.{name}",
            fix="Pass a string, number, boolean or list (a JSON document can be passed as a string).",
        )
    return str(value)


# -- the fingerprint of what is deployed --------------------------------------------------------------------


def unprovable(template: Template) -> str | None:
    """Why equality with what is deployed would not prove "no change" for this template, or None."""
    data, body = template.data, template.body
    resources = data.get("Resources") or {}
    if data.get("Transform"):
        return "it has a Transform (SAM, AWS::Include): what it deploys is computed by CloudFormation"
    if any(isinstance(r, dict) and r.get("Type") == "AWS::CloudFormation::Stack" for r in resources.values()):
        return "it has nested stacks, whose templates can change without this one"
    if any(str(spec.get("Type", "")).startswith("AWS::SSM::Parameter") for spec in template.parameters.values()):
        return "it has parameters of SSM types, whose values can change in Parameter Store"
    if "{{resolve:" in body:
        return "it has dynamic references ({{resolve:...}}), whose values can change outside it"
    if "Metadata" in data and not template.is_json:
        return "it has a top-level Metadata section (the fingerprint would have to be merged into it)"
    return None


def fingerprint(template: Template, params: list[dict[str, str]], stack_name: str, tags: list[Any]) -> str:
    """What a create would deploy, as a digest: every parameter (the template's defaults for those not given),
    tags and capabilities over the template's own text. Secret parameters go through a slow salted hash first."""
    import hashlib  # here, not at the top: detection imports this module for any stack, and needs no OpenSSL

    given = {p["ParameterKey"]: p["ParameterValue"] for p in params}
    plain: dict[str, Any] = {}
    secret: dict[str, str] = {}
    for name, spec in template.parameters.items():
        value = given.get(name, str(spec.get("Default", "")) if "Default" in spec else None)
        (secret if is_no_echo(spec) else plain)[name] = value  # type: ignore[assignment]
    shielded = ""
    if secret:
        material = json.dumps(secret, sort_keys=True).encode()
        shielded = hashlib.pbkdf2_hmac("sha256", material, f"iac-runner:{stack_name}".encode(), _PBKDF2_ROUNDS).hex()
    record = {"template": template.body, "parameters": plain, "secret": shielded, "tags": tags, "caps": CAPABILITIES}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def with_fingerprint(template: Template, digest: str) -> str:
    """The body to deploy: the template with the fingerprint in its top-level Metadata."""
    if template.is_json:
        data = json.loads(template.body)
        data.setdefault("Metadata", {})[FINGERPRINT_KEY] = digest
        return json.dumps(data, indent=2)
    return template.body.rstrip("\n") + _YAML_MARK + f"Metadata:\n  {FINGERPRINT_KEY}: {digest}\n"


def deployed_fingerprint(template: Template, deployed: Any) -> str | None:
    """The fingerprint of the deployed template when the rest of it is this template, else None."""
    if isinstance(deployed, dict):  # boto3 hands JSON templates over parsed
        data = json.loads(json.dumps(deployed))
        metadata = data.get("Metadata") or {}
        digest = metadata.pop(FINGERPRINT_KEY, None)
        if not metadata:
            data.pop("Metadata", None)
        return str(digest) if digest and template.is_json and data == json.loads(template.body) else None
    if not isinstance(deployed, str):
        return None
    found = re.search(rf"{re.escape(_YAML_MARK)}Metadata:\n  {FINGERPRINT_KEY}: ([0-9a-f]{{64}})\n\Z", deployed)
    if found is None or deployed[: found.start()] != template.body.rstrip("\n"):
        return None
    return found.group(1)
