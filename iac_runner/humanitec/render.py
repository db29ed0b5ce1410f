"""`iac-runner definition render`: a ready resource definition (or Kubernetes Job) from the templates, checked
before it is printed.

The templates in templates/ are complete examples a person can also edit by hand; rendering loads one, sets the
values the flags give (those marked CHANGE in the template) and prints it. A definition passes the static checks
of `definition validate` first; a Job's documents pass the Kubernetes schema (kubernetes-validate, strict) first.
"""

from __future__ import annotations

import importlib
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from iac_runner import backends
from iac_runner.common import paths
from iac_runner.common.errors import ConfigError
from iac_runner.common.naming import sanitize
from iac_runner.humanitec.document import Problem, load_file
from iac_runner.humanitec.validate import check_static
from iac_runner.job.settings import SECRET_PREFIX
from iac_runner.job.source import GitAuth, git_auth

#: Package data: shipped in the wheel and the image.
TEMPLATES = Path(__file__).resolve().parent / "templates"
KUBERNETES_VERSION = "1.29"  # the oldest the Container Driver supports; the manifests hold for newer ones too
_SHA = re.compile(r"^[0-9a-f]{7,40}$")

Format = Literal["definition", "job", "drift-cronjob"]


@dataclass(frozen=True)
class RenderRequest:
    backend: str
    source_url: str
    ref: str
    path: str
    resource_type: str
    id: str
    image: str
    format: Format = "definition"
    state_url: str | None = None
    inputs: Mapping[str, Any] | None = None
    secret_inputs: Sequence[str] = field(default_factory=tuple)
    secret_store: str = "platform-secrets"  # noqa: S105 - the name of a secret store
    git_auth: GitAuth | None = None
    action: Literal["create", "destroy"] = "create"
    driver_account: str | None = None
    #: drift-cronjob: when drift detection runs (cron, in UTC).
    schedule: str = "@daily"


def render(request: RenderRequest) -> str:
    if request.format == "job":
        return render_job(request)
    if request.format == "drift-cronjob":
        return render_drift_cronjob(request)
    return render_definition(request)


# -- the Humanitec definition ------------------------------------------------------------------------------


def render_definition(request: RenderRequest) -> str:
    data = _load(TEMPLATES / "humanitec" / f"{_template(request.backend)}.yaml")[0]
    entity = data["entity"]
    data["metadata"]["id"] = request.id
    entity["name"] = request.id
    entity["type"] = request.resource_type
    if request.driver_account:
        entity["driver_account"] = request.driver_account
    values = entity["driver_inputs"]["values"]
    secrets = entity["driver_inputs"]["secret_refs"]
    job = values["job"]
    job["image"] = request.image
    variables = job["variables"]
    variables["IAC_RUNNER_BACKEND"] = request.backend
    variables["IAC_RUNNER_SOURCE_PATH"] = request.path.strip("/")
    if request.state_url:
        variables["IAC_RUNNER_STATE_URL"] = request.state_url
    values["source"] = {"url": request.source_url, "ref": _driver_ref(request.ref)}
    values["files"]["resource-inputs.json"] = _inputs_json(request.inputs)
    auth = request.git_auth or git_auth(request.source_url)
    store = request.secret_store
    secret_source = {"token": {"password": {"store": store, "ref": "iac-runner/git-token"}},
                     "ssh": {"ssh_key": {"store": store, "ref": "iac-runner/git-ssh-key"}}}  # fmt: skip
    if auth == "none":
        secrets.pop("source", None)
    else:
        secrets["source"] = secret_source[auth]
    secret_variables = secrets["job"]["variables"] or {}
    for name in request.secret_inputs:
        secret_variables[f"{SECRET_PREFIX}{name}"] = {"store": store, "ref": f"{request.id}/{name}"}
    for ref in secret_variables.values():
        ref["store"] = store
    secrets["job"]["variables"] = secret_variables
    header = (
        f"# Rendered by `iac-runner definition render` from templates/humanitec/{_template(request.backend)}.yaml.\n"
        "# Secrets are read from your secret store (store/ref below): put the values there before deploying.\n"
    )
    text = header + _dump([data])
    _check_definition(text, request.id)
    return text


def _check_definition(text: str, name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="iac-runner-render-", dir=paths.temp_dir()) as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(text)
        documents, problems = load_file(path)
        problems += [p for doc in documents for p in check_static(doc).problems]
    if problems:
        raise _invalid("definition", [p.render().replace(str(path), "(rendered)") for p in problems])


def _template(backend: str) -> str:
    folder = TEMPLATES / "humanitec"
    if not (folder / f"{backend}.yaml").is_file():
        found = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise ConfigError(
            f"There is no template for the backend {backend!r} in {folder}"
            + ("" if folder.is_dir() else " (the folder is missing: the package was installed without its data)")
            + ".",
            where=f"--backend {backend}",
            fix=f"Templates there: {', '.join(found) or 'none'}. For a plugin backend, copy one of them and set "
            "IAC_RUNNER_BACKEND; a missing folder needs a reinstall of iac-driver-runner.",
        )
    return backend


def _driver_ref(ref: str) -> str:
    """The driver takes a full ref name or a SHA: a bare name is taken as a branch."""
    if ref.startswith("refs/") or _SHA.match(ref):
        return ref
    return f"refs/heads/{ref}"


def _inputs_json(inputs: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(inputs or {}), indent=2) + "\n"


# -- the Kubernetes Job and the drift CronJob ------------------------------------------------------------------


def render_job(request: RenderRequest) -> str:
    documents = _workload(request, "job.yaml", request.action, max_instance=40)
    header = (
        "# Rendered by `iac-runner definition render --format job` from templates/kubernetes/job.yaml.\n"
        "# Put the real secrets into the Secret (values CHANGE-ME) before applying; then `kubectl apply -f` this\n"
        f"# file and follow the run with `kubectl logs -f job/{documents[-1]['metadata']['name']}`.\n"
    )
    _check_manifests(documents)
    return header + _dump(documents)


def render_drift_cronjob(request: RenderRequest) -> str:
    if not _SCHEDULE.match(request.schedule.strip()):
        raise ConfigError(
            f"--schedule {request.schedule!r} is not a cron schedule.",
            where="--schedule",
            fix="Give five fields (minute hour day-of-month month day-of-week, e.g. '0 6 * * *' for 06:00 UTC "
            "every day) or a macro: @hourly, @daily, @weekly, @monthly.",
        )
    # A CronJob's name leaves 11 characters of the 63 for the names of its Jobs.
    documents = _workload(request, "drift-cronjob.yaml", "drift", max_instance=52 - len("iac-runner--drift"))
    cron_job = documents[-1]
    cron_job["spec"]["schedule"] = request.schedule.strip()
    name = cron_job["metadata"]["name"]
    header = (
        "# Rendered by `iac-runner definition render --format drift-cronjob` from\n"
        "# templates/kubernetes/drift-cronjob.yaml. Put the real secrets into the Secret (values CHANGE-ME) before\n"
        "# applying. A run that finds drift fails its Job (exit 4); to run one at once:\n"
        f"# `kubectl create job --from=cronjob/{name} {name}-now`.\n"
    )
    _check_manifests(documents)
    return header + _dump(documents)


#: Five cron fields, or one of the macros Kubernetes' CronJob takes.
_SCHEDULE = re.compile(r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+(\s+\S+){4})$")


def _workload(request: RenderRequest, template: str, action: str, max_instance: int) -> list[dict[str, Any]]:
    """The template's ConfigMap (the inputs), Secret (placeholders) and runner workload (a Job, or a CronJob of
    such Jobs) set up for `request`, running ACTION=`action`."""
    backend = backends.get(request.backend)
    if backend.needs_state(None) and not request.state_url:
        raise ConfigError(
            f"--state-url is required for a Job of the {request.backend} backend: state kept inside the Job dies "
            "with it.",
            where="--state-url",
            fix="Give s3://bucket/prefix (the bucket must exist) or file:///dir on a persistent volume.",
        )
    config_map, secret, workload = _load(TEMPLATES / "kubernetes" / template)
    instance = sanitize(request.id.lower(), allowed="a-z0-9-", max_length=max_instance, first="a-z")
    base = f"iac-runner-{instance}"
    jobs = workload["spec"]["jobTemplate"] if workload["kind"] == "CronJob" else workload
    pod = jobs["spec"]["template"]
    for doc in (config_map, secret, workload, jobs, pod):
        doc["metadata"]["labels"]["app.kubernetes.io/instance"] = instance
    config_map["metadata"]["name"] = f"{base}-inputs"
    config_map["data"]["resource-inputs.json"] = _inputs_json(request.inputs)
    secret["metadata"]["name"] = f"{base}-secrets"
    auth = request.git_auth or git_auth(request.source_url)
    placeholders = {"token": ["IAC_RUNNER_SOURCE_TOKEN"], "ssh": ["IAC_RUNNER_SOURCE_SSH_KEY"], "none": []}[auth]
    placeholders += [f"{SECRET_PREFIX}{name}" for name in request.secret_inputs]
    placeholders += list(backend.secret_env(has_secret_inputs=True))
    secret["stringData"] = dict.fromkeys(placeholders, "CHANGE-ME")
    workload["metadata"]["name"] = f"{base}-{action}"
    spec = pod["spec"]
    container = spec["containers"][0]
    container["image"] = request.image
    settings = {
        "ACTION": action,
        "IAC_RUNNER_BACKEND": request.backend,
        "IAC_RUNNER_SOURCE_URL": request.source_url,
        "IAC_RUNNER_SOURCE_REF": request.ref,
        "IAC_RUNNER_SOURCE_PATH": request.path.strip("/"),
        "IAC_RUNNER_STACK_NAME": request.id,
        "IAC_RUNNER_STATE_URL": request.state_url,
    }
    container["env"] = [
        {"name": item["name"], "value": settings[item["name"]]} if item["name"] in settings else item
        for item in container["env"]
        if settings.get(item["name"], "") is not None
    ]
    container["envFrom"][0]["secretRef"]["name"] = secret["metadata"]["name"]
    for volume in spec["volumes"]:
        if "configMap" in volume:
            volume["configMap"]["name"] = config_map["metadata"]["name"]
    return [config_map, secret, workload]


def check_manifest(document: Mapping[str, Any]) -> None:
    """A Kubernetes object against the API's schema (strict: unknown fields fail), offline."""
    try:
        kubernetes_validate: Any = importlib.import_module("kubernetes_validate")  # no type information
    except ImportError:
        raise ConfigError(
            "kubernetes-validate is not installed, so the Job cannot be checked against the Kubernetes schema.",
            fix="pip install 'kubernetes-validate>=1.29,<2' (the project's dev extra installs it).",
        ) from None
    try:
        kubernetes_validate.validate(dict(document), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(top)"
        kind = document.get("kind", "?")
        raise _invalid("Kubernetes manifest", [f"{kind} {path}: {exc.message}"]) from None


def _check_manifests(documents: Sequence[Mapping[str, Any]]) -> None:
    for document in documents:
        check_manifest(document)


# -- shared ----------------------------------------------------------------------------------------------


def _load(path: Path) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if not all(isinstance(d, dict) for d in documents):
        raise ConfigError(f"The template {path} is not a YAML mapping.", where=str(path))
    return documents


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks: the way these files are written by hand."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(documents: Sequence[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def _invalid(what: str, problems: Sequence[str | Problem]) -> ConfigError:
    lines = [p.render() if isinstance(p, Problem) else p for p in problems]
    return ConfigError(
        f"The rendered {what} does not pass its checks, so it is not printed.",
        where=lines[0],
        fix="Check the flags (and the template, if you changed it).",
        details="\n".join(lines[:10]),
    )
