"""Aggregated plans in the simulator: one `worker` pool serving prefill and decode on the same GPUs."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import EXAMPLES, flat_profile
from scaler.core.interpolation import perf_model
from scaler.core.observations import WorkerLoad
from scaler.planfile import load_plan
from scaler.profile_io import load_profile
from scaler.sim.engine import Engine, EngineConfig, simulate
from scaler.sim.fleet import FixedFleet, attainment_of
from scaler.sim.oracle import oracle
from scaler.sim.policies import PolicySpec, StaticController, parse_policy
from scaler.sim.report import verdicts
from scaler.sim.run import compare
from scaler.sim.workload import Arrivals

AGG = EngineConfig(gpus_per_replica={"worker": 1}, startup_delay_seconds=60.0, mode="agg")
DISAGG = EngineConfig(gpus_per_replica={"prefill": 1, "decode": 1}, startup_delay_seconds=60.0)
AGG_PLAN = load_plan(str(EXAMPLES / "llama-8b-agg.yaml")).plan
TRUTH = perf_model(load_profile(str(EXAMPLES / "profiles" / "h200-llama3.1-8b-fp8-tp1")))


def _poisson(n: int, rate: float, seed: int, isl: int, osl: int) -> Arrivals:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    return Arrivals(t=t - t[0], isl=np.full(n, isl), osl=np.full(n, osl))


def _workers(n: int) -> StaticController:
    return StaticController(f"static:{n}", {"worker": n})


def test_a_prefill_pauses_the_decode_batch_for_exactly_its_ttft() -> None:
    # Flat profile: TTFT 50 ms, ITL 5 ms whatever the batch. A is decoding alone (100 steps,
    # 0.5 s) when B arrives at 0.1 s: B's 50 ms prefill stops A's decode, so A ends 50 ms late.
    model = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
    w = Arrivals(t=np.array([0.0, 0.1]), isl=np.array([1000, 1000]), osl=np.array([101, 101]))
    res = simulate(w, model, _workers(1), AGG)
    np.testing.assert_allclose(res.ttft_ms, [50.0, 50.0], rtol=1e-9)
    np.testing.assert_allclose(res.finish[0], 0.05 + 0.5 + 0.05, rtol=1e-9)
    np.testing.assert_allclose(res.itl_ms[0], 5.5, rtol=1e-9)
    # B decodes after its own prefill, with nothing else prefilling: the plain ITL
    np.testing.assert_allclose(res.itl_ms[1], 5.0, rtol=1e-9)
    # the same two requests on separate prefill and decode workers: no pause
    dis = simulate(w, model, StaticController("static:2,1", {"prefill": 2, "decode": 1}), DISAGG)
    np.testing.assert_allclose(dis.itl_ms, [5.0, 5.0], rtol=1e-9)


def test_prefill_load_raises_itl_versus_decode_alone() -> None:
    # Same Poisson load: one aggregated worker (prefill busy 40% of the time) against a
    # decode worker fed by ample prefill workers. Decode alone steps at the profiled 5 ms.
    model = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
    w = _poisson(4000, 8.0, seed=1, isl=1000, osl=50)
    agg = simulate(w, model, _workers(1), AGG)
    dis = simulate(w, model, StaticController("static:8,1", {"prefill": 8, "decode": 1}), DISAGG)
    assert np.nanmean(dis.itl_ms) == pytest.approx(5.0, rel=1e-6)
    # decode runs only when prefill does not: ITL about 5 / (1 - 0.4) ms
    assert np.nanmean(agg.itl_ms) > 1.4 * np.nanmean(dis.itl_ms)
    # and the agg TTFT carries the M/D/1-like queue on top of the 50 ms prefill
    assert np.mean(agg.ttft_ms) > 55.0
    assert np.isfinite(agg.finish).all()


def test_static_agg_with_enough_workers_meets_the_sla_and_too_few_do_not() -> None:
    # one worker prefills 2000 tokens in about 50 ms: 25 req/s is beyond it, not beyond 8
    w = _poisson(3000, 25.0, seed=2, isl=2000, osl=200)
    sla = AGG_PLAN.spec.sla
    many = verdicts(simulate(w, TRUTH, _workers(8), AGG), sla)
    few = verdicts(simulate(w, TRUTH, _workers(1), AGG), sla)
    assert many.both_ok.mean() == 1.0
    assert few.both_ok.mean() < 0.1


def test_worker_load_carries_both_signals() -> None:
    model = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
    w = Arrivals(t=np.array([0.0, 0.01, 0.02]), isl=np.array([1600, 800, 800]), osl=np.array([100, 100, 100]))
    # drive the engine by hand up to the third arrival: the first is in prefill, two queue
    eng = Engine(w, model, _workers(1), AGG)
    eng.replicas.add("worker", 0.0, ready_now=True)
    for i in range(3):
        eng._next_arrival = i + 1
        eng._in_flight += 1
        eng._route_arrival(i, float(w.t[i]))
    (load,) = eng.worker_loads(0.02)
    assert isinstance(load, WorkerLoad) and load.pool == "worker"
    assert load.active_prefill_tokens == 1600 + 800 + 800  # the one in prefill counts until it ends
    assert load.active_decode_blocks == 0.0


def test_agg_routing_prefers_the_least_loaded_worker() -> None:
    model = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
    # three simultaneous arrivals on three workers: each gets one, none queues
    w = Arrivals(t=np.zeros(3), isl=np.full(3, 1000), osl=np.full(3, 2))
    res = simulate(w, model, _workers(3), AGG)
    np.testing.assert_allclose(res.ttft_ms, [50.0, 50.0, 50.0], rtol=1e-9)


def test_oracle_agg_is_the_smallest_worker_count_reaching_the_target() -> None:
    w = _poisson(3000, 25.0, seed=3, isl=2000, osl=200)
    orc = oracle(AGG_PLAN, TRUTH, w, 60.0, target=0.95)
    sla = AGG_PLAN.spec.sla
    assert orc.intervals and all(set(iv.replicas) == {"worker"} for iv in orc.intervals)
    busy = [iv for iv in orc.intervals if iv.requests]
    assert max(iv.replicas["worker"] for iv in busy) > 1
    for iv in busy:
        n = iv.replicas["worker"]
        assert iv.attainment is not None and iv.attainment.both >= 0.95
        assert iv.gpus == 2 * n
        if n > 1:
            lo = int(np.searchsorted(w.t, iv.start))
            hi = int(np.searchsorted(w.t, iv.end))
            sub = Arrivals(t=w.t[lo:hi] - iv.start, isl=w.isl[lo:hi], osl=w.osl[lo:hi])
            fewer = simulate(sub, TRUTH, FixedFleet({"worker": n - 1}), AGG)
            assert attainment_of(fewer, sla.ttft_ms, sla.itl_ms).both < 0.95


def test_planner_in_the_loop_scales_the_agg_plan_on_load() -> None:
    # llama-8b-agg.yaml: load-based only, no profile (the planner sizes without one); quiet,
    # then a burst at 25 req/s (beyond one worker), then quiet again
    quiet1 = _poisson(60, 0.5, seed=4, isl=2000, osl=200)
    burst = _poisson(6000, 25.0, seed=5, isl=2000, osl=200)
    quiet2 = _poisson(60, 0.5, seed=6, isl=2000, osl=200)
    t = np.concatenate([quiet1.t, quiet1.t[-1] + 1 + burst.t])
    t = np.concatenate([t, t[-1] + 1 + quiet2.t])
    w = Arrivals(t=t, isl=np.full(len(t), 2000), osl=np.full(len(t), 200))
    specs = [parse_policy("plan", AGG_PLAN.pool_names), PolicySpec("static:1", "static", {"worker": 1})]
    cmp = compare(AGG_PLAN, None, TRUTH, w, specs, startup_delay_seconds=60.0)
    plan, static1 = cmp.summaries["plan"], cmp.summaries["static:1"]
    assert plan["peakReplicas"]["worker"] >= 3
    assert plan["scaleEvents"] >= 2
    assert plan["attainment"]["both"] > static1["attainment"]["both"] + 0.3
    logs = cmp.decision_logs["plan"]
    assert logs and all(set(d["pools"]) == {"worker"} for d in logs)
    # it came back down once the burst was over
    samples = [s for s in cmp.results["plan"].samples if s.pool == "worker"]
    assert samples[-1].desired < plan["peakReplicas"]["worker"]
