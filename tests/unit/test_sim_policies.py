"""Policies in the simulator: static bounds, the real planner in the loop, start-up and drain,
the oracle bound, and the report's definitions."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pytest

from helpers import flat_profile, linear_profile, make_plan
from scaler.core.interpolation import perf_model
from scaler.core.planner import capacity
from scaler.sim.engine import EngineConfig, simulate
from scaler.sim.oracle import oracle, smallest_passing
from scaler.sim.policies import PlannerController, PolicyError, StaticController, parse_policy, policy_plan
from scaler.sim.report import policy_summary, window_attainment
from scaler.sim.results import PoolSample, SimResult
from scaler.sim.run import compare
from scaler.sim.workload import Arrivals
from sim_controllers import Scripted

CFG = EngineConfig(gpus_per_replica={"prefill": 1, "decode": 1}, startup_delay_seconds=60.0)
# Flat profile: 40k prefill tokens/s/GPU and TTFT 50 ms everywhere, so ISL 2000 is consistent
# (2000 tokens / 50 ms = 40k tokens/s); ITL 5 ms, inside the plan's 20 ms.
MODEL = perf_model(flat_profile(40000.0, 10000.0, ttft_ms=50.0, itl_ms=5.0))


def _poisson(n: int, rate: float, seed: int, isl: int = 2000, osl: int = 10) -> Arrivals:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    return Arrivals(t=t - t[0], isl=np.full(n, isl), osl=np.full(n, osl))


def _even(segments: list[tuple[float, float]], isl: int = 2000, osl: int = 2) -> Arrivals:
    """Evenly spaced arrivals: (duration s, rate req/s) segments one after the other."""
    ts, start = [], 0.0
    for duration, rate in segments:
        k = int(round(duration * rate))
        ts.append(start + np.arange(k) / rate)
        start += duration
    t = np.concatenate(ts)
    return Arrivals(t=t, isl=np.full(len(t), isl), osl=np.full(len(t), osl))


# -- static policies ---------------------------------------------------------------------------
def test_static_with_enough_replicas_meets_every_sla_and_too_few_does_not() -> None:
    plan = make_plan(isl=2000, osl=10)
    workload = _poisson(6000, 30.0, seed=5)  # 60k prefill tokens/s: 1.5 GPUs of work
    cmp = compare(plan, MODEL, MODEL, workload, [parse_policy("static:6"), parse_policy("static:1")])
    enough, few = cmp.summaries["static:6"], cmp.summaries["static:1"]
    assert enough["attainment"] == {"ttft": 1.0, "itl": 1.0, "both": 1.0}
    assert enough["windowAttainment"]["both"] == 1.0
    assert enough["unfinished"] == 0
    assert few["attainment"]["ttft"] < 0.1  # overloaded: the queue grows without bound
    assert few["attainment"]["itl"] == 1.0  # decode is far from its limit
    assert few["ttftMs"]["p50"] > 10_000
    assert few["goodputRps"] < enough["goodputRps"]
    assert enough["goodputRps"] == pytest.approx(6000 / workload.span_seconds, rel=1e-3)


def test_parse_policy_names_and_errors() -> None:
    assert parse_policy("static:4").static == {"prefill": 4, "decode": 4}
    assert parse_policy("static:2,5").static == {"prefill": 2, "decode": 5}
    assert parse_policy("plan").kind == "plan"
    assert parse_policy("oracle").kind == "oracle"
    for bad in ("static", "static:x", "static:0", "fastest", "static:1,2,3"):
        with pytest.raises(PolicyError):
            parse_policy(bad)


def test_throughput_only_and_load_only_switch_modes() -> None:
    plan = make_plan(load=True, interval_seconds=60)
    tp = policy_plan(parse_policy("throughput-only"), plan)
    assert tp.spec.scaling.throughput.enabled and not tp.spec.scaling.load.enabled
    assert plan.spec.scaling.load.enabled  # the original is untouched


# -- the real planner in the loop ----------------------------------------------------------------
def test_planner_sees_prometheus_windows_and_scales_with_startup_delay() -> None:
    plan = make_plan(isl=2000, osl=2, predictor="constant", correction=False, interval_seconds=60)
    workload = _even([(120.0, 10.0), (600.0, 50.0)])
    ctl = PlannerController("plan", plan, MODEL)
    result = simulate(workload, MODEL, ctl, CFG)
    first, second, third = ctl.decisions[:3]
    tp = first.throughput
    assert tp.observed_rate == pytest.approx(10.0)
    assert tp.observed_isl == pytest.approx(2000.0)
    assert tp.observed_osl == pytest.approx(2.0)
    assert tp.observed_ttft_ms == pytest.approx(50.0)  # no queueing at 10 req/s (0.5 of one worker)
    assert tp.observed_itl_ms == pytest.approx(5.0)
    assert first.replicas("prefill") == 1 and second.replicas("prefill") == 1
    # window [120, 180): 50 req/s x 2000 tokens / 40k per GPU = 2.5 -> 3 prefill replicas
    assert third.throughput.observed_rate == pytest.approx(50.0)
    assert third.replicas("prefill") == 3
    new = [r for r in result.replicas if r.pool == "prefill" and r.requested_at > 0]
    assert [r.requested_at for r in new] == [180.0, 180.0]
    assert [r.ready_at for r in new] == [240.0, 240.0]
    # they cost GPUs from the request on, not from readiness
    prefill_hours = sum(r.ended_at - r.requested_at for r in result.replicas if r.pool == "prefill") / 3600
    assert result.gpu_hours("prefill") == pytest.approx(prefill_hours)
    assert all(r.ended_at > 240.0 for r in new)
    assert result.scale_events >= 1
    # Until the new replicas are ready (240 s) one worker gets 2.5x what it serves: a backlog of
    # 30 req/s x 120 s that three workers (60 req/s) then drain at 10 req/s, by about 600 s.
    at = lambda lo, hi: result.ttft_ms[(workload.t >= lo) & (workload.t < hi)]  # noqa: E731
    assert at(230, 240).mean() > 100_000
    assert at(400, 410).mean() < at(230, 240).mean()
    assert np.all(at(650, 720) == pytest.approx(50.0))


def test_ready_replicas_reach_the_planner() -> None:
    plan = make_plan(isl=2000, osl=2, predictor="constant", correction=True, interval_seconds=60,
                     min_replicas={"prefill": 2, "decode": 3})
    ctl = PlannerController("plan", plan, MODEL)
    seen: list[Mapping[str, int]] = []
    original = ctl.on_traffic

    def spy(t, window, ready):
        seen.append(dict(ready))
        return original(t, window, ready)

    ctl.on_traffic = spy  # type: ignore[method-assign]
    simulate(_even([(130.0, 5.0)]), MODEL, ctl, CFG)
    assert seen[0] == {"prefill": 2, "decode": 3}


# -- scaling mechanics ----------------------------------------------------------------------------
def test_removed_replica_drains_its_queue_and_costs_until_then() -> None:
    model = perf_model(flat_profile(ttft_ms=100.0))
    # 20 requests at t=0 on 2 workers: 10 each, queues empty at 1.0 s. At t=0.5 one is removed.
    burst = Arrivals(t=np.zeros(20), isl=np.full(20, 1000), osl=np.ones(20, dtype=int))
    ctl = Scripted({"prefill": 2, "decode": 1}, 0.5, {1: {"prefill": 1, "decode": 1}})
    result = simulate(burst, model, ctl, CFG)
    assert np.all(np.isfinite(result.finish))
    assert result.ttft_ms.max() == pytest.approx(1000.0)  # nobody re-queued or lost
    prefill = sorted((r for r in result.replicas if r.pool == "prefill"), key=lambda r: r.ended_at)
    assert prefill[0].ended_at == pytest.approx(1.0)  # drained, not cut at 0.5
    billed = [(s.t, s.desired, s.billed) for s in result.samples if s.pool == "prefill"]
    assert billed == [(0.0, 2, 2), (0.5, 1, 2), (pytest.approx(1.0), 1, 1)]  # draining: billed, not desired
    assert result.gpu_hours("prefill") == pytest.approx((1.0 + result.end_time) / 3600)


def test_new_replica_serves_only_after_startup_delay() -> None:
    model = perf_model(flat_profile(ttft_ms=100.0))
    cfg = EngineConfig(gpus_per_replica={"prefill": 1, "decode": 1}, startup_delay_seconds=2.0)
    # one request every 50 ms for 5 s: twice what one 100 ms worker serves
    workload = Arrivals(t=np.arange(100) * 0.05, isl=np.full(100, 1000), osl=np.ones(100, dtype=int))
    ctl = Scripted({"prefill": 1, "decode": 1}, 0.5, {1: {"prefill": 2, "decode": 1}})
    result = simulate(workload, model, ctl, cfg)
    new = [r for r in result.replicas if r.pool == "prefill" and r.requested_at > 0]
    assert len(new) == 1 and new[0].requested_at == 0.5 and new[0].ready_at == 2.5
    # until 2.5 s the single worker serves everything: the i-th request ends at 0.1 x (i+1)
    before = result.prefill_end <= 2.5 + 1e-9
    ends = np.sort(result.prefill_end[before])
    np.testing.assert_allclose(ends, 0.1 * np.arange(1, len(ends) + 1))
    # after 2.5 s two workers share the queue: the backlog shrinks
    assert result.prefill_end.max() < 0.1 * 100


def test_traffic_window_counts_arrivals_and_completions() -> None:
    model = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
    workload = Arrivals(t=np.array([0.0, 1.0, 2.0, 12.0]), isl=np.array([100, 300, 500, 700]),
                        osl=np.array([11, 21, 1, 6]))
    ctl = Scripted({"prefill": 1, "decode": 1}, 10.0, {})
    simulate(workload, model, ctl, CFG)
    w = ctl.windows[0]
    assert w.window_seconds == 10.0 and w.requests == 3.0
    assert w.isl == pytest.approx(300.0)
    assert w.osl == pytest.approx((11 + 21 + 1) / 3)
    assert w.ttft_ms == pytest.approx(50.0)
    assert w.itl_ms == pytest.approx(5.0)  # token-weighted mean of 5 ms gaps
    # 50 ms prefill plus 10, 20 and 0 gaps of 5 ms
    assert w.request_duration_s == pytest.approx((0.1 + 0.15 + 0.05) / 3)


# -- the oracle and the report ----------------------------------------------------------------------
def test_oracle_holds_a_burst_that_the_mean_rate_hides() -> None:
    plan = make_plan(isl=2000, osl=2, interval_seconds=60)
    # minute 0: a 10 s burst at 50 req/s (2.5 workers of prefill), then 1 req/s; minute 1: 1 req/s
    workload = _even([(10.0, 50.0), (50.0, 1.0), (60.0, 1.0)])
    mean_rate = 550 / 60.0
    assert capacity(plan, MODEL, mean_rate, 2000, 2).replicas("prefill") == 1  # what the mean asks for
    result = oracle(plan, MODEL, workload, 60.0)
    assert result.target == 0.99
    first, second = result.intervals
    # two workers fall behind during the burst (40 req/s served of 50): most of its 500 requests
    # wait beyond the 200 ms SLA; three take every third request, 60 ms apart, within their
    # 50 ms service: no queueing at all, every request within the SLA
    assert first.replicas == {"prefill": 3, "decode": 1}
    assert first.requests == 550 and first.attainment is not None and first.attainment.both == 1.0
    assert second.replicas == {"prefill": 1, "decode": 1}
    assert result.infeasible_intervals == 0 and result.budget_limited_intervals == 0
    span_last = workload.t[-1] - 60.0
    assert result.gpu_hours == pytest.approx((4 * 60.0 + 2 * span_last) / 3600)


def test_oracle_reaches_the_attainment_target_not_more() -> None:
    # 600 requests at 50 req/s evenly (three workers take every third, 60 ms apart, within
    # their 50 ms service: none waits), then 9 at once. At TTFT <= 60 ms a request that waits
    # for another's 50 ms prefill misses: with k workers, 9 - k of the burst miss.
    plan = make_plan(isl=2000, osl=2, interval_seconds=60, ttft_ms=60.0)
    t = np.concatenate([np.arange(600) / 50.0 + 30.0, np.full(9, 45.0)])
    workload = Arrivals(t=np.sort(t), isl=np.full(609, 2000), osl=np.full(609, 2))
    expected = {0.99: (3, 603), 0.995: (6, 606), 0.999: (9, 609)}  # 6 misses <= 6.09; 3 <= 3.05; 0
    for target, (prefill, met) in expected.items():
        (iv,) = oracle(plan, MODEL, workload, 60.0, target=target).intervals
        assert iv.replicas == {"prefill": prefill, "decode": 1}
        assert iv.attainment is not None and iv.attainment.both == pytest.approx(met / 609)


def test_oracle_on_flat_profile_and_evenly_spaced_arrivals() -> None:
    plan = make_plan(isl=2000, osl=100, interval_seconds=60)
    workload = _even([(60.0, 50.0), (60.0, 30.0), (60.0, 5.0)], isl=2000, osl=100)
    result = oracle(plan, MODEL, workload, 60.0)
    # 100k, 60k, 10k prefill tokens/s over 40k per worker; evenly spaced arrivals never queue
    # on that many workers and always do on one fewer; decode holds 5 ms at any batch
    assert [iv.replicas for iv in result.intervals] == [
        {"prefill": 3, "decode": 1}, {"prefill": 2, "decode": 1}, {"prefill": 1, "decode": 1}
    ]
    assert all(iv.attainment is not None and iv.attainment.both == 1.0 for iv in result.intervals)


def test_oracle_decode_is_the_smallest_count_reaching_the_itl_target() -> None:
    # ITL grows with KV usage (1 + 99 kv ms): decode replicas are chosen by the ITL SLA
    model = perf_model(linear_profile())
    plan = make_plan(isl=4000, osl=200, itl_ms=10.0, interval_seconds=60)
    workload = _even([(60.0, 4.0)], isl=4000, osl=200)
    result = oracle(plan, model, workload, 60.0)
    (iv,) = result.intervals
    decode = iv.replicas["decode"]
    assert decode > 1 and iv.attainment is not None and iv.attainment.both >= 0.99
    fewer = make_plan(isl=4000, osl=200, itl_ms=10.0, interval_seconds=60,
                                 max_replicas={"decode": decode - 1})
    (short,) = oracle(fewer, model, workload, 60.0).intervals
    assert short.replicas["decode"] == decode - 1 and short.infeasible_pools == ("decode",)
    assert short.attainment is not None and short.attainment.itl < 0.99


def test_oracle_counts_intervals_the_pool_maximum_or_the_budget_cannot_hold() -> None:
    workload = _even([(10.0, 50.0), (50.0, 1.0), (60.0, 1.0)])
    capped = make_plan(isl=2000, osl=2, interval_seconds=60, max_replicas={"prefill": 2})
    result = oracle(capped, MODEL, workload, 60.0)
    first = result.intervals[0]
    # prefill at its maximum; decode still the fewest that reach the target on ITL
    assert first.replicas == {"prefill": 2, "decode": 1}
    assert first.infeasible_pools == ("prefill",) and first.attainment is not None and first.attainment.ttft < 0.99
    assert result.infeasible_intervals == 1 and result.budget_limited_intervals == 0
    cmp = compare(capped, MODEL, MODEL, workload, [parse_policy("static:2")])
    assert cmp.summaries["oracle"]["infeasibleIntervals"] == 1
    assert cmp.summaries["oracle"]["intervals"] == 2
    # 3 GPUs cannot hold 3 prefill + 1 decode: the budget shares what is left above the minimums
    budget = make_plan(isl=2000, osl=2, interval_seconds=60, max_gpus=3)
    result = oracle(budget, MODEL, workload, 60.0)
    first = result.intervals[0]
    assert first.replicas == {"prefill": 2, "decode": 1}
    assert first.budget_limited and not first.infeasible_pools
    # replayed at the cut counts: the burst queues on two workers
    assert first.attainment is not None and first.attainment.ttft < 0.99
    assert result.budget_limited_intervals == 1 and result.infeasible_intervals == 0


def test_smallest_passing_search_from_any_hint() -> None:
    for threshold in (0, 1, 5, 7, 16):
        for hint in (0, 1, 3, 7, 12, 16, 40):
            calls: list[int] = []

            def passes(n: int) -> bool:
                calls.append(n)
                return n >= threshold

            assert smallest_passing(passes, 0, 16, hint) == (threshold, True)
            assert len(calls) <= 10
    assert smallest_passing(lambda n: n >= 17, 1, 16, 4) == (16, False)


def _result(ttft: list[float], itl: list[float], t: list[float], osl: list[int]) -> SimResult:
    w = Arrivals(t=np.array(t), isl=np.full(len(t), 100), osl=np.array(osl))
    ttft_a = np.array(ttft)
    pe = w.t + ttft_a / 1000
    itl_a = np.array(itl)
    fin = pe + np.nan_to_num(itl_a) * (w.osl - 1) / 1000
    return SimResult(policy="x", workload=w, prefill_end=pe, finish=fin, ttft_ms=ttft_a, itl_ms=itl_a,
                     end_time=float(fin.max()), replicas=[], samples=[], gpus_per_replica={"prefill": 1, "decode": 1})


def test_attainment_per_request_and_per_minute_window() -> None:
    sla = make_plan(ttft_ms=200.0, itl_ms=20.0).spec.sla
    # minute 0: TTFTs 100 and 250 (mean 175: the window meets the mean SLA, one request does not);
    # minute 1: ITL 30 on one request of 11 tokens and 10 on one of 31 (token-weighted mean 15).
    r = _result(ttft=[100, 250, 50, 50], itl=[5, 5, 30, 10], t=[0, 10, 70, 80], osl=[2, 2, 11, 31])
    s = policy_summary(r, sla, oracle_gpu_hours=None)
    assert s["attainment"] == {"ttft": 0.75, "itl": 0.75, "both": 0.5}
    assert window_attainment(r, sla) == {"ttft": 1.0, "itl": 1.0, "both": 1.0}
    assert s["ttftMs"]["p50"] == pytest.approx(75.0)
    assert s["goodputRps"] == pytest.approx(2 / 80.0)


def test_peak_gpus_is_the_peak_of_the_total_billed_across_pools() -> None:
    # prefill 2 GPUs a replica, decode 4: the pools peak at different times, and the total
    # peaks at neither pool's own peak (1*2 + 3*4 = 14 at t=30).
    r = _result(ttft=[100], itl=[5], t=[0], osl=[2])
    r.gpus_per_replica = {"prefill": 2, "decode": 4}
    counts = [(0.0, 1, 1), (10.0, 5, 1), (20.0, 2, 2), (30.0, 1, 3), (40.0, 1, 1)]
    r.samples = [
        PoolSample(t=t, pool=pool, desired=n, ready=n, billed=n)
        for t, p, d in counts
        for pool, n in (("prefill", p), ("decode", d))
    ]
    s = policy_summary(r, make_plan().spec.sla, oracle_gpu_hours=None)
    assert s["peakReplicas"] == {"prefill": 5, "decode": 3}
    assert s["peakGpus"] == 14


def test_peak_gpus_of_a_run_counts_gpus_per_replica_in_every_pool() -> None:
    # static 3 prefill + 2 decode at 2 and 4 GPUs a replica: 14 GPUs the whole run
    workload = _even([(20.0, 1.0)], isl=1000, osl=5)
    cfg = EngineConfig(gpus_per_replica={"prefill": 2, "decode": 4})
    ctl = StaticController("static:3,2", {"prefill": 3, "decode": 2})
    s = policy_summary(simulate(workload, MODEL, ctl, cfg), make_plan().spec.sla, oracle_gpu_hours=None)
    assert s["peakGpus"] == 14


def test_requests_stranded_without_replicas_are_reported_unfinished() -> None:
    # At t=5 the prefill pool goes to zero: later arrivals are never served. Ticks stop
    # max_drain_seconds after the last arrival and the run ends instead of looping forever.
    model = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
    workload = _even([(20.0, 1.0)], isl=1000, osl=5)
    ctl = Scripted({"prefill": 1, "decode": 1}, 5.0, {1: {"prefill": 0, "decode": 1}})
    cfg = EngineConfig(gpus_per_replica={"prefill": 1, "decode": 1}, max_drain_seconds=30.0)
    result = simulate(workload, model, ctl, cfg)
    served = workload.t < 5.0
    assert np.all(np.isfinite(result.finish[served]))
    assert np.all(np.isnan(result.finish[~served]))
    s = policy_summary(result, make_plan().spec.sla, oracle_gpu_hours=None)
    assert s["unfinished"] == 15
    assert s["attainment"]["both"] == pytest.approx(5 / 20)
    assert len(ctl.windows) == 9  # ticks at 5, 10, ..., 45: the last arrival (19 s) + 30 s
