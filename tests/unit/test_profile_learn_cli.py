"""`dynplan profile learn`'s checks before and after Prometheus: flags a source needs, refused
ranges (exit 2, naming the field or flag), the step grid, the KV cache size's origin, and the
all-or-nothing write. The reads themselves: tests/integration/prometheus/test_profile_learn.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from helpers import plan_dict
from scaler.cli import main
from scaler.core.plan import Plan
from scaler.errors import InputError
from scaler.profiling.learn import History, max_kv_tokens, time_range
from scaler.profiling.learn_cli import MEASUREMENT, write_all_or_nothing


def plan_doc(source: str = "vllm") -> dict:
    doc = plan_dict(mode="agg", profile="learned")  # a profile that does not exist yet
    doc["spec"]["metrics"] = {"source": source, "selector": {"namespace": "inference"}, "scrapeIntervalSeconds": 15,
                              "prometheus": {"url": "http://127.0.0.1:9"}}
    return doc


def learn(tmp_path: Path, doc: dict, *args: str) -> Result:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(doc))
    return CliRunner().invoke(main, ["profile", "learn", "-f", str(plan), "-o", str(tmp_path / "out"), *args])


def test_the_dynamo_source_needs_the_block_and_cache_sizes(tmp_path: Path) -> None:
    out = learn(tmp_path, plan_doc("dynamo"), "--since", "1h")
    assert out.exit_code == 2
    assert ("plan.yaml: --kv-block-size: is required with source dynamo: its frontend reports KV blocks per worker, "
            "not their size in tokens") in out.output
    assert "plan.yaml: --max-kv-tokens: is required with source dynamo" in out.output
    assert not (tmp_path / "out").exists()
    out = learn(tmp_path, plan_doc("vllm"), "--since", "1h", "--kv-block-size", "16")
    assert out.exit_code == 2 and "--kv-block-size: applies to source dynamo" in out.output


def test_a_step_under_two_scrapes_and_too_many_steps_are_refused(tmp_path: Path) -> None:
    out = learn(tmp_path, plan_doc(), "--since", "8d", "--step", "20s")
    assert out.exit_code == 2
    assert "--step: 20s holds fewer than two scrapes at spec.metrics.scrapeIntervalSeconds 15: at least 30s" in out.output
    assert "--since: 34560 steps of 20s; at most 10000 are read per series" in out.output
    assert learn(tmp_path, plan_doc(), "--since", "6x").exit_code == 2  # not a duration (click's usage error)


def test_other_plan_errors_still_stand(tmp_path: Path) -> None:
    doc = plan_doc()
    doc["spec"]["sla"]["itlMs"] = -1
    out = learn(tmp_path, doc, "--since", "1h")
    assert out.exit_code == 2 and "spec.sla.itlMs" in out.output


def test_the_range_ends_on_the_step_grid() -> None:
    tr = time_range(1_000_000_030.5, 3600, 60)
    assert (tr.start, tr.end, tr.steps) == (999_996_480.0, 1_000_000_020.0, 60)


def test_the_kv_cache_size_comes_from_the_flag_or_the_series_else_an_error() -> None:
    plan = Plan.model_validate(plan_doc())
    empty = History((), (), {}, {}, {})
    assert max_kv_tokens(plan, "plan.yaml", empty, 5000.0) == (5000.0, "--max-kv-tokens")
    seen = History((), (), {"a": 100.0, "b": 300.0, "c": 200.0}, {}, {})
    assert max_kv_tokens(plan, "plan.yaml", seen, None) == (200.0, "vllm:cache_config_info")
    with pytest.raises(InputError, match=r"plan.yaml: --max-kv-tokens: is required: the KV cache size is not in the history"):
        max_kv_tokens(plan, "plan.yaml", empty, None)


def test_the_write_is_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "profile"

    def fails(d: Path) -> None:
        (d / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_all_or_nothing(out, fails)
    assert not out.exists() and list(tmp_path.iterdir()) == []

    def writes(d: Path) -> None:
        (d / MEASUREMENT).write_text("{}")

    write_all_or_nothing(out, writes)
    write_all_or_nothing(out, writes)  # dynplan's own: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match=r"mine: -o: exists and is not a profile dynplan wrote \(no measurement.json\)"):
        write_all_or_nothing(mine, writes)
    assert (mine / "notes.txt").read_text() == "keep"


def test_disaggregated_reads_each_part_from_its_pool() -> None:
    from scaler.profiling.learn import DECODE_KEYS, PREFILL_KEYS, pools_of
    from scaler.sources import learn_exprs

    doc = plan_doc()
    doc["spec"]["mode"] = "disagg"
    doc["spec"]["metrics"]["selector"] = {"namespace": "inference", "model_name": "llama"}
    doc["spec"]["pools"] = {n: {**p, "selector": {"pod": f"=~llama-{n}-.*"}} for n, p in plan_dict()["spec"]["pools"].items()}
    plan = Plan.model_validate(doc)
    assert pools_of(plan) == ("prefill", "decode")
    pre, dec = learn_exprs(plan, "prefill", 60), learn_exprs(plan, "decode", 60)
    assert all('pod=~"llama-prefill-.*"' in pre[k] for k in PREFILL_KEYS)
    assert all('pod=~"llama-decode-.*"' in dec[k] for k in DECODE_KEYS)
    assert pre["waiting"] == ('sum by (pod) (max_over_time({__name__=~"vllm[:_]num_requests_waiting",model_name="llama",'
                              'namespace="inference",pod=~"llama-prefill-.*"}[59999ms]))')
    # vLLM's cache info gauge has no model label: matched without it
    assert dec["kv_capacity"] == ('last_over_time({__name__=~"vllm[:_]cache_config_info",namespace="inference",'
                                  'pod=~"llama-decode-.*"}[59999ms])')
