"""OpenTofu, unchanged stack: `iac-runner apply` (the backend named, as the rendered definitions name it; and
detected, as a CLI user may leave it) against the bare `tofu init && tofu apply -auto-approve && tofu output -json`
on a copy of the same stack; the tofu processes each starts; `tofu init` with a cold and a warm
shared plugin cache."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import ROOT, Bench, Family
from bench.counting import count, describe, total
from bench.measure import Command, Goal, Series, alternate, over_at_most, ratio_at_most

BARE = "tofu init -input=false >/dev/null && tofu apply -auto-approve -input=false >/dev/null && tofu output -json"


@dataclass(frozen=True)
class Case:
    family: Family
    label: str
    goal: Goal


CASES = (
    Case(Family("random-password"), "offline stack", over_at_most(0.15)),
    Case(Family("s3-bucket"), "real provider stack (hashicorp/aws on moto)", ratio_at_most(1.05)),
)


def tofu_env(bench: Bench, cache: str = "tofu-plugin-cache") -> dict[str, str]:
    """What both sides run tofu with: the offline provider mirror and a plugin cache shared by all stacks."""
    configured = os.environ.get("TF_CLI_CONFIG_FILE", "")
    tfrc = configured if Path(configured).is_file() else str(ROOT / ".tools" / "tofu.tfrc")
    return {
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": tfrc,
        "TF_PLUGIN_CACHE_DIR": str(bench.folder(cache)),
    }


def runner_apply(
    bench: Bench, family: Family, name: str, inputs: Mapping[str, Any], *, cache: str = "tofu-plugin-cache"
) -> Command:
    """`iac-runner apply` of stack `name`: a private copy of the family's opentofu stack, state in a folder."""
    stack = bench.copy(family.folder("opentofu"), f"tofu-{name}")
    state = bench.folder("tofu-state").as_uri()
    return bench.runner(
        "apply", stack, name, inputs, family.secrets, backend="opentofu", state_url=state, env=tofu_env(bench, cache)
    )


def bench_opentofu(bench: Bench) -> None:
    for case in CASES:
        if case.family.folder("opentofu").is_dir():
            _case(bench, case)


def _case(bench: Bench, case: Case) -> None:
    family, slug = case.family, case.family.name
    runner = runner_apply(bench, family, f"bench-{slug}", _unique(family.inputs, "runner"))
    bare = _bare(bench, family)
    for side in (runner, bare):
        side.run()  # creates the stack; what is measured is the unchanged create after it
    detecting = bench.detecting(runner)
    runner_time, bare_time, detecting_time = alternate(runner.run, bare.run, detecting.run)
    runner_tofu, bare_tofu = (count(side, bench.engines) for side in (runner, bare))
    cold, warm = _init_cold_warm(bench, bare)

    report = bench.report
    report.side_by_side(f"opentofu unchanged create, {case.label}", runner_time, bare_time, case.goal)
    report.add(
        "  the same with the backend detected from the stack folder (no IAC_RUNNER_BACKEND / --backend)",
        f"{detecting_time.median:.2f} s ({detecting_time.median - runner_time.median:+.2f} s)",
    )
    report.add(
        f"  tofu processes: iac-runner / bare ({slug})",
        f"{total(runner_tofu)} / {total(bare_tofu)} (iac-runner: {describe(runner_tofu)}; bare: {describe(bare_tofu)})",
    )
    report.add(f"  tofu init ({slug}): cold / warm plugin cache", f"{cold:.2f} s / {warm.median:.2f} s")


def _bare(bench: Bench, family: Family) -> Command:
    """The bare engine on a copy of the stack: a tfvars file for the inputs, TF_VAR_* for the secrets."""
    folder = bench.copy(family.folder("opentofu"), f"tofu-{family.name}-bare")
    (folder / "terraform.tfvars.json").write_text(json.dumps(_unique(family.inputs, "bare")))
    env = {
        **tofu_env(bench),
        "TF_DATA_DIR": str(bench.folder(f"tofu-{family.name}-bare-data")),
        **{f"TF_VAR_{k}": v for k, v in family.secrets.items()},
    }
    return Command(["sh", "-c", BARE], {**bench.env, **env}, cwd=folder)


def _unique(inputs: Mapping[str, Any], side: str) -> dict[str, Any]:
    """The inputs with globally named things (an S3 bucket) made distinct per side, so both can exist."""
    return {**inputs, **({"bucket": f"bench-{side}"} if "bucket" in inputs else {})}


def _init_cold_warm(bench: Bench, bare: Command) -> tuple[float, Series]:
    """`tofu init` into a fresh data dir, first with an empty plugin cache, then with the one it filled."""
    cache = bench.folder(f"init-cache-{time.monotonic_ns()}")

    def init() -> Command:
        data = bench.tmp / f"init-data-{time.monotonic_ns()}"
        env = {"TF_PLUGIN_CACHE_DIR": str(cache), "TF_DATA_DIR": str(data)}
        return Command(["tofu", "init", "-input=false", "-backend=false"], {**bare.env, **env}, cwd=bare.cwd)

    cold = init().run().seconds
    (warm,) = alternate(lambda: init().run())
    return cold, warm
