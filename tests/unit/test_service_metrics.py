"""The scaler's /metrics bookkeeping: forget_plan removes exactly the series a plan's
decisions wrote (no hard-coded list of label sets)."""

from __future__ import annotations

from prometheus_client import generate_latest

from helpers import flat_profile, plan_dict, with_changes
from scaler.core.interpolation import perf_model
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import decide, new_state
from scaler.service.metrics import ServiceMetrics

MODEL = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
WINDOW = TrafficWindow(window_seconds=60, requests=3000, isl=3000, osl=150, ttft_ms=80, itl_ms=6, request_duration_s=2)


def _plan(name: str, mode: str) -> Plan:
    doc = with_changes(plan_dict(name=name, mode=mode, load=True), {
        "spec.scaling.throughput.queueing": {"enabled": True, "minRequests": 1},
        "spec.scaling.load": {"enabled": True, "intervalSeconds": 10, "window": 4, "minObservations": 2},
    })
    return Plan.model_validate(doc)


def _workers(plan: Plan) -> tuple[WorkerLoad, ...]:
    out = []
    for pool in plan.pool_names:
        for i in range(2):
            out.append(WorkerLoad(f"{pool}-{i}", pool, active_prefill_tokens=900.0 * (i + 1), last_isl=3000.0,
                                  last_ttft_ms=90.0 + 10 * i, active_decode_blocks=50.0 * (i + 1), last_itl_ms=7.0 + i))
    return tuple(out)


def _lines(metrics: ServiceMetrics) -> list[str]:
    return [l for l in generate_latest(metrics.registry).decode().splitlines() if l and not l.startswith("#")]


def test_forget_plan_removes_every_series_the_plans_decisions_wrote_and_no_other() -> None:
    metrics = ServiceMetrics()
    for name, mode in (("a", "disagg"), ("b", "agg")):
        plan = _plan(name, mode)
        state = new_state(plan)
        ws = _workers(plan)
        for t in range(3):
            decision = decide(plan, MODEL, Observation(timestamp=60.0 * t, traffic=WINDOW, workers=ws), state)
            metrics.record_decision("ns", decision, 100.0 + t)
        assert decision.load and decision.throughput is not None
    before = _lines(metrics)
    of_a = [l for l in before if 'plan="a"' in l]
    of_b = [l for l in before if 'plan="b"' in l]
    # Every per-decision family has series of both plans, load fits included.
    for family in ("dynplan_desired_replicas", "dynplan_requested_replicas", "dynplan_observed", "dynplan_predicted",
                   "dynplan_correction_factor", "dynplan_queueing_factor", "dynplan_load_regression",
                   "dynplan_load_decision_reason", "dynplan_decision_reason", "dynplan_last_good_decision_timestamp_seconds"):
        assert any(l.startswith(family + "{") for l in of_a), family
        # (queueing-aware sizing is disagg only)
        assert any(l.startswith(family + "{") for l in of_b) or family == "dynplan_queueing_factor", family

    metrics.forget_plan("ns", "a")
    after = _lines(metrics)
    assert not [l for l in after if 'plan="a"' in l]
    assert [l for l in after if 'plan="b"' in l] == of_b
    metrics.forget_plan("ns", "a")  # twice is harmless
    metrics.forget_plan("other", "b")  # another namespace's plan of the same name: untouched
    assert [l for l in _lines(metrics) if 'plan="b"' in l] == of_b

    # A plan recorded again after being forgotten is exported again.
    plan = _plan("a", "disagg")
    metrics.record_decision("ns", decide(plan, MODEL, Observation(timestamp=0.0, traffic=WINDOW), new_state(plan)), 1.0)
    assert any('plan="a"' in l for l in _lines(metrics))


def test_attainment_inputs_are_exported_and_forgotten() -> None:
    from scaler.core.planner import capacity

    plan = Plan.model_validate(plan_dict(sizing="attainment"))
    metrics = ServiceMetrics()
    metrics.record_decision("inference", capacity(plan, perf_model(flat_profile(ttft_ms=75.0)), 20.0, 3000, 150), 1.0)
    text = generate_latest(metrics.registry).decode()
    assert 'dynplan_attainment_sizing{namespace="inference",plan="llama-8b",quantity="target"} 0.99' in text
    assert 'dynplan_attainment_sizing{namespace="inference",plan="llama-8b",quantity="planned_rate"} 20.0' in text
    assert 'quantity="dispersion"} 2.0' in text  # the Poisson prior before any traffic
    metrics.forget_plan("inference", "llama-8b")
    assert "dynplan_attainment_sizing{" not in generate_latest(metrics.registry).decode()


def test_forget_plan_removes_the_loops_histograms_and_counters_too() -> None:
    """L6: the decision histograms, the query error and window counters (families the
    loop writes directly) went on being exported after their plan was removed."""
    metrics = ServiceMetrics()
    for plan in ("a", "b"):
        metrics.duration.labels("ns", plan, "throughput").observe(0.01)
        metrics.compute.labels("ns", plan).observe(0.001)
        metrics.query_errors.labels("ns", plan, "warmup").inc()
        metrics.windows_rejected.labels("ns", plan, "non_finite").inc()
        metrics.windows_caught_up.labels("ns", plan).inc()
    metrics.plan_load_failing.labels("/plans/a.yaml").set(1)
    metrics.plan_load_errors.labels("/plans/a.yaml").inc()
    of_b = [l for l in _lines(metrics) if 'plan="b"' in l]
    assert {l.split("{")[0] for l in of_b} >= {
        "dynplan_decision_duration_seconds_bucket", "dynplan_decision_compute_seconds_sum",
        "dynplan_prometheus_query_errors_total", "dynplan_windows_rejected_total", "dynplan_windows_caught_up_total"}
    metrics.forget_plan("ns", "a")
    assert not [l for l in _lines(metrics) if 'plan="a"' in l]
    assert [l for l in _lines(metrics) if 'plan="b"' in l] == of_b
    metrics.forget_file("/plans/a.yaml")
    assert not [l for l in _lines(metrics) if "a.yaml" in l]
