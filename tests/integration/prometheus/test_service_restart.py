"""Restart safety: a scaler started fresh makes the same next decision as one that ran
through every interval (predictors warmed by replaying Prometheus history)."""

from __future__ import annotations

from pathlib import Path

from helpers import flat_profile, make_plan
from scaler.core.interpolation import perf_model
from scaler.core.observations import Observation, TrafficWindow
from scaler.core.planner import decide, new_state
from scaler.devtools.backfill import OpenMetricsWriter
from scaler.planfile import load_plan
from scaler.prom.client import PromClient
from scaler.prom.reader import PromReader
from scaler.service.loop import PlanLoop
from service_harness import T, add_history, history_end, test_plan, write_plans

E = history_end()
RATES = [12, 18, 25, 31, 40, 38, 45, 52, 49, 60, 58, 66]  # a noisy ramp, req/s


def _window(rate: float, k: int) -> TrafficWindow:
    # Shapes and latencies move too, so ISL/OSL predictors and correction factors matter.
    return TrafficWindow(
        window_seconds=T, requests=rate * T, isl=2000.0 + 100 * (k % 4), osl=300.0 + 20 * (k % 3),
        ttft_ms=60.0 + 5 * (k % 5), itl_ms=6.0 + 0.5 * (k % 3), request_duration_s=3.0,
    )


WINDOWS = [_window(r, k) for k, r in enumerate(RATES)]


def test_core_replay_without_worker_counts_matches_live_run() -> None:
    """Injected observations: the live run saw ready replicas every tick; the replay sees
    them only for its last window (history has none), and still ends in the same state."""
    plan = make_plan(predictor="kalman", correction=True, interval_seconds=T)
    model = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
    ready = {"prefill": 3, "decode": 2}
    live = new_state(plan)
    live_decisions = [decide(plan, model, Observation(timestamp=k, traffic=w, ready_replicas=ready), live) for k, w in enumerate(WINDOWS)]
    n = len(WINDOWS) - 1
    fresh = new_state(plan)
    for k, w in enumerate(WINDOWS[:n]):
        replayed = decide(plan, model, Observation(timestamp=k, traffic=w, ready_replicas=ready if k == n - 1 else {}), fresh)
    assert replayed.to_dict() == live_decisions[n - 1].to_dict()
    nxt = decide(plan, model, Observation(timestamp=n, traffic=WINDOWS[n], ready_replicas=ready), fresh)
    assert nxt.to_dict() == live_decisions[n].to_dict()
    assert nxt.throughput.correction_prefill != 1.0 and nxt.throughput.correction_decode != 1.0
    assert nxt.throughput.predicted_rate != WINDOWS[n].rate  # the Kalman filter is really in play


async def test_restarted_scaler_makes_the_same_next_decision(tmp_path: Path, prom_factory) -> None:
    prom = prom_factory(history=add_history(OpenMetricsWriter(), "inference-llama-8b", WINDOWS, E))
    write_plans(tmp_path, [test_plan("llama-8b", prom.url, "inference-llama-8b", predictor="kalman", correction=True)])
    loaded = load_plan(tmp_path / "llama-8b-inference.yaml")
    ends = [E - (len(WINDOWS) - 1 - k) * T for k in range(len(WINDOWS))]
    with PromClient(loaded.plan.spec.metrics.prometheus) as client:
        # A: started early (warm-up at the 3rd window), then ticked through every interval.
        a = PlanLoop(loaded, PromReader(client))
        a_decisions = [await a.warm_up(ends[2])]
        for end in ends[3:-1]:
            a_decisions.append(await a.tick_throughput(end))
        # B: started fresh just before the last interval, warmed up from history.
        b = PlanLoop(loaded, PromReader(client))
        b_warm = await b.warm_up(ends[-2])
        assert b_warm.to_dict() == a_decisions[-1].to_dict()
        assert b.next_end == a.next_end == ends[-1]
        a_next = await a.tick_throughput(ends[-1])
        b_next = await b.tick_throughput(ends[-1])
    assert b_next.to_dict() == a_next.to_dict()
    assert {p: d.replicas for p, d in a_next.pools.items()} != {p: d.replicas for p, d in a_decisions[0].pools.items()}
    assert a_next.throughput.observed_rate == RATES[-1]
