"""A generated password (secret output) and a record of who asked for it: the same inputs and outputs as the
opentofu example, with the resources implemented by Pulumi dynamic providers, so it runs fully offline."""

import hashlib
import secrets
import string

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

ALPHABET = string.ascii_letters + string.digits


class PasswordProvider(ResourceProvider):
    """Generates a password; a change of its keepers (name, salt) generates a new one, as random_password does."""

    def create(self, props):
        password = "".join(secrets.choice(ALPHABET) for _ in range(int(props["length"])))
        return CreateResult(id_=secrets.token_hex(8), outs={**props, "result": password})

    def diff(self, _id, olds, news):
        replaces = [key for key in ("length", "keepers") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)


class Password(Resource):
    result: pulumi.Output[str]

    def __init__(self, name, length, keepers, opts=None):
        super().__init__(
            PasswordProvider(),
            name,
            {"length": length, "keepers": keepers, "result": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])),
        )


class RecordProvider(ResourceProvider):
    """Keeps its input as its output, as terraform_data does: a change of the input is an update in place."""

    def create(self, props):
        return CreateResult(id_=secrets.token_hex(8), outs={"output": props["input"]})

    def diff(self, _id, olds, news):
        return DiffResult(changes=olds.get("output") != news.get("input"), replaces=[])

    def update(self, _id, _olds, news):
        return UpdateResult(outs={"output": news["input"]})


class Record(Resource):
    output: pulumi.Output[dict]

    def __init__(self, name, value, opts=None):
        super().__init__(RecordProvider(), name, {"input": value, "output": None}, opts)


config = pulumi.Config()
name = config.require("name")
length = config.get_int("length") or 24
labels = config.get_object("labels") or {}
salt = config.require_secret("salt")

if not 12 <= length <= 128:
    raise ValueError("length must be between 12 and 128.")

password = Password(
    "this",
    length=length,
    keepers=salt.apply(lambda s: {"name": name, "salt": hashlib.sha256(s.encode()).hexdigest()}),
)

record = Record("record", {"name": name, "length": length, "labels": labels})

pulumi.export("name", record.output["name"])
pulumi.export("length", length)
pulumi.export("labels", labels)
pulumi.export("password", pulumi.Output.secret(password.result))
