"""An S3 bucket through a dynamic provider (boto3), with structured and secret config and nested secret outputs."""

import importlib.metadata
import os
import sys

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult


class BucketProvider(ResourceProvider):
    """An S3 bucket with tags. Inputs: bucket, tags."""

    @staticmethod
    def _client():
        import boto3  # imported where the provider runs: its own process, in the program's virtualenv

        return boto3.client("s3", region_name=os.environ.get("AWS_REGION") or None)

    def _outs(self, props):
        # The provider's interpreter is an output, so a test sees that it ran in the virtualenv too.
        return {**props, "arn": f"arn:aws:s3:::{props['bucket']}", "provider_python": sys.executable}

    def _tag(self, client, props):
        tags = [{"Key": k, "Value": v} for k, v in sorted(props["tags"].items())]
        client.put_bucket_tagging(Bucket=props["bucket"], Tagging={"TagSet": tags})

    def create(self, props):
        client = self._client()
        client.create_bucket(Bucket=props["bucket"])
        self._tag(client, props)
        return CreateResult(id_=props["bucket"], outs=self._outs(props))

    def diff(self, _id, olds, news):
        changed = [k for k in ("bucket", "tags") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k == "bucket"])

    def update(self, _id, _olds, news):
        self._tag(self._client(), news)
        return UpdateResult(outs=self._outs(news))

    def read(self, id_, props):
        from botocore.exceptions import ClientError

        try:
            self._client().head_bucket(Bucket=id_)
        except ClientError:
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs=props)

    def delete(self, id_, _props):
        self._client().delete_bucket(Bucket=id_)


class Bucket(Resource):
    arn: pulumi.Output[str]
    provider_python: pulumi.Output[str]

    def __init__(self, name, bucket, tags):
        props = {"bucket": bucket, "tags": tags, "arn": None, "provider_python": None}
        super().__init__(BucketProvider(), name, props)


config = pulumi.Config()
settings = config.require_object("settings")
token = config.require_secret("token")

bucket = Bucket("bucket", bucket=settings["bucket"], tags=settings["tags"])

pulumi.export("arn", bucket.arn)
pulumi.export("replicas", settings["replicas"])
pulumi.export("tags", settings["tags"])
pulumi.export("sdk", importlib.metadata.version("pulumi"))
pulumi.export("python", sys.executable)
pulumi.export("providerPython", bucket.provider_python)
pulumi.export("token", token)
pulumi.export(
    "connection",
    {"host": f"{settings['bucket']}.s3.internal", "auth": {"scheme": "bearer", "credentials": [token]}, "ports": [443]},
)
