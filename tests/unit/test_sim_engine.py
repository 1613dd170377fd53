"""The simulator's engine model held against queueing theory and the profile it plays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import SYNTHETIC_PROFILE_DIR, flat_profile, linear_profile
from scaler.core.interpolation import perf_model
from scaler.core.profile import profile_from_raw
from scaler.sim.engine import REFRESH_STEPS, EngineConfig, _least_loaded, simulate
from scaler.sim.policies import StaticController
from scaler.sim.window import WindowStats
from scaler.sim.workers import DecodeWorker, PrefillWorker
from scaler.sim.workload import Arrivals

CFG = EngineConfig(gpus_per_replica={"prefill": 1, "decode": 1}, startup_delay_seconds=60.0)


def _static(prefill: int, decode: int) -> StaticController:
    return StaticController(f"static:{prefill},{decode}", {"prefill": prefill, "decode": decode})


def _poisson(n: int, rate: float, seed: int, isl: int = 1000, osl: int = 1) -> Arrivals:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    t -= t[0]
    return Arrivals(t=t, isl=np.full(n, isl), osl=np.full(n, osl))


@pytest.mark.parametrize("rho", [0.5, 0.7, 0.9])
def test_single_prefill_worker_gives_md1_mean_wait(rho: float) -> None:
    # Flat TTFT profile: every request takes exactly S on the one prefill worker (M/D/1).
    service_seconds = 0.05
    model = perf_model(flat_profile(ttft_ms=service_seconds * 1000))
    workload = _poisson(400_000, rho / service_seconds, seed=0)
    result = simulate(workload, model, _static(1, 1), CFG)
    wait = np.mean(result.ttft_ms / 1000.0 - service_seconds)
    pollaczek_khinchine = rho * service_seconds / (2 * (1 - rho))
    assert wait == pytest.approx(pollaczek_khinchine, rel=0.05)
    # queueing counts toward TTFT: nobody is faster than the service time
    assert result.ttft_ms.min() == pytest.approx(service_seconds * 1000)


def test_decode_batch_steps_at_profiled_itl_exactly() -> None:
    # linear_profile: ITL(kv) = 1 + 99 kv ms at any context. B requests reach one decode
    # worker together (B prefill workers, same ISL), so the batch is fixed: every request
    # must finish after exactly (OSL-1) steps of ITL(sum of contexts / max_kv_tokens).
    profile = linear_profile(ttft_base_ms=10.0, ttft_per_token_ms=0.01, max_kv_tokens=110_000.0)
    model = perf_model(profile)
    b, isl, osl = 20, 2000, 33
    assert osl - 1 < REFRESH_STEPS  # one step-time segment
    workload = Arrivals(t=np.zeros(b), isl=np.full(b, isl), osl=np.full(b, osl))
    result = simulate(workload, model, _static(b, 1), CFG)
    kv = b * isl / 110_000.0
    itl_ms = 1.0 + 99.0 * kv
    ttft_ms = 10.0 + 0.01 * isl
    np.testing.assert_allclose(result.ttft_ms, ttft_ms, rtol=1e-9)
    np.testing.assert_allclose(result.itl_ms, itl_ms, rtol=1e-9)
    tokens_per_s = b * (osl - 1) / ((result.finish.max() - result.prefill_end.min()))
    assert tokens_per_s == pytest.approx(b * 1000.0 / itl_ms, rel=1e-9)


def test_decode_throughput_at_fixed_batch_matches_profiled_throughput() -> None:
    # The example profile's point (kv 0.3216, context 2997): batch = kv x max_kv / context = 100,
    # profiled ITL 9.379 ms and 10661.86 tokens/s/GPU. A batch of 100 at that context must
    # produce what the profile measured (the profile's own noise is ~2%).
    raw_p = json.loads((SYNTHETIC_PROFILE_DIR / "prefill_raw_data.json").read_text())
    raw_d = json.loads((SYNTHETIC_PROFILE_DIR / "decode_raw_data.json").read_text())
    model = perf_model(profile_from_raw(raw_p, raw_d))
    ctx, kv = 2997.0, 0.321567
    b = round(kv * raw_d["max_kv_tokens"] / ctx)
    assert b == 100
    osl = 21  # 20 steps: the context barely grows
    workload = Arrivals(t=np.zeros(b), isl=np.full(b, int(ctx) - 10), osl=np.full(b, osl))
    result = simulate(workload, model, _static(b, 1), CFG)
    decode_seconds = result.finish.max() - result.prefill_end.max()
    tokens_per_s = b * (osl - 1) / decode_seconds
    assert tokens_per_s == pytest.approx(10661.86, rel=0.03)
    assert np.nanmean(result.itl_ms) == pytest.approx(9.379, rel=0.03)


def test_kv_admission_queues_requests_that_do_not_fit() -> None:
    # max_kv 110k tokens; each request reserves ISL+OSL = 50,001 tokens: two fit, the third waits
    # for the first completion, so its ITL includes that wait.
    model = perf_model(linear_profile(max_kv_tokens=110_000.0))
    isl, osl = 49_990, 11
    workload = Arrivals(t=np.zeros(3), isl=np.full(3, isl), osl=np.full(3, osl))
    result = simulate(workload, model, _static(3, 1), CFG)
    first_two = np.sort(result.finish)[:2]
    third = np.sort(result.finish)[2]
    assert first_two[1] - first_two[0] < 1e-9  # batched together
    assert third > first_two[0]
    # ITL(kv) = 1 + 99 kv ms: the pair steps at kv = 2 x 49,990 / 110k, the third alone at half
    pair_itl = 1 + 99 * 2 * isl / 110_000.0
    alone_itl = 1 + 99 * isl / 110_000.0
    itl = np.sort(result.itl_ms)
    np.testing.assert_allclose(itl[:2], pair_itl, rtol=1e-9)
    # 10 gaps of waiting (the pair's decode) plus 10 steps of its own, over 10 gaps
    assert itl[2] == pytest.approx(pair_itl + alone_itl, rel=1e-9)


def test_least_loaded_routing_spreads_a_burst() -> None:
    # 8 simultaneous requests, 4 prefill workers of 60 ms each: two rounds, TTFT 60 and 120 ms.
    model = perf_model(flat_profile(ttft_ms=60.0))
    workload = Arrivals(t=np.zeros(8), isl=np.full(8, 500), osl=np.ones(8, dtype=int))
    result = simulate(workload, model, _static(4, 1), CFG)
    assert sorted(np.round(result.ttft_ms, 6).tolist()) == [60.0] * 4 + [120.0] * 4


def test_gpu_hours_count_every_replica_until_the_end() -> None:
    model = perf_model(flat_profile(ttft_ms=10.0, itl_ms=5.0))
    workload = _poisson(500, 5.0, seed=3, osl=20)
    result = simulate(workload, model, _static(2, 3), CFG)
    assert result.gpu_hours() == pytest.approx(5 * result.end_time / 3600.0)
    assert result.gpu_hours("decode") == pytest.approx(3 * result.end_time / 3600.0)
    assert result.end_time == pytest.approx(np.max(result.finish))
    assert result.scale_events == 0


def test_same_input_same_output() -> None:
    model = perf_model(flat_profile(ttft_ms=20.0, itl_ms=5.0))
    workload = _poisson(3000, 40.0, seed=11, osl=30)
    a = simulate(workload, model, _static(1, 1), CFG)
    b = simulate(workload, model, _static(1, 1), CFG)
    assert np.array_equal(a.finish, b.finish)
    assert np.array_equal(a.ttft_ms, b.ttft_ms)


def test_routing_takes_the_first_serving_worker_of_least_backlog() -> None:
    a, b, c = (PrefillWorker(i, 0.0, 0.0) for i in range(3))
    for w in (a, b, c):
        w.make_ready(0.0)
    a.enqueue(0.0, 100, 0.5)
    # b and c are both free at t=0.1 (backlog = t): the first of equals wins
    assert _least_loaded([a, b, c], 0.1) is b
    b.drain()
    assert not b.serving and _least_loaded([a, b, c], 0.1) is c
    c.end(0.1)
    assert _least_loaded([a, b, c], 0.1) is a
    a.drain()
    assert _least_loaded([a, b, c], 0.1) is None


def test_a_worker_serves_only_between_ready_and_drain() -> None:
    w = DecodeWorker(0, 0.0, 60.0)
    assert not w.serving  # starting
    w.make_ready(60.0)
    assert w.serving and w.t_last == 60.0
    assert w.offer(0, isl=1000, osl=10, max_kv=5000.0)
    assert not w.offer(1, isl=4000, osl=10, max_kv=5000.0)  # does not fit: waits
    assert w.backlog(60.0) == 1010 + 4010 and w.drain_end(60.0) is None  # not idle
    w.drain()
    assert not w.serving and w.draining


def test_decode_worker_finishes_due_requests_then_admits_the_waiting() -> None:
    isl, osl = [1000, 4000], [11, 11]
    w = DecodeWorker(0, 0.0, 0.0)
    w.make_ready(0.0)
    w.tau = 0.01
    w.offer(0, isl[0], osl[0], max_kv=5000.0)
    w.offer(1, isl[1], osl[1], max_kv=5000.0)
    w.advance(0.1)  # 10 steps: request 0 has made its 10 decode tokens
    assert w.finish_due(isl, osl, max_kv=5000.0) == [0]
    assert w.n == 1 and not w.waitq and w.kv_reserved == 4011 and w.wait_kv == 0.0


def test_traffic_window_stats_reset_between_ticks() -> None:
    stats = WindowStats([0.0, 1.0, 2.0, 3.0], np.array([10, 20, 30, 40]))
    stats.first_token(100.0)
    stats.completed(osl=5, duration=2.0, decode_seconds=0.4)
    stats.completed(osl=1, duration=1.0, decode_seconds=0.0)  # single token: no gap
    w = stats.window(3.0, 2.0)  # arrivals at 1 and 2
    assert (w.requests, w.isl, w.osl, w.ttft_ms, w.request_duration_s) == (2.0, 25.0, 3.0, 100.0, 1.5)
    assert w.itl_ms == pytest.approx(100.0)  # 0.4 s over 4 gaps
    stats.reset()
    w = stats.window(3.0, 2.0)
    assert w.requests == 2.0 and (w.osl, w.ttft_ms, w.itl_ms) == (None, None, None)
