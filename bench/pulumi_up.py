"""Pulumi, unchanged stack: `iac-runner apply` against a bare Automation API script, each on its own copy of the
program (stack config is written beside it), and the pulumi CLI processes each starts."""

from __future__ import annotations

import json

from bench.context import PYTHON, Bench, Family
from bench.counting import count, describe, total
from bench.measure import alternate, ratio_at_most

# What the runner does for an unchanged stack, with the Automation API alone: select the stack, set its config
# (plain and secret), `up`, read the outputs. (The Automation API passes secret config on pulumi's command line;
# the runner does not. The values here are the example's dummies.)
BARE = """
import json, os, sys
from pulumi import automation as auto
folder = sys.argv[1]
inputs, secrets = json.loads(os.environ["BENCH_INPUTS"]), json.loads(os.environ["BENCH_SECRETS"])
stack = auto.create_or_select_stack("bench-bare", work_dir=folder)
text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in inputs.items()}
config = {f"random-password:{k}": auto.ConfigValue(v) for k, v in text.items()}
config.update({f"random-password:{k}": auto.ConfigValue(v, secret=True) for k, v in secrets.items()})
stack.set_all_config(config)
stack.up()
json.dump({k: v.value for k, v in stack.outputs().items()}, sys.stdout)
"""


def bench_pulumi(bench: Bench) -> None:
    family = Family("random-password")
    env = {
        "PULUMI_CONFIG_PASSPHRASE": "bench-passphrase",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        "PULUMI_HOME": str(bench.folder("pulumi-home")),
        "PULUMI_PYTHON_CMD": PYTHON,
    }
    runner_dir, bare_dir = (bench.copy(family.folder("pulumi"), f"pulumi-{side}") for side in ("runner", "bare"))
    state = bench.folder("pulumi-state").as_uri()
    runner = bench.runner(
        "apply", runner_dir, "bench-runner", family.inputs, family.secrets, backend="pulumi", state_url=state, env=env
    )
    bare_env = {
        **env,
        "PULUMI_BACKEND_URL": bench.folder("pulumi-bare-state").as_uri(),
        "BENCH_INPUTS": json.dumps(family.inputs),
        "BENCH_SECRETS": json.dumps(family.secrets),
    }
    bare = bench.bare_python(BARE, [str(bare_dir)], bare_env)
    for side in (runner, bare):
        side.run()  # creates the stack; what is measured is the unchanged `up` after it
    runner_time, bare_time = alternate(runner.run, bare.run)
    runner_cli, bare_cli = (count(side, bench.engines) for side in (runner, bare))

    report = bench.report
    report.side_by_side("pulumi unchanged up (dynamic provider)", runner_time, bare_time, ratio_at_most(1.0))
    report.add(
        "  pulumi CLI processes: iac-runner / bare",
        f"{total(runner_cli)} / {total(bare_cli)} (iac-runner: {describe(runner_cli)}; bare: {describe(bare_cli)})",
    )
    report.add(
        "  peak memory of pulumi up: iac-runner / bare", f"{runner_time.peak_mb:.0f} MB / {bare_time.peak_mb:.0f} MB"
    )
