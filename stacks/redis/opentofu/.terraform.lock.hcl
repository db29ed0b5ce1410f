# This file is maintained automatically by "tofu init".
# Manual edits may be lost in future updates.

provider "registry.opentofu.org/hashicorp/aws" {
  version     = "5.100.0"
  constraints = ">= 5.40.0, < 6.0.0"
  hashes = [
    "h1:DMbfP7t6NiFPW9WN+fE0zXpo31W7tv/zdEfgxu8Wm4o=",
  ]
}
