"""CloudFormation, unchanged stack: `iac-runner apply` against a bare boto3 change-set script, on moto.

Wall time (alternating rounds, direct to moto), then one more run of each side through the API counter: the
AWS API calls each makes, and how many change sets the runner asks for (each `CreateChangeSet` creates one on
AWS, where learning "no changes" this way takes seconds; moto refuses an empty one at once).
"""

from __future__ import annotations

import json

from bench.context import Bench, Family
from bench.counting import count, describe, total
from bench.measure import alternate, ratio_at_most

STACK_NAME = "bench-cfn"
#: The bare script's own stack: an update through it would drop what the runner keeps in its stack's template
#: (the fingerprint of what it deployed), and the runner's next create would no longer be a no-op.
BARE_STACK_NAME = "bench-cfn-bare"
MEMORY_MB = 200

# The bare script's stack, created once before the measurements.
CREATE = """
import json, os, sys
import boto3
cfn = boto3.client("cloudformation")
cfn.create_stack(StackName=sys.argv[1], TemplateBody=open(sys.argv[2]).read(),
                 Parameters=json.loads(os.environ["BENCH_PARAMETERS"]), Capabilities=["CAPABILITY_IAM"])
cfn.get_waiter("stack_create_complete").wait(StackName=sys.argv[1], WaiterConfig={"Delay": 1, "MaxAttempts": 600})
"""

# What a careful script does to create-or-update with a change set: read the stack, make a change set and wait
# for it, delete it when it holds no changes (else execute it and wait), read the outputs. Its own process,
# like the runner, so that interpreter start and imports count on both sides.
BARE = """
import json, os, sys, time, uuid
import boto3
from botocore.exceptions import ClientError
cfn = boto3.client("cloudformation")
name, template = sys.argv[1], open(sys.argv[2]).read()
params = json.loads(os.environ["BENCH_PARAMETERS"])
cfn.describe_stacks(StackName=name)
try:
    cs = cfn.create_change_set(StackName=name, ChangeSetName="bare-" + uuid.uuid4().hex[:8], ChangeSetType="UPDATE",
                               TemplateBody=template, Parameters=params, Capabilities=["CAPABILITY_IAM"])["Id"]
except ClientError as exc:  # moto refuses an empty change set outright
    assert "No updates" in str(exc), exc
else:
    while (status := cfn.describe_change_set(ChangeSetName=cs))["Status"] in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
        time.sleep(0.5)
    if status["Status"] == "FAILED":
        cfn.delete_change_set(ChangeSetName=cs)
    else:
        cfn.execute_change_set(ChangeSetName=cs)
        cfn.get_waiter("stack_update_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
outputs = cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])
json.dump({o["OutputKey"]: o["OutputValue"] for o in outputs}, sys.stdout)
"""


def bench_cloudformation(bench: Bench) -> None:
    family = Family("s3-bucket")
    stack = family.folder("cloudformation")
    inputs = {**family.inputs, "bucket": "bench-cfn"}
    runner = bench.runner("apply", stack, STACK_NAME, inputs, family.secrets, backend="cloudformation")
    runner.run()  # creates the stack; what is measured is the unchanged create after it
    parameters = {"BENCH_PARAMETERS": json.dumps(_parameters(family, {**inputs, "bucket": "bench-cfn-bare"}))}
    bench.bare_python(CREATE, [BARE_STACK_NAME, str(stack / "template.yaml")], parameters).run()
    bare = bench.bare_python(BARE, [BARE_STACK_NAME, str(stack / "template.yaml")], parameters)
    runner_time, bare_time = alternate(runner.run, bare.run)
    runner_calls, bare_calls = (count(side, bench.api) for side in (runner, bare))
    validate = bench.runner("validate", stack, STACK_NAME, inputs, family.secrets, backend="cloudformation")
    (validate_time,) = alternate(validate.run)

    report = bench.report
    report.side_by_side("cloudformation unchanged create", runner_time, bare_time, ratio_at_most(1.0))
    report.add(
        "cloudformation AWS API calls: iac-runner / bare",
        f"{total(runner_calls)} / {total(bare_calls)}",
        "<= bare",
        total(runner_calls) <= total(bare_calls),
    )
    report.add("  iac-runner's calls", describe(runner_calls))
    report.add("  bare script's calls", describe(bare_calls))
    change_sets = runner_calls["CreateChangeSet"]
    report.add(
        "cloudformation change sets iac-runner creates (CreateChangeSet)", str(change_sets), "0", not change_sets
    )
    report.add("  for comparison: iac-runner validate (start + cfn-lint)", f"{validate_time.median:.2f} s")
    report.add(
        "peak memory of cloudformation create: iac-runner / bare",
        f"{runner_time.peak_mb:.0f} MB / {bare_time.peak_mb:.0f} MB",
        f"iac-runner <= {MEMORY_MB} MB",
        runner_time.peak_mb <= MEMORY_MB,
    )


def _parameters(family: Family, inputs: dict[str, object]) -> list[dict[str, str]]:
    values = {**inputs, **family.secrets}
    return [
        {"ParameterKey": k, "ParameterValue": str(v).lower() if isinstance(v, bool) else str(v)}
        for k, v in values.items()
    ]
