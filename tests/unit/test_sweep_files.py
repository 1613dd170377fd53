"""`dynplan profile sweep`'s files: the resume journal, the all-or-nothing result directory,
the URL and key-file checks (scaler/profiling/sweep.py, openai_client.py). No network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scaler.errors import InputError
from scaler.profile_io import load_profile
from scaler.profiling import sweep as sw
from scaler.profiling import sweep_plan as sp
from scaler.profiling.openai_client import parse_base_url, read_api_key

CFG = sp.SweepConfig(
    isl_min=100, isl_max=2000, isl_points=4, repeats=1, osl=24, context_points=2, concurrency_points=3,
    max_concurrency=8, max_kv_tokens=24_000,
)
HEADER = {"journal": 1, "url": "http://e:8000", "model": "m", "config": CFG.to_dict(), "startedAt": "2026-01-01T00:00:00+00:00"}


def _results(plan: sp.SweepPlan) -> list[sp.PrefillResult | sp.DecodeResult]:
    out: list[sp.PrefillResult | sp.DecodeResult] = [
        sp.PrefillResult(p.isl, p.isl, sp.Spread.of([10.0 + p.isl / 100])) for p in plan.prefill
    ]
    for d in plan.decode:
        itl = 8.0 + d.concurrency
        out.append(sp.DecodeResult(d.isl, d.concurrency, d.isl, 24.0, sp.Spread.of([itl]), d.concurrency * 1000 / itl,
                                   sp.Spread.of([20.0]), 0.3, "steady-window"))
    return out


def test_the_journal_resumes_with_what_was_measured(tmp_path: Path) -> None:
    out = tmp_path / "prof"
    plan = sp.plan_sweep(CFG)
    journal, prior = sw.Journal.open(out, HEADER, resume=False)
    assert prior == [] and not journal.path.exists()  # nothing measured, nothing left behind
    results = _results(plan)
    for r in results[:3]:
        journal.append(r)
    with open(journal.path, "a", encoding="utf-8") as f:
        f.write('{"kind": "decode", "target_isl"')  # the line an interruption cut short
    again, prior = sw.Journal.open(out, {**HEADER, "startedAt": "later"}, resume=True)
    assert prior == results[:3]
    assert again.header["startedAt"] == HEADER["startedAt"]  # the sweep started with its first run


def test_resume_refuses_other_settings_and_a_missing_journal(tmp_path: Path) -> None:
    out = tmp_path / "prof"
    with pytest.raises(InputError, match="no interrupted sweep to resume"):
        sw.Journal.open(out, HEADER, resume=True)
    journal, _ = sw.Journal.open(out, HEADER, resume=False)
    journal.append(_results(sp.plan_sweep(CFG))[0])
    with pytest.raises(InputError, match=r"other settings \(model\)"):
        sw.Journal.open(out, {**HEADER, "model": "other"}, resume=True)


def test_finish_writes_a_valid_profile_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "prof"
    plan = sp.plan_sweep(CFG)
    results = _results(plan)
    run = sw.SweepRun(plan, CFG, {sp.result_key(r): r for r in results[:3]}, stopped="an interrupt")
    written, problems = sw.finish(run, out, {"model": "m"})
    assert not written and not out.exists() and problems  # 3 prefill points: not a profile
    run.results.update({sp.result_key(r): r for r in results[3:-1]})
    written, _ = sw.finish(run, out, {"model": "m"})
    assert written
    doc = json.loads((out / "measurement.json").read_text())
    assert doc["complete"] is False and doc["stoppedBy"] == "an interrupt"
    assert doc["missingPoints"] == [plan.keys[-1]]
    assert len(doc["points"]) == len(plan.keys) - 1
    partial = load_profile(out)
    assert len(partial.decode_itl_ms) == len(plan.decode) - 1
    # the complete run replaces the partial directory whole, npz and JSON alike
    run.results[plan.keys[-1]] = results[-1]
    run.stopped = None
    written, _ = sw.finish(run, out, {"model": "m"})
    full = load_profile(out)
    assert written and len(full.decode_itl_ms) == len(plan.decode)
    with np.load(out / "selected_decode_interpolation" / "raw_data.npz") as npz:
        assert npz["z_itl"].tolist() == full.decode_itl_ms.tolist()
        assert npz["max_kv_tokens"].tolist() == [24_000.0]
    assert json.loads((out / "measurement.json").read_text())["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prof"]  # no temporary directory left


def test_urls_are_bases_without_credentials() -> None:
    assert parse_base_url("http://vllm:8000/v1/") == "http://vllm:8000"
    assert parse_base_url("https://gw.example/llama") == "https://gw.example/llama"
    for bad, why in (
        ("http://user:secret@vllm:8000", "must not carry credentials"),
        ("ftp://vllm", "http:// or https://"),
        ("http://vllm:8000/v1?x=1", "query or fragment"),
    ):
        with pytest.raises(InputError, match=why) as exc:
            parse_base_url(bad)
        assert "secret" not in str(exc.value)


def test_the_api_key_file_holds_one_key_and_is_never_quoted(tmp_path: Path) -> None:
    good = tmp_path / "key"
    good.write_text("sk-abc123\n")
    assert read_api_key(str(good)) == "sk-abc123"
    bad = tmp_path / "bad"
    bad.write_text("sk-abc 123\n")
    with pytest.raises(InputError, match="one key on one line") as exc:
        read_api_key(str(bad))
    assert "sk-abc" not in str(exc.value)
    with pytest.raises(InputError, match="cannot read the key file"):
        read_api_key(str(tmp_path / "absent"))
