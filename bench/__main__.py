"""`make bench`: the runner against the bare engine, measured side by side in one run.

- `iac-runner --help`: median wall time (target <= 150 ms) and which heavy modules it imported (none allowed).
- cloudformation: apply of an unchanged stack on moto, the runner (CLI, as a user runs it) against a bare boto3
  script making the same API calls; the runner's peak memory during that apply (target <= 200 MB).
- pulumi: `up` of an unchanged stack, the runner against a bare Automation API script doing the same.
- opentofu: apply of an unchanged stack, the runner against the bare `tofu init && tofu apply -auto-approve &&
  tofu output -json` on a copy of the same stack (fixed overhead target <= 0.3 s offline, ratio <= 1.05 with a
  real provider), and `tofu init` with a cold and a warm shared plugin cache.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from iac_runner.local.cloud import Emulator, running

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
TOOLS = ROOT / ".tools"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
HEAVY = ("boto3", "botocore", "pulumi", "cfnlint", "git", "pydantic", "rich")
CLI = [sys.executable, "-m", "iac_runner"]

Rows = list[tuple[str, str]]

# The same calls the runner makes for an unchanged stack: read it, ask for a change set, read the stack's
# outputs. Run as its own process, like the runner, so interpreter start and imports count on both sides.
BARE_CFN = """
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
# A bare Automation API script doing what the runner does for an unchanged stack: select it, set its config
# (plain and secret), `up`, read the outputs.
BARE_PULUMI = """
import json, sys
from pulumi import automation as auto
folder, inputs, secrets = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
stack = auto.create_or_select_stack("bench-bare", work_dir=folder)
text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in inputs.items()}
config = {f"random-password:{k}": auto.ConfigValue(v) for k, v in text.items()}
config.update({f"random-password:{k}": auto.ConfigValue(v, secret=True) for k, v in secrets.items()})
stack.set_all_config(config)
stack.up()
json.dump({k: v.value for k, v in stack.outputs().items()}, sys.stdout)
"""
BARE_TOFU = (
    "{tofu} init -input=false >/dev/null && {tofu} apply -auto-approve -input=false >/dev/null && {tofu} output -json"
)


def timed(argv: list[str], env: Mapping[str, str], cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one process (and its waited-for children)."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        error = child.stderr.read().decode() if child.stderr else ""
        raise SystemExit(f"benchmark command failed: {' '.join(argv)}\n{error}")
    return elapsed, usage.ru_maxrss


def median_of(run: Callable[[], tuple[float, int]]) -> tuple[float, int]:
    samples = [run() for _ in range(ROUNDS)]
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def side_by_side(rows: Rows, label: str, runner: float, bare: float) -> None:
    rows.append((f"{label}: iac-runner / bare, median", f"{runner:.2f} s / {bare:.2f} s"))
    rows.append((f"{label}: difference / ratio", f"{runner - bare:+.2f} s / {runner / bare:.2f}x"))


def bench_help(rows: Rows, env: Mapping[str, str]) -> None:
    help_time, _ = median_of(lambda: timed([*CLI, "--help"], env))
    code = (
        "import sys\nfrom iac_runner.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=dict(env), capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("HEAVY:"))
    rows.append(("iac-runner --help, median", f"{help_time * 1000:.0f} ms (target <= 150 ms)"))
    rows.append(("heavy modules imported by --help", line.removeprefix("HEAVY:") or "none"))


def bench_cloudformation(rows: Rows, env: Mapping[str, str], cloud: Emulator, tmp: Path) -> None:
    stack = STACKS / "s3-bucket" / "cloudformation"
    inputs = {**json.loads((STACKS / "s3-bucket" / "inputs.json").read_text()), "bucket": "bench-cfn"}
    secrets = json.loads((STACKS / "s3-bucket" / "secret-inputs.json").read_text())
    inputs_file = tmp / "cfn-inputs.json"
    inputs_file.write_text(json.dumps(inputs))
    aws = {**env, **cloud.env()}
    runner_env = {**aws, **{f"IAC_RUNNER_SECRET_{k}": v for k, v in secrets.items()}}
    apply = [*CLI, "apply", str(stack), "--inputs", str(inputs_file), "--stack-name", "bench", "--out-dir", str(tmp)]
    timed(apply, runner_env)  # create the stack; what is measured is the unchanged re-apply
    params = [
        {"ParameterKey": k, "ParameterValue": str(v).lower() if isinstance(v, bool) else str(v)}
        for k, v in {**inputs, **secrets}.items()
    ]
    bare = [sys.executable, "-c", BARE_CFN, "bench", str(stack / "template.yaml"), json.dumps(params)]
    runner_time, runner_rss = median_of(lambda: timed(apply, runner_env))
    bare_time, bare_rss = median_of(lambda: timed(bare, aws))
    validate = [*CLI, "validate", str(stack), "--inputs", str(inputs_file)]
    lint_time, _ = median_of(lambda: timed(validate, runner_env))
    side_by_side(rows, "cloudformation apply, unchanged", runner_time, bare_time)
    rows.append(("  of which validation (iac-runner validate)", f"{lint_time:.2f} s"))
    rows.append(
        ("peak memory during apply: iac-runner / bare", f"{runner_rss / 1024:.0f} MB / {bare_rss / 1024:.0f} MB")
    )


def bench_opentofu(rows: Rows, env: Mapping[str, str], cloud: Emulator, tmp: Path) -> None:
    tofu = shutil.which("tofu") or str(TOOLS / "bin" / "tofu")
    if not Path(tofu).exists():
        rows.append(("opentofu", "tofu not found: run `make tools`"))
        return
    base = {
        **env,
        **cloud.env(),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_PLUGIN_CACHE_DIR": str(tmp / "plugin-cache"),
    }
    if (TOOLS / "tofu.tfrc").is_file() and not Path(base.get("TF_CLI_CONFIG_FILE", "/nonexistent")).is_file():
        base["TF_CLI_CONFIG_FILE"] = str(TOOLS / "tofu.tfrc")
    Path(base["TF_PLUGIN_CACHE_DIR"]).mkdir()
    families = [("random-password", "offline stack (random, terraform_data)")]
    if (STACKS / "s3-bucket" / "opentofu").is_dir():
        families.append(("s3-bucket", "real provider stack (hashicorp/aws on moto)"))
    for family, label in families:
        stack = STACKS / family / "opentofu"
        inputs = json.loads((STACKS / family / "inputs.json").read_text())
        secrets = json.loads((STACKS / family / "secret-inputs.json").read_text())
        inputs_file = tmp / f"{family}-inputs.json"
        inputs_file.write_text(json.dumps(_unique(inputs, "runner")))
        # The bare engine on a copy of the stack: tfvars for the inputs, TF_VAR_* for the secrets.
        bare_dir = tmp / f"{family}-bare"
        shutil.copytree(stack, bare_dir, ignore=shutil.ignore_patterns(".terraform*"))
        (bare_dir / "terraform.tfvars.json").write_text(json.dumps(_unique(inputs, "bare")))
        bare_env = {
            **base,
            "TF_DATA_DIR": str(tmp / f"{family}-bare-data"),
            **{f"TF_VAR_{k}": v for k, v in secrets.items()},
        }
        bare = ["sh", "-c", BARE_TOFU.format(tofu=tofu)]
        runner_env = {**base, **{f"IAC_RUNNER_SECRET_{k}": v for k, v in secrets.items()}}
        state = (tmp / f"{family}-state").as_uri()
        apply = [
            *CLI,
            "apply",
            str(stack),
            "--inputs",
            str(inputs_file),
            "--stack-name",
            f"bench-{family}",
            "--state-url",
            state,
            "--out-dir",
            str(tmp),
        ]
        timed(bare, bare_env, cwd=bare_dir)
        timed(apply, runner_env)
        runner_time, _ = median_of(lambda: timed(apply, runner_env))  # noqa: B023 - called right here
        bare_time, _ = median_of(lambda: timed(bare, bare_env, cwd=bare_dir))  # noqa: B023
        side_by_side(rows, f"opentofu apply, unchanged, {label}", runner_time, bare_time)
        cold, warm = _init_cold_warm(tofu, bare_dir, base, tmp / f"{family}-init")
        rows.append((f"opentofu init, {family}: cold / warm plugin cache", f"{cold:.2f} s / {warm:.2f} s"))


def bench_pulumi(rows: Rows, env: Mapping[str, str], tmp: Path) -> None:
    pulumi = shutil.which("pulumi") or str(TOOLS / "bin" / "pulumi")
    if not Path(pulumi).exists():
        rows.append(("pulumi", "pulumi not found: run `make tools`"))
        return
    family = STACKS / "random-password"
    inputs = json.loads((family / "inputs.json").read_text())
    secrets = json.loads((family / "secret-inputs.json").read_text())
    inputs_file = tmp / "pulumi-inputs.json"
    inputs_file.write_text(json.dumps(inputs))
    base = {
        **env,
        "PATH": f"{Path(pulumi).parent}{os.pathsep}{env.get('PATH', '')}",
        "PULUMI_CONFIG_PASSPHRASE": "bench-passphrase",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        "PULUMI_HOME": str(tmp / "pulumi-home"),
        "PULUMI_PYTHON_CMD": sys.executable,
    }
    # Both sides on copies: stack config is written beside the program (as `pulumi config set` does).
    bare_dir, runner_dir = tmp / "pulumi-bare", tmp / "pulumi-runner"
    shutil.copytree(family / "pulumi", bare_dir)
    shutil.copytree(family / "pulumi", runner_dir)
    (tmp / "pulumi-bare-state").mkdir()
    bare_env = {**base, "PULUMI_BACKEND_URL": (tmp / "pulumi-bare-state").as_uri()}
    bare = [sys.executable, "-c", BARE_PULUMI, str(bare_dir), json.dumps(inputs), json.dumps(secrets)]
    runner_env = {**base, **{f"IAC_RUNNER_SECRET_{k}": v for k, v in secrets.items()}}
    apply = [
        *CLI,
        "apply",
        str(runner_dir),
        "--inputs",
        str(inputs_file),
        "--stack-name",
        "bench-runner",
        "--state-url",
        (tmp / "pulumi-state").as_uri(),
        "--out-dir",
        str(tmp),
    ]
    timed(bare, bare_env)
    timed(apply, runner_env)
    runner_time, runner_rss = median_of(lambda: timed(apply, runner_env))
    bare_time, _ = median_of(lambda: timed(bare, bare_env))
    side_by_side(rows, "pulumi up, unchanged (dynamic provider)", runner_time, bare_time)
    rows.append(("peak memory during pulumi up: iac-runner", f"{runner_rss / 1024:.0f} MB"))


def _unique(inputs: Mapping[str, object], side: str) -> dict[str, object]:
    """The inputs with globally named things (an S3 bucket) made distinct per side, so both can exist."""
    return {**inputs, **({"bucket": f"bench-{side}"} if "bucket" in inputs else {})}


def _init_cold_warm(tofu: str, stack: Path, base: Mapping[str, str], tmp: Path) -> tuple[float, float]:
    """`tofu init` into a fresh data dir, first with an empty plugin cache, then with the one it filled."""
    cache = tmp / "cache"
    cache.mkdir(parents=True)

    def init(n: int) -> tuple[float, int]:
        env = {**base, "TF_PLUGIN_CACHE_DIR": str(cache), "TF_DATA_DIR": str(tmp / f"data-{n}-{time.monotonic_ns()}")}
        return timed([tofu, "init", "-input=false", "-backend=false"], env, cwd=stack)

    cold, _ = init(0)
    warm, _ = median_of(lambda: init(1))
    return cold, warm


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IAC_RUNNER_", "AWS_"))}
    rows: Rows = []
    bench_help(rows, env)
    with running() as cloud, tempfile.TemporaryDirectory() as tmp:
        bench_cloudformation(rows, env, cloud, Path(tmp))
        bench_opentofu(rows, env, cloud, Path(tmp))
        bench_pulumi(rows, env, Path(tmp))
    width = max(len(k) for k, _ in rows)
    print(f"iac-runner benchmarks ({ROUNDS} rounds each, medians; moto on loopback)")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
