"""An S3 bucket with tags, and an API token kept in an SSM parameter: the Pulumi twin of ../cloudformation and
../opentofu (same inputs, same output names, every output a string), so the three are interchangeable for the
driver.

The resources are Pulumi dynamic providers that call AWS through boto3, so the stack runs anywhere the Pulumi
CLI and its Python language host run, without the aws provider plugin. Region, credentials and endpoint come
from the standard AWS_* environment, which the engine hands on to the provider process; AWS_ENDPOINT_URL points
boto3 at an emulator (moto in `make demo` and the tests). Nothing here is emulator-specific.

The providers behave like a real provider: `diff` tells an in-place update (tags, versioning, the token) from a
replacement (the bucket's or the parameter's name), `update` changes the object in place, `read` refreshes it,
`delete` removes it and treats an object that is already gone as deleted.
"""

import re

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class BucketProvider(ResourceProvider):
    """An S3 bucket with tags and a versioning status. Inputs: bucket, tags, versioning (bool)."""

    @staticmethod
    def _client():
        import os

        import boto3  # imported where the provider runs: its own process, started by the engine

        # boto3 reads AWS_DEFAULT_REGION (and the profile) itself, but not AWS_REGION, which the runner documents.
        return boto3.client("s3", region_name=os.environ.get("AWS_REGION") or None)

    def _outs(self, client, props):
        region = client.meta.region_name
        return {
            "bucket": props["bucket"],
            "tags": props["tags"],
            "versioning": bool(props["versioning"]),
            "arn": f"arn:aws:s3:::{props['bucket']}",
            "region": region,
        }

    @staticmethod
    def _put_tags(client, bucket, tags):
        tag_set = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        if tag_set:
            client.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_set})
        else:
            client.delete_bucket_tagging(Bucket=bucket)

    @staticmethod
    def _put_versioning(client, bucket, enabled):
        status = "Enabled" if enabled else "Suspended"
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})

    def create(self, props):
        from botocore.exceptions import ClientError

        client = self._client()
        bucket = props["bucket"]
        region = client.meta.region_name
        args = {"Bucket": bucket}
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(**args)
        except ClientError as exc:
            # Ours already: a create that was interrupted after AWS made the bucket. Adopt it and converge.
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        self._put_tags(client, bucket, props["tags"])
        if props["versioning"]:
            self._put_versioning(client, bucket, True)
        return CreateResult(id_=bucket, outs=self._outs(client, props))

    def diff(self, _id, olds, news):
        keys = ("bucket", "tags", "versioning")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        replaces = [k for k in changed if k == "bucket"]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, _id, olds, news):
        client = self._client()
        bucket = news["bucket"]
        if olds.get("tags") != news["tags"]:
            self._put_tags(client, bucket, news["tags"])
        if bool(olds.get("versioning")) != bool(news["versioning"]):
            self._put_versioning(client, bucket, news["versioning"])
        return UpdateResult(outs=self._outs(client, news))

    def read(self, id_, props):
        from botocore.exceptions import ClientError

        client = self._client()
        try:
            client.head_bucket(Bucket=id_)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                return ReadResult(id_="", outs={})  # gone: an empty id makes the engine drop it
            raise
        try:
            tag_set = client.get_bucket_tagging(Bucket=id_)["TagSet"]
        except ClientError:
            tag_set = []
        status = client.get_bucket_versioning(Bucket=id_).get("Status")
        current = {"bucket": id_, "tags": {t["Key"]: t["Value"] for t in tag_set}, "versioning": status == "Enabled"}
        return ReadResult(id_=id_, outs=self._outs(client, current))

    def delete(self, id_, _props):
        from botocore.exceptions import ClientError

        try:
            self._client().delete_bucket(Bucket=id_)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise


class Bucket(Resource):
    bucket: pulumi.Output[str]
    arn: pulumi.Output[str]
    region: pulumi.Output[str]

    def __init__(self, name, bucket, tags, versioning, opts=None):
        props = {"bucket": bucket, "tags": tags, "versioning": versioning, "arn": None, "region": None}
        super().__init__(BucketProvider(), name, props, opts)


class ParameterProvider(ResourceProvider):
    """An SSM SecureString parameter. Inputs: name, description, value (secret)."""

    @staticmethod
    def _client():
        import os

        import boto3

        return boto3.client("ssm", region_name=os.environ.get("AWS_REGION") or None)

    @staticmethod
    def _put(client, props, overwrite):
        client.put_parameter(
            Name=props["name"],
            Description=props["description"],
            Value=props["value"],
            Type="SecureString",
            Overwrite=overwrite,
        )

    def create(self, props):
        from botocore.exceptions import ClientError

        client = self._client()
        try:
            self._put(client, props, overwrite=False)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterAlreadyExists":
                raise
            # One of ours (same description) left by a create that was interrupted: adopt it. Anyone else's
            # parameter of that name is an error, as on CloudFormation.
            found = client.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [props["name"]]}])
            if [p.get("Description") for p in found["Parameters"]] != [props["description"]]:
                raise
            self._put(client, props, overwrite=True)
        return CreateResult(id_=props["name"], outs=dict(props))

    def diff(self, _id, olds, news):
        changed = [k for k in ("name", "description", "value") if olds.get(k) != news.get(k)]
        replaces = [k for k in changed if k == "name"]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, _id, _olds, news):
        self._put(self._client(), news, overwrite=True)
        return UpdateResult(outs=dict(news))

    def read(self, id_, props):
        from botocore.exceptions import ClientError

        client = self._client()
        try:
            found = client.get_parameter(Name=id_, WithDecryption=True)["Parameter"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return ReadResult(id_="", outs={})
            raise
        # GetParameter does not return the description.
        described = client.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [id_]}])["Parameters"]
        description = described[0].get("Description", "") if described else props.get("description")
        outs = {**props, "name": id_, "description": description, "value": found["Value"]}
        return ReadResult(id_=id_, outs=outs)

    def delete(self, id_, _props):
        from botocore.exceptions import ClientError

        try:
            self._client().delete_parameter(Name=id_)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise


class Parameter(Resource):
    name: pulumi.Output[str]

    def __init__(self, name, parameter_name, description, value, opts=None):
        props = {"name": parameter_name, "description": description, "value": value}
        # The provider returns the value in plain text; the engine keeps it encrypted in the state.
        secret = pulumi.ResourceOptions(additional_secret_outputs=["value"])
        super().__init__(ParameterProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret))


config = pulumi.Config()
bucket_name = config.require("bucket")
environment = config.get("environment") or "development"
versioning = config.get_bool("versioning") or False
api_token = config.require_secret("apiToken")

if not BUCKET_NAME.match(bucket_name):
    raise ValueError(
        "bucket must be 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit."
    )

bucket = Bucket(
    "bucket",
    bucket=bucket_name,
    tags={"environment": environment, "managed-by": "iac-runner"},
    versioning=versioning,
)
token = Parameter(
    "token",
    parameter_name=f"/iac-runner/{bucket_name}/api-token",
    description="API token of the bucket's workload.",
    value=api_token,
    opts=pulumi.ResourceOptions(depends_on=[bucket]),
)

pulumi.export("bucket", bucket.bucket)
pulumi.export("arn", bucket.arn)
pulumi.export("region", bucket.region)
pulumi.export("tokenParameter", pulumi.Output.secret(token.name))
