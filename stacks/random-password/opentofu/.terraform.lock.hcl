# This file is maintained automatically by "tofu init".
# Manual edits may be lost in future updates.

provider "registry.opentofu.org/hashicorp/random" {
  version     = "3.9.0"
  constraints = ">= 3.5.0"
  hashes = [
    "h1:14p+NLro2hm0+VrtrCbwD2P2Uuta2tMcRlbkxkz2DGY=",
  ]
}
