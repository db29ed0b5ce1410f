# A generated password (sensitive output) and a record of who asked for it: runs fully offline.
terraform {
  required_version = ">= 1.6"
  required_providers {
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
  }
}

variable "name" {
  type        = string
  description = "What the password is for; part of the record."
}

variable "length" {
  type    = number
  default = 24
  validation {
    condition     = var.length >= 12 && var.length <= 128
    error_message = "length must be between 12 and 128."
  }
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "salt" {
  type        = string
  sensitive   = true
  description = "A secret input mixed into the password's keepers: changing it rotates the password."
}

resource "random_password" "this" {
  length  = var.length
  special = false
  keepers = {
    name = var.name
    salt = sha256(var.salt)
  }
}

resource "terraform_data" "record" {
  input = {
    name   = var.name
    length = var.length
    labels = var.labels
  }
}

output "name" {
  value = terraform_data.record.output.name
}

output "length" {
  value = var.length
}

output "labels" {
  value = var.labels
}

output "password" {
  value     = random_password.this.result
  sensitive = true
}
