# An S3 bucket with tags, and an API token kept in an SSM parameter: the OpenTofu twin of
# ../cloudformation (same inputs, same output names), so the two are interchangeable for the driver.
#
# Region, credentials and endpoint come from the standard AWS_* environment; AWS_ENDPOINT_URL points the
# provider at an emulator (moto in `make demo` and the tests). Nothing here is emulator-specific.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

provider "aws" {}

variable "bucket" {
  type        = string
  description = "Name of the bucket (globally unique on AWS)."
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit."
  }
}

variable "environment" {
  type        = string
  default     = "development"
  description = "Value of the bucket's `environment` tag."
}

variable "versioning" {
  type        = bool
  default     = false
  description = "Whether the bucket keeps object versions."
}

variable "apiToken" {
  type        = string
  sensitive   = true
  description = "A token the workload needs, stored in SSM next to the bucket (a secret input)."
}

resource "aws_s3_bucket" "this" {
  bucket = var.bucket
  tags = {
    environment  = var.environment
    "managed-by" = "iac-runner"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = var.versioning ? "Enabled" : "Suspended"
  }
}

resource "aws_ssm_parameter" "token" {
  name        = "/iac-runner/${var.bucket}/api-token"
  description = "API token of the bucket's workload."
  type        = "SecureString"
  value       = var.apiToken
}

output "bucket" {
  value = aws_s3_bucket.this.id
}

output "arn" {
  value = aws_s3_bucket.this.arn
}

output "region" {
  value = aws_s3_bucket.this.region
}

output "tokenParameter" {
  description = "Name of the SSM parameter holding the token."
  value       = aws_ssm_parameter.token.name
  sensitive   = true
}
