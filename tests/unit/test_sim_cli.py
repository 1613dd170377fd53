"""`dynplan simulate` end to end: table, summary.json shape, plot, decision logs, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import EXAMPLES, REPO
from scaler.cli import main

PLAN = str(EXAMPLES / "llama-8b-disagg.yaml")
TRACE = str(REPO / "tests" / "fixtures" / "traces" / "azure-llm-2023-code-head2000.csv")
POLICY_KEYS = {
    "attainment", "meetsTarget", "ttftMs", "itlMs", "gpuHours", "gpuHoursVsStatic", "gpuHoursVsOracle",
    "windowAttainment", "goodputRps", "scaleEvents", "requests", "unfinished", "meanTtftMs", "meanItlMs",
    "gpuHoursByPool", "peakReplicas", "peakGpus", "endTimeS",
}
SIMULATED_KEYS = POLICY_KEYS | {"initialReplicas", "actuation"}
SWEEP_KEYS = POLICY_KEYS | {"fleet", "found", "target", "fleetGpus", "infeasiblePools", "engineRuns", "probes"}
ORACLE_KEYS = {
    "attainment", "target", "gpuHours", "gpuHoursVsStatic", "gpuHoursVsOracle", "intervalSeconds", "peakReplicas",
    "intervals", "infeasibleIntervals", "budgetLimitedIntervals", "engineRuns",
}
TOP_KEYS = {
    "plan", "planFile", "trace", "rateScale", "replicate", "replicateJitterSeconds", "seed", "requests",
    "spanSeconds", "startupSeconds", "initialReplicas", "actuation", "truthProfile", "sla", "simulationSeconds",
    "policies",
}


def _run(*args: str) -> "object":
    return CliRunner().invoke(main, ["simulate", "-f", PLAN, "--trace", TRACE, *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sim")
    res = _run("--rate-scale", "4", "--policy", "plan", "--policy", "static:3", "--policy", "load-only",
               "--policy", "dynamo", "--policy", "llmd-slo", "--policy", "static-sweep", "--policy", "oracle",
               "--out", str(out))
    assert res.exit_code == 0, res.output
    return out, res.output


def test_summary_has_the_documented_shape(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    doc = json.loads((out / "summary.json").read_text())
    assert set(doc) == TOP_KEYS
    names = ["plan", "static:3", "load-only", "dynamo", "llmd-slo", "static-sweep", "oracle"]
    assert list(doc["policies"]) == names
    oracle_gh = doc["policies"]["oracle"]["gpuHours"]
    for name in names[:-1]:
        s = doc["policies"][name]
        assert set(s) == (SWEEP_KEYS if name == "static-sweep" else SIMULATED_KEYS), name
        assert list(s["attainment"]) == ["both", "ttft", "itl"]
        assert set(s["windowAttainment"]) == {"ttft", "itl", "both"}
        assert set(s["ttftMs"]) == {"p50", "p90", "p99"} == set(s["itlMs"])
        assert s["ttftMs"]["p50"] <= s["ttftMs"]["p90"] <= s["ttftMs"]["p99"]
        assert 0.0 <= s["attainment"]["both"] <= min(s["attainment"]["ttft"], s["attainment"]["itl"])
        assert s["meetsTarget"] == (s["attainment"]["both"] >= 0.99)
        assert s["gpuHoursVsOracle"] == pytest.approx(s["gpuHours"] / oracle_gh, rel=1e-3)
        assert s["requests"] == 2000
    # 5% of the code trace's prompts are too long for 200 ms on any fleet: no static fleet
    # reaches 99%, so there is no "x static"; the sweep reports the best it saw
    sweep = doc["policies"]["static-sweep"]
    assert sweep["found"] is False and sweep["target"] == 0.99 and sweep["infeasiblePools"] == ["prefill"]
    assert sweep["fleet"]["prefill"] == 16 and sweep["fleetGpus"] == sum(sweep["fleet"].values())
    assert sweep["engineRuns"] == len(sweep["probes"]) > 0
    assert all(doc["policies"][n]["gpuHoursVsStatic"] is None for n in names)
    assert {doc["policies"][n]["actuation"] for n in ("plan", "load-only", "llmd-slo")} == {"keda-hpa"}
    assert doc["policies"]["dynamo"]["actuation"] == "direct" and doc["policies"]["static:3"]["actuation"] is None
    orc = doc["policies"]["oracle"]
    assert set(orc) == ORACLE_KEYS and orc["target"] == 0.99
    assert 0 <= orc["infeasibleIntervals"] <= orc["intervals"] and orc["engineRuns"] > 0
    assert set(doc["simulationSeconds"]) == set(names)
    static = doc["policies"]["static:3"]
    assert static["scaleEvents"] == 0 and static["initialReplicas"] == {"prefill": 3, "decode": 3}
    # 3 + 3 GPUs for the whole run
    assert static["gpuHours"] == pytest.approx(6 * static["endTimeS"] / 3600, rel=1e-3)
    assert doc["rateScale"] == 4.0 and doc["sla"] == {"ttftMs": 200.0, "itlMs": 20.0, "attainment": 0.99}
    assert doc["initialReplicas"] == "warm" and doc["actuation"] == "keda-hpa"


def test_table_on_stdout(run_dir: tuple[Path, str]) -> None:
    _, output = run_dir
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("policy"))
    for column in ("both", "TTFT ok", "ITL ok", "TTFT p50/90/99 ms", "GPU-h", "x static", "x oracle"):
        assert column in lines[header]
    rows = [line.split()[0] for line in lines[header + 1 : header + 8]]
    assert rows == ["plan", "static:3", "load-only", "dynamo", "llmd-slo", "static-sweep", "oracle"]
    assert lines[header + 6].startswith("static-sweep 16,")
    assert "2000 requests" in lines[0]
    assert any(line.startswith("static-sweep: none up to the pools' maxima (16, 16) reaches 99%") for line in lines)


def test_plot_is_a_png(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    data = (out / "simulation.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # five panels of lines, not an empty canvas
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_decision_logs_come_from_the_planner(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    plan_log = [json.loads(line) for line in (out / "decisions-plan.jsonl").read_text().splitlines()]
    assert plan_log and all(d["throughput"] is not None for d in plan_log)
    # the example plan's throughput interval is 180 s
    assert plan_log[0]["timestamp"] == 180.0
    load_log = [json.loads(line) for line in (out / "decisions-load-only.jsonl").read_text().splitlines()]
    # every tick went down the load path (worker samples), none down the throughput path
    assert load_log and all(d["throughput"] is None and d["load"] for d in load_log)
    assert "load_scale_up" in {d["reason"] for d in load_log}  # bursts at 4x push the load path up
    # the example plan's load interval is 10 s (its default)
    assert [d["timestamp"] for d in load_log[:2]] == [10.0, 20.0]
    assert not (out / "decisions-static_3.jsonl").exists()


def _summary_without_timing(out: Path) -> dict:
    doc = json.loads((out / "summary.json").read_text())
    doc.pop("simulationSeconds")
    return doc


def test_same_seed_same_result_other_seed_other_jitter(tmp_path: Path) -> None:
    args = ("--replicate", "2", "--policy", "plan", "--no-plot")
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        res = _run(*args, "--seed", seed, "--out", str(tmp_path / name))
        assert res.exit_code == 0, res.output
    a, b, c = (_summary_without_timing(tmp_path / n) for n in "abc")
    assert a == b
    assert a["policies"]["plan"]["ttftMs"] != c["policies"]["plan"]["ttftMs"]
    assert a["requests"] == 4000


def test_unknown_policy_is_a_usage_error(tmp_path: Path) -> None:
    res = _run("--policy", "fastest", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2
    assert "unknown policy 'fastest'" in res.output and "--policy" in res.output
    assert not (tmp_path / "o").exists()


def test_bad_trace_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.97,12,x\n")
    res = CliRunner().invoke(main, ["simulate", "-f", PLAN, "--trace", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert f"{bad}: line 2: GeneratedTokens" in res.output
    assert not (tmp_path / "o").exists()


def test_plan_without_profile_needs_truth_profile(tmp_path: Path) -> None:
    # llama-8b-agg.yaml has no profile: the hardware must come from --truth-profile
    res = CliRunner().invoke(
        main, ["simulate", "-f", str(EXAMPLES / "llama-8b-agg.yaml"), "--trace", TRACE, "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2
    assert "spec.profile" in res.output and "--truth-profile" in res.output
    assert not (tmp_path / "o").exists()


def test_aggregated_plan_with_truth_profile(tmp_path: Path) -> None:
    agg = str(EXAMPLES / "llama-8b-agg.yaml")
    truth = str(EXAMPLES / "profiles" / "h200-llama3.1-8b-fp8-tp1")
    res = CliRunner().invoke(
        main,
        ["simulate", "-f", agg, "--trace", TRACE, "--truth-profile", truth, "--policy", "plan", "--policy", "static:8",
         "--policy", "oracle", "--out", str(tmp_path)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "summary.json").read_text())
    pol = doc["policies"]
    assert POLICY_KEYS <= set(pol["plan"]) and POLICY_KEYS <= set(pol["static:8"])
    assert set(pol["plan"]["gpuHoursByPool"]) == {"worker"}
    assert set(pol["oracle"]["peakReplicas"]) == {"worker"}
    assert pol["static:8"]["peakReplicas"] == {"worker": 8}
    assert pol["static:8"]["peakGpus"] == 16  # 8 workers x 2 GPUs (gpusPerReplica)
    assert pol["static:8"]["attainment"]["both"] >= 0.999  # one long prompt misses TTFT
    # the load path moved the worker pool; the oracle is a lower bound on the static fleet
    assert pol["plan"]["scaleEvents"] > 0 and pol["plan"]["peakReplicas"]["worker"] > 1
    assert pol["oracle"]["gpuHours"] < pol["static:8"]["gpuHours"]
    assert (tmp_path / "simulation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "replicas.csv").read_text().splitlines()[1:]
    assert rows and {r.split(",")[2] for r in rows} == {"worker"}
    assert "plan llama-8b-agg" in res.output and "static:8" in res.output


def test_missing_truth_profile_names_the_option(tmp_path: Path) -> None:
    res = _run("--truth-profile", str(tmp_path / "nope"))
    assert res.exit_code == 2
    assert "profile directory does not exist" in res.output


def test_truth_profile_plays_other_hardware(tmp_path: Path) -> None:
    # The measured bf16 profile is slower than the fp8 profile the plan was sized with.
    measured = REPO / "tests" / "fixtures" / "profiles" / "h200-llama3.1-8b-bf16-measured"
    fast = _run("--policy", "static:2", "--no-plot", "--out", str(tmp_path / "fast"))
    slow = _run("--policy", "static:2", "--no-plot", "--truth-profile", str(measured), "--out", str(tmp_path / "slow"))
    assert fast.exit_code == 0 and slow.exit_code == 0, slow.output
    f = json.loads((tmp_path / "fast" / "summary.json").read_text())
    s = json.loads((tmp_path / "slow" / "summary.json").read_text())
    assert s["truthProfile"].endswith("h200-llama3.1-8b-bf16-measured")
    assert s["policies"]["static:2"]["ttftMs"]["p50"] != f["policies"]["static:2"]["ttftMs"]["p50"]


def test_outputs_follow_the_umask(run_dir: tuple[Path, str]) -> None:
    import os

    out, _ = run_dir
    umask = os.umask(0)
    os.umask(umask)
    for name in ("summary.json", "simulation.png", "decisions-plan.jsonl"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_replica_timeline_csv(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    lines = (out / "replicas.csv").read_text().splitlines()
    assert lines[0] == "policy,t_seconds,pool,desired,ready,billed"
    static = [line.split(",") for line in lines[1:] if line.startswith("static:3,")]
    assert static == [["static:3", "0.000", "prefill", "3", "3", "3"], ["static:3", "0.000", "decode", "3", "3", "3"]]
    plan = [line.split(",") for line in lines[1:] if line.startswith("plan,")]
    doc = json.loads((out / "summary.json").read_text())
    warm = doc["policies"]["plan"]["initialReplicas"]
    assert plan[:2] == [["plan", "0.000", "prefill", *[str(warm["prefill"])] * 3],
                        ["plan", "0.000", "decode", *[str(warm["decode"])] * 3]]


def test_initial_replicas_start_the_scaling_policies_warm(tmp_path: Path) -> None:
    res = _run("--policy", "plan", "--policy", "static:1", "--initial-replicas", "4,2", "--no-plot", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["initialReplicas"] == {"prefill": 4, "decode": 2}
    assert doc["policies"]["plan"]["initialReplicas"] == {"prefill": 4, "decode": 2}
    lines = (tmp_path / "replicas.csv").read_text().splitlines()
    assert "plan,0.000,prefill,4,4,4" in lines and "plan,0.000,decode,2,2,2" in lines
    assert "static:1,0.000,prefill,1,1,1" in lines  # static sizes are their own
    bad = _run("--initial-replicas", "two", "--out", str(tmp_path / "bad"))
    assert bad.exit_code == 2 and "--initial-replicas" in bad.output
    assert not (tmp_path / "bad").exists()


def test_mooncake_trace_with_rate_scale(tmp_path: Path) -> None:
    # 60 requests 1 s apart (timestamps in ms); --rate-scale 2 puts them 0.5 s apart.
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(
        json.dumps({"timestamp": 1000 * i, "input_length": 1000, "output_length": 20, "hash_ids": [i]}) + "\n"
        for i in range(60)
    ))
    res = CliRunner().invoke(main, ["simulate", "-f", PLAN, "--trace", str(trace), "--format", "mooncake",
                                    "--rate-scale", "2", "--policy", "static:1", "--no-plot", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert doc["requests"] == 60 and doc["spanSeconds"] == pytest.approx(29.5)
    s = doc["policies"]["static:1"]
    # one request every 0.5 s on one worker: no queueing, every SLA met
    assert s["attainment"] == {"ttft": 1.0, "itl": 1.0, "both": 1.0}
    assert s["goodputRps"] == pytest.approx(60 / 29.5, rel=1e-3)


def test_burstgpt_trace_detected(tmp_path: Path) -> None:
    # the BurstGPT layout, 40 requests 2 s apart, one failed (0 response tokens): --format auto
    trace = tmp_path / "burst.csv"
    rows = [f"{2 * i}.0,ChatGPT,800,{0 if i == 7 else 30},{800 + 30},Conversation log" for i in range(40)]
    trace.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + "\n".join(rows) + "\n")
    res = CliRunner().invoke(main, ["simulate", "-f", PLAN, "--trace", str(trace), "--policy", "static:1",
                                    "--no-plot", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert doc["requests"] == 40 and doc["spanSeconds"] == pytest.approx(78.0)
    assert doc["policies"]["static:1"]["attainment"]["both"] == 1.0


def test_actuation_none_applies_decisions_at_the_tick(tmp_path: Path) -> None:
    res = _run("--rate-scale", "4", "--policy", "plan", "--actuation", "none", "--initial-replicas", "min",
               "--no-plot", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["actuation"] == "none" and doc["policies"]["plan"]["actuation"] == "none"
    assert doc["initialReplicas"] == {"prefill": 1, "decode": 1}
    rows = [line.split(",") for line in (tmp_path / "replicas.csv").read_text().splitlines()[1:]]
    # every change of the desired count is at a planner tick (every 180 s), none at an HPA sync
    last: dict[str, str] = {}
    changes = set()
    for r in rows:
        if r[0] == "plan":
            if r[2] in last and last[r[2]] != r[3]:
                changes.add(float(r[1]))
            last[r[2]] = r[3]
    assert changes and all(t % 180.0 == 0 for t in changes)
    assert "actuation none" in res.output


@pytest.mark.parametrize("option,value", [("--rate-scale", "inf"), ("--rate-scale", "nan"),
                                          ("--replicate-jitter", "nan"), ("--startup-delay", "inf")])
def test_non_finite_float_options_exit_2_naming_the_option(option: str, value: str) -> None:
    res = CliRunner().invoke(main, ["simulate", "-f", PLAN, "--trace", TRACE, option, value])
    assert res.exit_code == 2 and f"Invalid value for '{option}'" in res.output
