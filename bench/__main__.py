"""`make bench`: the runner against the bare engine, measured side by side in one run.

- `iac-runner --help`: median wall time (target <= 150 ms) and which heavy modules it imported (none allowed).
- apply of an unchanged CloudFormation stack on moto: the runner (CLI, as a user runs it) against a bare
  boto3 script making the same API calls; difference in seconds and ratio.
- the runner's peak memory (max RSS) during that apply (target <= 200 MB).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from runner.emulator import running

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "stacks" / "s3-bucket" / "cloudformation"
INPUTS = {"bucket": "bench-bucket", "environment": "bench", "versioning": True}
SECRET = "bench-token-value"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
HEAVY = ("boto3", "botocore", "pulumi", "cfnlint", "git", "pydantic", "rich")

# The same calls the runner makes for an unchanged stack: read it, ask for a change set, read the stack's
# outputs. Run as its own process, like the runner, so interpreter start and imports count on both sides.
BARE_SCRIPT = """
import json, sys, uuid
import boto3
from botocore.exceptions import ClientError
cfn = boto3.client("cloudformation")
name, template, params = sys.argv[1], open(sys.argv[2]).read(), json.loads(sys.argv[3])
cfn.describe_stacks(StackName=name)
try:
    cs = cfn.create_change_set(StackName=name, ChangeSetName="bare-" + uuid.uuid4().hex[:8], ChangeSetType="UPDATE",
                               TemplateBody=template, Parameters=params, Capabilities=["CAPABILITY_IAM"])
    cfn.describe_change_set(ChangeSetName=cs["Id"])
except ClientError as exc:
    assert "No updates" in str(exc), exc
outputs = cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
json.dump({o["OutputKey"]: o["OutputValue"] for o in outputs}, sys.stdout)
"""


def timed(argv: list[str], env: Mapping[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one process."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"benchmark command failed: {' '.join(argv)}\n{child.stderr.read().decode() if child.stderr else ''}"
        )
    return elapsed, usage.ru_maxrss


def median_of(run: Callable[[], tuple[float, int]]) -> tuple[float, int]:
    samples = [run() for _ in range(ROUNDS)]
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def help_imports(env: Mapping[str, str]) -> list[str]:
    code = (
        "import sys\nfrom runner.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=dict(env), capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IAC_RUNNER_", "AWS_"))}
    cli = [sys.executable, "-m", "runner.cli"]
    rows: list[tuple[str, str]] = []

    help_time, _ = median_of(lambda: timed([*cli, "--help"], env))
    imported = help_imports(env)
    rows.append(("iac-runner --help, median", f"{help_time * 1000:.0f} ms (target <= 150 ms)"))
    rows.append(("heavy modules imported by --help", ", ".join(imported) or "none"))

    with running() as cloud, tempfile.TemporaryDirectory() as tmp:
        aws = {**env, **cloud.env()}
        inputs = Path(tmp) / "inputs.json"
        inputs.write_text(json.dumps(INPUTS))
        runner_env = {**aws, "IAC_RUNNER_SECRET_apiToken": SECRET}
        apply = [*cli, "apply", str(STACK), "--inputs", str(inputs), "--stack-name", "bench", "--out-dir", tmp]
        timed(apply, runner_env)  # create the stack; the benchmark measures the unchanged re-apply
        params = [{"ParameterKey": k, "ParameterValue": str(v).lower() if isinstance(v, bool) else str(v)}
                  for k, v in {**INPUTS, "apiToken": SECRET}.items()]  # fmt: skip
        bare = [sys.executable, "-c", BARE_SCRIPT, "bench", str(STACK / "template.yaml"), json.dumps(params)]
        runner_time, runner_rss = median_of(lambda: timed(apply, runner_env))
        bare_time, bare_rss = median_of(lambda: timed(bare, aws))
        lint_time, _ = median_of(lambda: timed([*cli, "validate", str(STACK), "--inputs", str(inputs)], runner_env))

    rows.append(("apply unchanged CFN stack: iac-runner, median", f"{runner_time:.2f} s"))
    rows.append(("apply unchanged CFN stack: bare boto3, median", f"{bare_time:.2f} s"))
    rows.append(("difference / ratio", f"+{runner_time - bare_time:.2f} s / {runner_time / bare_time:.2f}x"))
    rows.append(("  of which validation (iac-runner validate)", f"{lint_time:.2f} s"))
    rows.append(("peak memory during apply: iac-runner", f"{runner_rss / 1024:.0f} MB (target <= 200 MB)"))
    rows.append(("peak memory: bare boto3 script", f"{bare_rss / 1024:.0f} MB"))

    width = max(len(k) for k, _ in rows)
    print(f"iac-runner benchmarks ({ROUNDS} rounds each, moto on loopback)")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
