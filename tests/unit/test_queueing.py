"""Queueing-aware prefill sizing: formulas by hand, the learned factor, and the simulator."""

from __future__ import annotations

import math

import pytest

from helpers import EXAMPLES, flat_profile, plan_dict, with_changes
from scaler.core.interpolation import perf_model
from scaler.core.observations import Observation, TrafficWindow
from scaler.core.plan import Plan
from scaler.core.planner import capacity, decide, new_state
from scaler.core.throughput import (
    prefill_replicas_for_ttft,
    queueing_delay_ms,
    queueing_factor_from_window,
    smooth_factor,
)


def test_queueing_delay_is_md1_at_factor_one() -> None:
    # Pollaczek-Khinchine for M/D/1: rho*S/(2*(1-rho)) = 0.5*100/(2*0.5) = 50 ms
    assert queueing_delay_ms(0.5, 100.0, 1.0) == pytest.approx(50.0)
    assert queueing_delay_ms(0.5, 100.0, 4.0) == pytest.approx(200.0)
    assert queueing_delay_ms(1.0, 100.0, 1.0) == math.inf


def test_replicas_for_ttft_by_hand() -> None:
    # S = 50 ms, SLA 200 ms: W = 150, a = 2*150/50 = 6, rho <= 6/7, n = 10*0.05*7/6
    assert prefill_replicas_for_ttft(10.0, 50.0, 200.0, 1.0) == pytest.approx(10 * 0.05 * 7 / 6)
    # factor 6: a = 1, rho <= 1/2, n = 10*0.05*2 = 1.0
    assert prefill_replicas_for_ttft(10.0, 50.0, 200.0, 6.0) == pytest.approx(1.0)
    # SLA below the service time: the wait allowed is S/2 = 25, a = 1, n = 1.0
    assert prefill_replicas_for_ttft(10.0, 50.0, 40.0, 1.0) == pytest.approx(1.0)
    assert prefill_replicas_for_ttft(0.0, 50.0, 200.0, 1.0) is None


def test_factor_from_window_by_hand() -> None:
    # 1800 requests in 180 s = 10/s, S = 50 ms, 1 replica: rho = 0.5, M/D/1 wait = 25 ms;
    # observed TTFT 100 ms = 50 ms wait, so the traffic is twice as variable as Poisson.
    w = TrafficWindow(window_seconds=180, requests=1800, isl=2000, osl=100, ttft_ms=100.0)
    assert queueing_factor_from_window(w, 1, 50.0) == pytest.approx(2.0)
    # saturated (rho >= 1) or no replicas: the window says nothing
    assert queueing_factor_from_window(w, 0, 50.0) is None
    busy = TrafficWindow(window_seconds=180, requests=3600 * 2, isl=2000, osl=100, ttft_ms=900.0)
    assert queueing_factor_from_window(busy, 1, 50.0) is None


def test_factor_rises_at_once_and_decays_slowly() -> None:
    assert smooth_factor(2.0, 10.0, 0.2, 1000.0) == pytest.approx(10.0)
    assert smooth_factor(10.0, 1.0, 0.2, 1000.0) == pytest.approx(10 ** 0.8)
    assert smooth_factor(10.0, 5000.0, 0.2, 1000.0) == pytest.approx(1000.0)
    assert smooth_factor(3.0, 0.1, 1.0, 1000.0) == pytest.approx(1.0)  # never below M/D/1


def _plan(enabled: bool) -> Plan:
    doc = with_changes(
        plan_dict(ttft_ms=200.0, max_replicas={"prefill": 64, "decode": 64}),
        {"spec.scaling.throughput.queueing": {"enabled": enabled, "minRequests": 5},
         "spec.scaling.throughput.predictor": {"type": "constant"}},
    )
    return Plan.model_validate(doc)


def test_capacity_with_queueing_adds_headroom_only_where_latency_needs_it() -> None:
    # flat profile: S = 50 ms at every ISL; prefill 40000 tok/s/GPU.
    model = perf_model(flat_profile(ttft_ms=50.0))
    off, on = _plan(False), _plan(True)
    # 30 req/s x 3000 tokens / 40000 = 2.25 -> 3 for throughput; queueing (V=1):
    # a = 6 -> 30*0.05*7/6 = 1.75 -> throughput still decides.
    assert capacity(off, model, 30.0, 3000, 150).replicas("prefill") == 3
    assert capacity(on, model, 30.0, 3000, 150).replicas("prefill") == 3
    # bursty traffic (V = 24): a = 0.25 -> 30*0.05*5 = 7.5 -> 8
    d = capacity(on, model, 30.0, 3000, 150, queueing_factor=24.0)
    assert d.replicas("prefill") == 8
    assert d.throughput is not None and d.throughput.prefill_queueing_replicas == pytest.approx(7.5)
    assert capacity(off, model, 30.0, 3000, 150, queueing_factor=24.0).replicas("prefill") == 3


def test_planner_learns_the_factor_from_observed_ttft_and_replays_identically() -> None:
    model = perf_model(flat_profile(ttft_ms=50.0))
    plan = _plan(True)
    windows = [
        # 2/s on 1 replica: rho = 0.1, M/D/1 wait 2.78 ms; observed wait 250 ms -> V = 90
        TrafficWindow(window_seconds=180, requests=360, isl=3000, osl=150, ttft_ms=300.0),
        TrafficWindow(window_seconds=180, requests=360, isl=3000, osl=150, ttft_ms=300.0),
    ]

    def run() -> list:
        state = new_state(plan)
        out = [decide(plan, model, Observation(timestamp=i, traffic=w), state) for i, w in enumerate(windows)]
        return out + [state.queueing_factor]

    first = run()
    # the first window has no previous decision to read replicas from: factor stays 1
    assert first[0].throughput.queueing_factor == pytest.approx(1.0)
    assert first[0].replicas("prefill") == 1
    # the second learns V = 250 / (0.1/0.9*25) = 90 and sizes for it:
    # a = 2*150/(90*50) = 1/15 -> n = 2*0.05*16 = 1.6 -> 2
    assert first[2] == pytest.approx(90.0)
    assert first[1].replicas("prefill") == 2
    assert run() == first  # deterministic replay (restart safety)
    # Dynamo's formula alone stays at 1 replica (utilisation 15 %)
    state = new_state(_plan(False))
    for i, w in enumerate(windows):
        d = decide(_plan(False), model, Observation(timestamp=i, traffic=w), state)
    assert d.replicas("prefill") == 1


def test_attainment_sizing_beats_dynamos_formula_on_the_code_trace() -> None:
    """The example plan (default sizing: attainment) on the real, bursty code trace holds the
    SLA for far more requests than Dynamo's formula (sizing: dynamo, queueing off)."""
    from scaler.planfile import load_plan
    from scaler.sim.policies import parse_policy
    from scaler.sim.run import compare
    from scaler.sim.workload import build_workload
    from scaler.traces import read_trace

    lp = load_plan(EXAMPLES / "llama-8b-disagg.yaml")
    assert lp.plan.spec.scaling.throughput.sizing == "attainment"
    requests = read_trace(EXAMPLES / "traces" / "azure-llm-2023-code.csv")
    workload = build_workload(requests)
    dynamo_like = Plan.model_validate(
        with_changes(
            lp.plan.model_dump(by_alias=True),
            {"spec.scaling.throughput.sizing": "dynamo", "spec.scaling.throughput.queueing.enabled": False},
        )
    )
    summaries = {}
    for name, plan in (("attainment", lp.plan), ("dynamo", dynamo_like)):
        cmp = compare(plan, lp.model, lp.model, workload, [parse_policy("plan")])
        summaries[name] = cmp.summaries["plan"]
    a, d = summaries["attainment"], summaries["dynamo"]
    assert a["attainment"]["both"] >= d["attainment"]["both"] + 0.15


def test_scaler_exports_the_learned_factor() -> None:
    from prometheus_client import generate_latest

    from scaler.service.metrics import ServiceMetrics

    model = perf_model(flat_profile(ttft_ms=50.0))
    metrics = ServiceMetrics()
    metrics.record_decision("inference", capacity(_plan(True), model, 30.0, 3000, 150, queueing_factor=24.0), 1.0)
    text = generate_latest(metrics.registry).decode()
    assert 'dynplan_queueing_factor{namespace="inference",plan="llama-8b"} 24.0' in text
    quiet = ServiceMetrics()
    quiet.record_decision("inference", capacity(_plan(False), model, 30.0, 3000, 150), 1.0)
    assert "dynplan_queueing_factor{" not in generate_latest(quiet.registry).decode()
