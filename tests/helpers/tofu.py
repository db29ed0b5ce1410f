"""OpenTofu stacks the tests share: offline stacks written inline, the example's folder, reading a state file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import STACKS

RANDOM_PASSWORD = STACKS / "random-password" / "opentofu"

# An offline stack (built-ins only): a required string, a number with a validation rule, a map, a required
# sensitive string; outputs of each JSON type, one of them sensitive.
SMALL_TF = """\
variable "name" {
  type = string
}

variable "size" {
  type    = number
  default = 1
  validation {
    condition     = var.size >= 1 && var.size <= 100
    error_message = "size must be between 1 and 100."
  }
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "token" {
  type      = string
  sensitive = true
}

resource "terraform_data" "this" {
  input = {
    name = var.name
    size = var.size
    tags = var.tags
  }
}

output "name" {
  value = terraform_data.this.output.name
}

output "size" {
  value = var.size
}

output "tags" {
  value = var.tags
}

output "token" {
  value     = var.token
  sensitive = true
}
"""

# A resource that takes `seconds` to create: something to hold the state lock, to interrupt, to time out.
SLOW_TF = """\
variable "seconds" {
  type    = number
  default = 20
}

resource "terraform_data" "slow" {
  input = var.seconds
  provisioner "local-exec" {
    command = "echo started; sleep ${var.seconds}"
  }
}

output "seconds" {
  value = terraform_data.slow.output
}
"""


def stack_files(folder: Path) -> dict[str, str]:
    """A stack folder's files (lock file included), for the driver's `files` input."""
    return {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}


def state_resources(path: Path) -> list[str]:
    state = json.loads(path.read_text())
    return [f"{r['type']}.{r['name']}" for r in state.get("resources", []) if r.get("mode") == "managed"]
