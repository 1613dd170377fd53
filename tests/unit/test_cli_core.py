"""`dynplan validate` and `dynplan capacity`: exit codes, messages, and the capacity table
of docs/decision-logic.md reproduced through the command line from plan files with profiles written as Dynamo JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import EXAMPLES, REPO, flat_profile, plan_dict, with_changes, write_plan
from scaler.cli import main
from test_planner import TABLE, table_ids


def run(*args: str):
    return CliRunner().invoke(main, list(args))


# -- capacity ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate, isl, osl, thpt, overrides, expected, why", TABLE, ids=table_ids())
def test_capacity_json_reproduces_the_table(tmp_path: Path, rate, isl, osl, thpt, overrides, expected, why) -> None:
    path = write_plan(tmp_path, plan_dict(isl=isl, osl=osl, **overrides), profile=flat_profile(40000, thpt))
    res = run("capacity", "-f", str(path), "--rate", repr(rate), "--output", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    got = (doc["pools"]["prefill"]["replicas"], doc["pools"]["decode"]["replicas"])
    assert got == expected, why
    gp = overrides.get("gpus", {}).get("prefill", 1)
    gd = overrides.get("gpus", {}).get("decode", 1)
    assert doc["pools"]["prefill"]["gpus"] == expected[0] * gp
    assert doc["pools"]["decode"]["gpus"] == expected[1] * gd
    assert doc["totalGpus"] == expected[0] * gp + expected[1] * gd
    assert doc["reason"] == "capacity"


def test_capacity_json_budget_case(tmp_path: Path) -> None:
    path = write_plan(tmp_path, plan_dict(max_gpus=12), profile=flat_profile(40000, 1000))
    doc = json.loads(run("capacity", "-f", str(path), "--rate", "100", "-o", "json").stdout)
    p, d = doc["pools"]["prefill"], doc["pools"]["decode"]
    assert doc["totalGpus"] <= 12 and doc["budgetGpus"] == 12
    assert 1 <= p["replicas"] <= 8 and 1 <= d["replicas"] <= 15
    assert (p["requested"], d["requested"]) == (8, 15)
    assert (p["replicas"], d["replicas"]) == (4, 8)
    assert "budget" in doc["poolReasons"]["decode"]


def test_capacity_defaults_isl_osl_from_workload(tmp_path: Path) -> None:
    # workload ISL 100 / OSL 10; overriding on the command line changes the answer
    path = write_plan(tmp_path, plan_dict(isl=100, osl=10), profile=flat_profile(40000, 1000))
    doc = json.loads(run("capacity", "-f", str(path), "--rate", "20", "-o", "json").stdout)
    assert doc["input"] == {"rate": 20.0, "isl": 100.0, "osl": 10.0}
    assert (doc["pools"]["prefill"]["replicas"], doc["pools"]["decode"]["replicas"]) == (1, 1)
    doc = json.loads(run("capacity", "-f", str(path), "--rate", "20", "--isl", "3000", "--osl", "150", "-o", "json").stdout)
    # 60000/40000 -> 2; 3000/1000 -> 3
    assert (doc["pools"]["prefill"]["replicas"], doc["pools"]["decode"]["replicas"]) == (2, 3)


def test_capacity_table_output(tmp_path: Path) -> None:
    path = write_plan(tmp_path, plan_dict(), profile=flat_profile(40000, 10000))
    res = run("capacity", "-f", str(path), "--rate", "20")
    assert res.exit_code == 0
    rows = {w[0]: w for w in (line.split() for line in res.stdout.splitlines()) if len(w) > 2 and w[1].isdigit() and w[2].isdigit()}
    assert rows["prefill"][1:3] == ["2", "2"]
    assert rows["decode"][1:3] == ["1", "1"]
    assert "total" in res.stdout and res.stdout.split("total", 1)[1].split()[0] == "3"
    assert "40000 tok/s/GPU" in res.stdout


def test_capacity_agg_example_without_profile_is_an_error() -> None:
    res = run("capacity", "-f", str(EXAMPLES / "llama-8b-agg.yaml"), "--rate", "1")
    assert res.exit_code == 2
    assert "spec.profile" in res.stderr and "capacity needs a profile" in res.stderr


def test_capacity_bad_plan_exits_2(tmp_path: Path) -> None:
    path = write_plan(tmp_path, with_changes(plan_dict(), {"spec.sla.itlMs": 0}))
    res = run("capacity", "-f", str(path), "--rate", "1")
    assert res.exit_code == 2
    assert f"{path}: spec.sla.itlMs" in res.stderr
    assert res.stdout == ""


def test_capacity_negative_rate_is_a_usage_error(tmp_path: Path) -> None:
    path = write_plan(tmp_path, plan_dict(), profile=flat_profile())
    res = run("capacity", "-f", str(path), "--rate", "-1")
    assert res.exit_code == 2
    assert "--rate" in res.stderr


# -- validate ------------------------------------------------------------------------------


def test_validate_good_examples() -> None:
    res = run("validate", str(EXAMPLES / "llama-8b-disagg.yaml"), str(EXAMPLES / "llama-8b-agg.yaml"))
    assert res.exit_code == 0, res.stderr
    assert "llama-8b-disagg.yaml: ok (disagg, pools: prefill, decode)" in res.stdout
    assert "llama-8b-agg.yaml: ok (agg, pools: worker)" in res.stdout


@pytest.mark.parametrize(
    "name, field",
    [
        ("unknown-field.yaml", "spec.pools.worker.maxReplica: unknown field"),
        ("min-above-max.yaml", "spec.pools.decode.maxReplicas: must be >= minReplicas"),
        ("budget-below-minimums.yaml", "spec.budget.maxGpus: 4 GPUs cannot hold"),
        ("missing-profile.yaml", "spec.profile:"),
        ("several-errors.yaml", "metadata.name: must be a DNS-1123 label"),
        ("bad-profile-data.yaml", "spec.profileData.decode.x_kv_usage: values must lie in [0, 1]"),
    ],
)
def test_validate_bad_examples(name: str, field: str) -> None:
    path = EXAMPLES / "bad" / name
    res = run("validate", str(path))
    assert res.exit_code == 2
    assert f"error: {path}: {field}" in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


def test_validate_reports_all_errors_of_all_files() -> None:
    bad = EXAMPLES / "bad"
    res = run("validate", str(EXAMPLES / "llama-8b-agg.yaml"), str(bad / "several-errors.yaml"), str(bad / "min-above-max.yaml"))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 4
    assert sum("several-errors.yaml" in line for line in lines) == 3


def test_validate_missing_file() -> None:
    res = run("validate", str(REPO / "examples" / "nope.yaml"))
    assert res.exit_code == 2
    assert "nope.yaml: no such file" in res.stderr


def test_validate_bad_inline_profile_reports_every_problem() -> None:
    res = run("validate", str(EXAMPLES / "bad" / "bad-profile-data.yaml"))
    assert res.exit_code == 2
    paths = [line.split(": ")[2] for line in res.stderr.strip().splitlines()]
    assert paths == ["spec.profileData.prefill", "spec.profileData.decode.x_kv_usage", "spec.profileData.decode.max_kv_tokens"]


def test_commands_do_not_import_the_top_level_cli() -> None:
    """Subcommands share `scaler.clikit`; only the entry point knows the group (`scaler.cli`)."""
    import ast

    offenders = []
    for path in sorted((REPO / "scaler").rglob("*.py")):
        if path == REPO / "scaler" / "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                # resolve relative imports against the module's package
                package = path.relative_to(REPO).with_suffix("").parts[:-1]
                base = package[: len(package) - node.level + 1] if node.level else ()
                target = ".".join((*base, node.module or "")) if node.level else (node.module or "")
                if target == "scaler.cli":
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_validate_every_benchmark_scenario_without_warnings() -> None:
    # the attainment benchmark's plans (bench/scenarios) must load with their profiles and
    # count misses at real bucket bounds: a plan that drifted would bench something else
    plans = sorted((REPO / "bench" / "scenarios").glob("*.yaml"))
    assert len(plans) == 8
    res = run("validate", *map(str, plans))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.count(": ok (") == 8
    assert "warning" not in res.stderr.lower(), res.stderr
