"""An S3 bucket with tags, and an API token kept in an SSM parameter, written with `pulumi_aws`: the same inputs
and output names (every output a string) as ../pulumi (dynamic providers), ../opentofu and ../cloudformation.

Runs for real only where Pulumi's aws provider plugin (`pulumi-resource-aws`) is installed: see README.md.
"""

import re

import pulumi
import pulumi_aws as aws

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

config = pulumi.Config()
bucket_name = config.require("bucket")
environment = config.get("environment") or "development"
versioning = config.get_bool("versioning") or False
api_token = config.require_secret("apiToken")

if not BUCKET_NAME.match(bucket_name):
    raise ValueError(
        "bucket must be 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit."
    )

bucket = aws.s3.BucketV2(
    "bucket",
    bucket=bucket_name,
    tags={"environment": environment, "managed-by": "iac-runner"},
)

aws.s3.BucketVersioningV2(
    "versioning",
    bucket=bucket.id,
    versioning_configuration=aws.s3.BucketVersioningV2VersioningConfigurationArgs(
        status="Enabled" if versioning else "Suspended",
    ),
)

token = aws.ssm.Parameter(
    "token",
    name=f"/iac-runner/{bucket_name}/api-token",
    description="API token of the bucket's workload.",
    type="SecureString",
    value=api_token,
)

pulumi.export("bucket", bucket.id)
pulumi.export("arn", bucket.arn)
pulumi.export("region", bucket.region)
pulumi.export("tokenParameter", pulumi.Output.secret(token.name))
