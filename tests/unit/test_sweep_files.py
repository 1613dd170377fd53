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


class _FakeMeasurer:
    """Measures from a script: a point's key -> a result, or an exception to raise (once each)."""

    def __init__(self, plan: sp.SweepPlan, failures: dict[str, list[Exception]], clock: list[float]) -> None:
        self.results = {sp.result_key(r): r for r in _results(plan)}
        self.failures, self.clock, self.calls = failures, clock, []

    def _measure(self, key: str) -> sp.PrefillResult | sp.DecodeResult:
        self.calls.append(key)
        self.clock[0] += 1.0  # each point takes a second
        if self.failures.get(key):
            raise self.failures[key].pop(0)
        return self.results[key]

    def prefill(self, run: sw.SweepRun, point: sp.PrefillPoint, deadline: float) -> sp.PrefillResult:
        return self._measure(point.key)  # type: ignore[return-value]

    def decode(self, run: sw.SweepRun, point: sp.DecodePoint, deadline: float) -> sp.DecodeResult:
        return self._measure(point.key)  # type: ignore[return-value]


def test_run_sweep_retries_a_point_once_then_fails_with_the_rest_journalled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scaler.errors import EndpointUnavailable

    monkeypatch.setattr(sw, "_RETRY_PAUSE_S", 0.0)
    plan = sp.plan_sweep(CFG)
    clock = [0.0]
    key = plan.keys[5]
    fake = _FakeMeasurer(plan, {plan.keys[2]: [EndpointUnavailable("blip")], key: [EndpointUnavailable("a"), EndpointUnavailable("b")]}, clock)
    journal, _ = sw.Journal.open(tmp_path / "p", HEADER, resume=False)
    run = sw.SweepRun(plan, CFG)
    seen: list[tuple[int, int, str]] = []
    with pytest.raises(EndpointUnavailable, match="b"):
        sw.run_sweep(run, fake, journal, deadline=1e9, progress=lambda d, t, k: seen.append((d, t, k)), clock=lambda: clock[0])  # type: ignore[arg-type]
    assert fake.calls == [*plan.keys[:3], plan.keys[2], plan.keys[3], plan.keys[4], key, key]  # one retry per point
    assert list(run.results) == list(plan.keys[:5])
    _, prior = sw.Journal.open(tmp_path / "p", HEADER, resume=True)
    assert [sp.result_key(r) for r in prior] == list(plan.keys[:5])
    assert seen[0] == (0, len(plan.keys), plan.keys[0]) and seen[-1] == (5, len(plan.keys), key)


def test_run_sweep_stops_at_the_deadline_between_points(tmp_path: Path) -> None:
    plan = sp.plan_sweep(CFG)
    clock = [0.0]
    fake = _FakeMeasurer(plan, {}, clock)
    journal, _ = sw.Journal.open(tmp_path / "p", HEADER, resume=False)
    run = sw.SweepRun(plan, CFG, {plan.keys[0]: fake.results[plan.keys[0]]})  # resumed: the first is done
    sw.run_sweep(run, fake, journal, deadline=3.0, clock=lambda: clock[0])  # type: ignore[arg-type]
    assert run.stopped == "the time limit"
    assert fake.calls == list(plan.keys[1:4]) and run.missing == list(plan.keys[4:])
