# A Redis-compatible store: an ElastiCache replication group with encryption in transit and at rest and an
# AUTH token, its subnet group and a security group. The OpenTofu twin of ../cloudformation (same inputs,
# same output names). Real AWS only: see README.md beside this file.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

# Region and credentials from the standard AWS_* environment.
provider "aws" {}

variable "name" {
  type        = string
  description = "Replication group id."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}$", var.name))
    error_message = "name must start with a letter and hold at most 39 characters of a-z, 0-9 and '-'."
  }
}

variable "nodeType" {
  type        = string
  default     = "cache.t4g.micro"
  description = "ElastiCache node type."
}

variable "engineVersion" {
  type        = string
  default     = "7.1"
  description = "Redis engine version."
}

variable "replicas" {
  type        = number
  default     = 1
  description = "Read replicas besides the primary (0-5); with one or more, automatic failover is on."
  validation {
    condition     = var.replicas >= 0 && var.replicas <= 5 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number from 0 to 5."
  }
}

variable "vpcId" {
  type        = string
  description = "The VPC of the subnets."
}

variable "subnetIds" {
  type        = list(string)
  description = "Subnets of the cache nodes (private subnets, ideally in different availability zones)."
  validation {
    condition     = length(var.subnetIds) > 0
    error_message = "subnetIds must name at least one subnet."
  }
}

variable "allowedCidr" {
  type        = string
  default     = "10.0.0.0/8"
  description = "The network allowed to reach Redis on port 6379."
  validation {
    condition     = can(cidrhost(var.allowedCidr, 0))
    error_message = "allowedCidr must be a CIDR block such as 10.0.0.0/8."
  }
}

variable "authToken" {
  type        = string
  sensitive   = true
  description = "The Redis AUTH token (a secret input), 16 to 128 characters."
  validation {
    condition     = length(var.authToken) >= 16 && length(var.authToken) <= 128
    error_message = "authToken must be 16 to 128 characters long."
  }
}

resource "aws_elasticache_subnet_group" "this" {
  name        = var.name
  description = "Subnets of ${var.name}"
  subnet_ids  = var.subnetIds
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-redis-"
  description = "Redis ${var.name}"
  vpc_id      = var.vpcId

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "redis" {
  security_group_id = aws_security_group.this.id
  description       = "Redis clients"
  ip_protocol       = "tcp"
  from_port         = 6379
  to_port           = 6379
  cidr_ipv4         = var.allowedCidr
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "Redis ${var.name}"
  engine                     = "redis"
  engine_version             = var.engineVersion
  node_type                  = var.nodeType
  port                       = 6379
  num_cache_clusters         = var.replicas + 1
  automatic_failover_enabled = var.replicas > 0
  multi_az_enabled           = var.replicas > 0
  transit_encryption_enabled = true
  at_rest_encryption_enabled = true
  auth_token                 = var.authToken
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.this.id]
  apply_immediately          = true
}

output "host" {
  description = "The primary endpoint's address (writes)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

# A string, as the CloudFormation twin returns it, so the two are interchangeable for the driver.
output "port" {
  value = tostring(aws_elasticache_replication_group.this.port)
}

output "readerHost" {
  description = "The reader endpoint's address (reads, spread over the replicas)."
  value       = aws_elasticache_replication_group.this.reader_endpoint_address
}
