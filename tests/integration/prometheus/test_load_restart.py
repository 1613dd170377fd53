"""Restart safety of load-based scaling: the load path's regressions come back from the
per-worker history in Prometheus (range queries on the load grid), point for point what
live load ticks at those times would have read."""

from __future__ import annotations

from pathlib import Path

from helpers import with_changes
from scaler.core.load_scaling import rebuild_load_state
from scaler.core.observations import Observation
from scaler.devtools.backfill import OpenMetricsWriter
from scaler.planfile import load_plan
from scaler.prom.client import PromClient
from scaler.prom.reader import PromReader, read_workers, read_workers_history
from scaler.service.loop import PlanLoop
from service_harness import history_end, test_plan, write_plans  # write_plans adds a flat profile

NS = "inference-load"
LOAD_T = 10
E = history_end()


def _history() -> OpenMetricsWriter:
    """Two prefill workers and one decode worker, sampled every second for 15 minutes,
    with load that moves so the regressions get distinct points."""
    w = OpenMetricsWriter()
    times = [E - 900 + s for s in range(901)]
    for wid, base in (("p1", 1000.0), ("p2", 1600.0)):
        labels = {"dynamo_namespace": NS, "model": "m", "worker_id": wid, "worker_type": "prefill"}
        tokens = [(t, base + 40.0 * ((int(t) // LOAD_T) % 15)) for t in times]
        w.gauge("dynamo_frontend_worker_active_prefill_tokens", labels, tokens)
        w.gauge("dynamo_frontend_worker_last_input_sequence_tokens", labels, [(t, 3000.0) for t in times])
        # TTFT rises with queued tokens: 0.02 s + 0.00005 s/token
        w.gauge("dynamo_frontend_worker_last_time_to_first_token_seconds", labels,
                [(t, 0.02 + 0.00005 * (v + 3000.0)) for t, v in tokens])
    labels = {"dynamo_namespace": NS, "model": "m", "worker_id": "d1", "worker_type": "decode"}
    blocks = [(t, 100.0 + 5.0 * ((int(t) // LOAD_T) % 20)) for t in times]
    w.gauge("dynamo_frontend_worker_active_decode_blocks", labels, blocks)
    w.gauge("dynamo_frontend_worker_last_inter_token_latency_seconds", labels,
            [(t, 0.004 + 0.00002 * v) for t, v in blocks])
    # The load-only loop still reads the request count (activation): 2 requests/s.
    w.counter("dynamo_frontend_requests_started_total", {"dynamo_namespace": NS, "model": "m"},
              [(t, 2.0 * (t - times[0])) for t in times])
    return w


def _plan_doc(url: str) -> dict:
    doc = test_plan("loady", url, NS)
    return with_changes(doc, {
        "spec.scaling.throughput": {"enabled": False},
        "spec.scaling.load": {"enabled": True, "intervalSeconds": LOAD_T, "window": 20, "minObservations": 5},
        "spec.metrics.useRecordingRules": False,
    })


async def test_load_regressions_are_rebuilt_from_prometheus_history(tmp_path: Path, prom_factory) -> None:
    prom = prom_factory(history=_history())
    write_plans(tmp_path, [_plan_doc(prom.url)])
    loaded = load_plan(tmp_path / "loady-inference.yaml")
    plan = loaded.plan
    with PromClient(plan.spec.metrics.prometheus) as client:
        end = E - 100.0
        history = await read_workers_history(client, plan, end, 21)
        assert [t for t, _ in history] == [end - (20 - k) * LOAD_T for k in range(21)]
        # The range query reads exactly what live instant reads at those times read.
        for t, workers in history[::5]:
            assert workers == await read_workers(client, plan, at=t)
        assert {w.worker_id for w in history[-1][1]} == {"p1", "p2", "d1"}

        loop = PlanLoop(loaded, PromReader(client), clock=lambda: end + 0.5)
        ticks = await loop.warm_up_load()
        # a load-only plan: the regressions' window + 1 ticks, then a window's worth decided again
        assert ticks == 2 * plan.spec.scaling.load.window + 1
        expected = rebuild_load_state(plan, [Observation(timestamp=t, workers=w) for t, w in history])
        got = loop.state.load
        for key in (("prefill", "ttft"), ("decode", "itl")):
            assert got.regressions[key].points == expected.regressions[key].points
            assert len(got.regressions[key]) == plan.spec.scaling.load.window  # full window
        # The fit recovers the history's slope (ms of TTFT per token): 0.05
        fit = got.regressions[("prefill", "ttft")].fit()
        assert fit is not None and abs(fit.slope - 0.05) < 1e-3
        # So the first live tick decides on a fitted capacity, not "insufficient data".
        decision = await loop.tick_load()
        assert decision.load["prefill"]["ttft"].capacity_per_worker is not None

    # ... and the scaler's /metrics carries the fit, the capacity and the verdict.
    from prometheus_client import generate_latest

    from scaler.service.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    metrics.record_decision("inference", decision, 1.0)
    text = generate_latest(metrics.registry).decode()
    li = decision.load["prefill"]["ttft"]
    assert (f'dynplan_load_regression{{namespace="inference",param="capacity",plan="loady",pool="prefill",'
            f'signal="ttft"}} {li.capacity_per_worker!r}') in text
    assert 'dynplan_load_regression{namespace="inference",param="observations",plan="loady",pool="decode",signal="itl"} 20.0' in text
    assert (f'dynplan_load_decision_reason{{dynplan_load_decision_reason="{li.reason.value}",namespace="inference",'
            f'plan="loady",pool="prefill",signal="ttft"}} 1.0') in text
    metrics.forget_plan("inference", "loady")
    assert "dynplan_load_regression{" not in generate_latest(metrics.registry).decode()
