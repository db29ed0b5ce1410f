"""Humanitec resource definitions for the Container Driver: the pydantic model and placeholders.

The model covers what the Container Driver reads
(`driver_inputs.values`: job, cluster, credentials_config, source, files; `driver_inputs.secret_refs`: cluster,
job.variables, source, files); anything else there is an unknown driver input, so a typo never passes silently.
Where the orchestrator allows a whole object to come from another resource (`job: ${resources[...].outputs.job}`),
the model takes a single `${...}` placeholder instead of the object.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag
from pydantic import model_validator as _model_validator

API_VERSION = "entity.humanitec.io/v1b1"
CONTAINER_DRIVER = "humanitec/container"
DRIVER_INPUTS = ("entity", "driver_inputs")
PLACEHOLDER = re.compile(r"\$\{([^{}]+)\}")
_ESCAPED = "$\\{"  # how a definition writes a literal "${" that the orchestrator must leave alone

# Tags of the "object or placeholder" unions; they show up in pydantic's error locations and are dropped there.
OBJECT_TAG, PLACEHOLDER_TAG = "{object}", "{placeholder}"

Placeholder = Annotated[str, StringConstraints(pattern=r"^\$\{[^{}]+\}$")]

# Names that hold secrets by convention; a variable named like this under `values` is a secret in plain text.
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|PASSPHRASE|PRIVATE_?KEY|API_?KEY|CREDENTIAL", re.IGNORECASE)
_NOT_SECRET = re.compile(r"_(FILE|PATH|URL|NAME|ID|ARN|PARAMETER|TTL|LENGTH)$", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET.search(name)


def _object_or_placeholder(value: Any) -> str:
    return PLACEHOLDER_TAG if isinstance(value, str) else OBJECT_TAG


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(_Strict):
    """A secret: a `value` (usually a placeholder of another resource's secret output) or a secret store entry."""

    value: str | None = None
    store: str | None = None
    ref: str | None = None
    version: str | None = None

    @_model_validator(mode="after")
    def _one_form(self) -> SecretRef:
        if self.value is not None and (self.store or self.ref):
            raise ValueError("give either `value`, or `store` and `ref`, not both")
        if self.value is None and not (self.store and self.ref):
            raise ValueError("needs `value` (e.g. a placeholder) or both `store` and `ref` (a secret store entry)")
        return self


class Job(_Strict):
    image: str
    command: list[str] | None = None
    shared_directory: str
    namespace: str | None = None
    service_account: str | None = None
    pod_template: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)


class DriverSource(_Strict):
    url: str
    ref: str | None = None
    path: str | None = None
    username: str | None = None


class CredentialsConfig(BaseModel):
    """How the driver account's credentials reach the job; its inner forms vary by cloud, so extra keys pass."""

    model_config = ConfigDict(extra="allow")

    environment: dict[str, str] = Field(default_factory=dict)
    file: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)


JobInput = Annotated[
    Annotated[Job, Tag(OBJECT_TAG)] | Annotated[Placeholder, Tag(PLACEHOLDER_TAG)],
    Discriminator(_object_or_placeholder),
]
ObjectInput = Annotated[
    Annotated[dict[str, Any], Tag(OBJECT_TAG)] | Annotated[Placeholder, Tag(PLACEHOLDER_TAG)],
    Discriminator(_object_or_placeholder),
]


class ContainerValues(_Strict):
    job: JobInput
    cluster: ObjectInput
    credentials_config: CredentialsConfig | None = None
    source: DriverSource | None = None
    files: dict[str, str] = Field(default_factory=dict)
    skip_permission_checks: bool | None = None


class SecretJob(_Strict):
    variables: dict[str, SecretRef] = Field(default_factory=dict)


class SecretSource(_Strict):
    password: SecretRef | None = None
    ssh_key: SecretRef | None = None


class ContainerSecrets(_Strict):
    cluster: dict[str, SecretRef] = Field(default_factory=dict)
    job: SecretJob = Field(default_factory=SecretJob)
    source: SecretSource | None = None
    files: dict[str, SecretRef] = Field(default_factory=dict)


class ContainerInputs(_Strict):
    """`entity.driver_inputs` of a `humanitec/container` definition."""

    values: ContainerValues
    secret_refs: ContainerSecrets = Field(default_factory=ContainerSecrets)

    @property
    def job(self) -> Job | None:
        job = self.values.job
        return job if isinstance(job, Job) else None

    @property
    def variables(self) -> dict[str, str]:
        return self.job.variables if self.job else {}


class Criterion(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    app_id: str | None = None
    env_id: str | None = None
    env_type: str | None = None
    res_id: str | None = None
    klass: str | None = Field(default=None, alias="class")


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$", max_length=64)


class Entity(_Strict):
    name: str
    type: str
    driver_type: str
    driver_account: str | None = None
    driver_inputs: dict[str, Any] | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    provision: dict[str, Any] | None = None


class Definition(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["entity.humanitec.io/v1b1"] = Field(alias="apiVersion")
    kind: Literal["Definition"]
    metadata: Metadata
    entity: Entity


# -- placeholders ----------------------------------------------------------------------------------------


def placeholders(text: str) -> list[str]:
    """The expressions of the `${...}` placeholders in `text` (escaped `$\\{` ones are literal text)."""
    return PLACEHOLDER.findall(text)


def has_placeholder(text: str) -> bool:
    return bool(PLACEHOLDER.search(text))


def resolve(text: str, values: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with the placeholders `values` knows replaced and escapes undone, and the expressions left over."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if expression in values:
            return values[expression]
        missing.append(expression)
        return match.group(0)

    return PLACEHOLDER.sub(replace, text).replace(_ESCAPED, "${"), missing


def context_values(definition: Definition, overrides: Mapping[str, str]) -> dict[str, str]:
    """Values for the `${context.*}` placeholders of a local run: defaults of a demo app, then `overrides`.

    The resource's unique id (`context.res.guresid`) is a digest of the others, as the orchestrator's is: the
    same definition and context always give the same id, so create and destroy find the same stack.
    """
    values = {
        "context.org.id": "local",
        "context.app.id": "demo-app",
        "context.env.id": "development",
        "context.env.type": "development",
        "context.res.type": definition.entity.type,
        "context.res.class": "default",
        "context.res.id": f"shared.{definition.metadata.id}",
    }
    values.update(overrides)
    if "context.res.guresid" not in overrides:
        parts = [values[f"context.{k}"] for k in ("org.id", "app.id", "env.id", "res.type", "res.class", "res.id")]
        values["context.res.guresid"] = hashlib.sha1("/".join(parts).encode(), usedforsecurity=False).hexdigest()
    return values
