"""Recording-rule files for tests: every series the scaler reads for a plan, promtool's
check of a rule file, and the phase of promtool's rule backfill."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import pytest
import yaml

from fake_http import FakeHTTPServer
from prometheus import binaries


def rule_eval_offset(rule_file: Path, interval_s: int, near: int) -> float:
    """The phase (seconds in [0, interval)) at which promtool's rule backfill evaluates the
    single group of `rule_file`: Prometheus offsets each group's evaluations by a hash of
    its name and file path. Learned by pointing promtool at a FakeHTTPServer and reading the
    `start` it asks for. Aligning synthetic history with it makes backfilled values exact."""
    _, promtool = binaries()
    with FakeHTTPServer(body=FakeHTTPServer.EMPTY_MATRIX) as fake, tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "rules", f"--url={fake.url}",
             f"--start={near}", f"--end={near + 3 * interval_s}", f"--eval-interval={interval_s}s",
             f"--output-dir={out}", str(rule_file)],
            capture_output=True, text=True, timeout=30,
        )
        starts = {round(float(r["params"]["start"]), 3) for r in fake.requests if r["path"].endswith("/query_range")}
    if len(starts) != 1:
        pytest.fail(f"could not learn the rule evaluation offset of {rule_file}: starts {starts}", pytrace=False)
    return round(starts.pop() % interval_s, 3)


def recording_rules(plan: Any, path: Path, kinds: Sequence[str] = ("throughput", "worker")) -> Path:
    """A rule file with every series the scaler reads for `plan`, from scaler.sources.

    Test-only stand-in for the generator's renderer: record_name / raw_expr with the plan's
    selector, the range its scrape interval needs and the `dynplan_plan` and `dynplan_namespace` labels, one group per kind, for the series the plan reads
    (`plan_series`: the attainment sizing's signals only for plans sized by attainment).
    """
    from scaler.sources import NAMESPACE_LABEL, PLAN_LABEL, SOURCES, plan_range, plan_series, raw_expr, record_name

    src = SOURCES[plan.spec.metrics.source]
    windows = {
        "throughput": plan.spec.scaling.throughput.interval_seconds,
        "worker": plan.spec.scaling.load.interval_seconds,
    }
    groups = []
    for kind, w in windows.items():
        if kind not in kinds:
            continue
        rules = [
            {
                "record": record_name(src, s, w, plan_range(plan, kind)),
                "expr": raw_expr(src, s, plan.spec.metrics.selector, w, range_seconds=plan_range(plan, kind), bound_ms=plan.bucket_bound_ms("ttft")),
                "labels": {PLAN_LABEL: plan.name, NAMESPACE_LABEL: plan.namespace},
            }
            for s in plan_series(plan, kind)
        ]
        groups.append({"name": f"dynplan-{plan.name}-{kind}", "rules": rules})
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def check_rules(path: Path) -> None:
    _, promtool = binaries()
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
