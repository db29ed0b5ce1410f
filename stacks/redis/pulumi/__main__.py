"""A Redis-compatible store: an ElastiCache replication group with encryption in transit and at rest and an AUTH
token, its subnet group and a security group. The Pulumi twin of ../opentofu and ../cloudformation (same inputs,
same output names, `port` a string). Real AWS only, where Pulumi's aws provider plugin exists: see README.md.
"""

import ipaddress
import re

import pulumi
import pulumi_aws as aws

config = pulumi.Config()
name = config.require("name")
node_type = config.get("nodeType") or "cache.t4g.micro"
engine_version = config.get("engineVersion") or "7.1"
replicas = config.get_int("replicas")
replicas = 1 if replicas is None else replicas
vpc_id = config.require("vpcId")
subnet_ids = config.require_object("subnetIds")
allowed_cidr = config.get("allowedCidr") or "10.0.0.0/8"
auth_token = config.require_secret("authToken")

if not re.fullmatch(r"[a-z][a-z0-9-]{0,38}", name):
    raise ValueError("name must start with a letter and hold at most 39 characters of a-z, 0-9 and '-'.")
if not 0 <= replicas <= 5:
    raise ValueError("replicas must be a whole number from 0 to 5.")
if not isinstance(subnet_ids, list) or not subnet_ids or not all(isinstance(s, str) for s in subnet_ids):
    raise ValueError("subnetIds must name at least one subnet.")
try:
    ipaddress.ip_network(allowed_cidr, strict=False)
except ValueError:
    raise ValueError("allowedCidr must be a CIDR block such as 10.0.0.0/8.") from None


def _check_token(token: str) -> str:
    if not 16 <= len(token) <= 128:
        raise ValueError("authToken must be 16 to 128 characters long.")
    return token


subnet_group = aws.elasticache.SubnetGroup(
    "this",
    name=name,
    description=f"Subnets of {name}",
    subnet_ids=subnet_ids,
)

security_group = aws.ec2.SecurityGroup(
    "this",
    name_prefix=f"{name}-redis-",
    description=f"Redis {name}",
    vpc_id=vpc_id,
)

aws.vpc.SecurityGroupIngressRule(
    "redis",
    security_group_id=security_group.id,
    description="Redis clients",
    ip_protocol="tcp",
    from_port=6379,
    to_port=6379,
    cidr_ipv4=allowed_cidr,
)

group = aws.elasticache.ReplicationGroup(
    "this",
    replication_group_id=name,
    description=f"Redis {name}",
    engine="redis",
    engine_version=engine_version,
    node_type=node_type,
    port=6379,
    # `replicas` counts replicas besides the primary, as in the OpenTofu twin.
    num_cache_clusters=replicas + 1,
    automatic_failover_enabled=replicas > 0,
    multi_az_enabled=replicas > 0,
    transit_encryption_enabled=True,
    at_rest_encryption_enabled=True,
    auth_token=auth_token.apply(_check_token),
    subnet_group_name=subnet_group.name,
    security_group_ids=[security_group.id],
    apply_immediately=True,
)

pulumi.export("host", group.primary_endpoint_address)
# A string, as the CloudFormation twin returns it, so the three are interchangeable for the driver.
pulumi.export("port", group.port.apply(str))
pulumi.export("readerHost", group.reader_endpoint_address)
