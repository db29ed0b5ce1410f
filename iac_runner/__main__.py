"""`python -m iac_runner`: the same entry point as the `iac-runner` console script."""

import sys

from iac_runner.cli.entry import main

sys.exit(main())
