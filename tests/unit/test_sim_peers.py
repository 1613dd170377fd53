"""The peer policies: llm-d's SLO-aware rule and its HPA, and Dynamo's G2 planner (throughput
lower bound, load rules), each on hand-computed cases."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytest

from helpers import flat_profile, make_plan
from scaler.core.interpolation import perf_model
from scaler.core.observations import TrafficWindow, WorkerLoad
from scaler.sim.actuation import ActuationPath
from scaler.sim.engine import EngineConfig, simulate
from scaler.sim.keda import ScalerReading
from scaler.sim.latency import ITL, TTFT, LatencyLog
from scaler.sim.peers import (
    DOWN,
    HOLD,
    UP,
    DynamoController,
    LlmdSloController,
    OlsWindow,
    dynamo_direction,
    dynamo_plan,
    llmd_actuation,
    llmd_ratio,
    llmd_replicas,
)
from scaler.sim.policies import actuation_for, parse_policy
from scaler.sim.workload import Arrivals

MODEL = perf_model(flat_profile(40000.0, 10000.0, ttft_ms=50.0, itl_ms=5.0))


# -- llm-d ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "s, n, r, expected",
    [
        (1.1, 4, 4, 8),     # add ceil(4 (1.1 / 0.55 - 1)) = 4
        (1.1, 4, 2, 4),     # half ready: 4 (1.1 x 2/4 / 0.55 - 1) = 0, nothing to add
        (0.66, 5, 4, 5),    # 5 (0.66 x 4/5 / 0.55 - 1) = -0.2: never a removal above 0.55
        (0.6, 10, 10, 11),  # ceil(10 x 0.0909) = 1
        (0.55, 6, 6, 6),    # on the threshold: hold
        (0.5, 6, 6, 6),     # inside the band
        (0.40, 6, 6, 6),    # on the lower threshold: hold
        (0.39, 10, 10, 10),  # floor(10 x 0.025) = 0
        (0.2, 5, 5, 3),     # remove floor(5 (1 - 0.5)) = 2
        (0.0, 3, 3, 0),     # remove all 3 (the pool's minimum clamps it later)
        (1.0, 0, 0, 1),     # none provisioned: one when above 0.55
        (0.1, 0, 0, 0),
    ],
)
def test_llmd_rule(s: float, n: int, r: int, expected: int) -> None:
    assert llmd_replicas(s, n, r) == expected


def test_llmd_ratio_is_a_clamped_p90_averaged_over_45_seconds() -> None:
    log = LatencyLog()
    # one first token per second, TTFT 100 ms up to t = 30 s, then 300 ms
    for t in range(0, 61):
        log.add(TTFT, float(t), 100.0 if t <= 30 else 300.0)
    # samples at 60, 45 and 30 s, each the p90 of its minute over the 200 ms SLA:
    # (0, 60]: 30 x 100, 30 x 300 -> 300; (-15, 45]: 31 x 100, 15 x 300 -> 300; (-30, 30]: 100
    assert llmd_ratio(log, 60.0, "prefill", 200.0, 20.0) == pytest.approx((1.5 + 1.5 + 0.5) / 3)
    assert llmd_ratio(log, 60.0, "decode", 200.0, 20.0) is None  # no ITL measured
    log.add(ITL, 60.0, 500.0)  # 25x the ITL SLA: clamped at 2
    assert llmd_ratio(log, 60.0, "decode", 200.0, 20.0) == pytest.approx(2.0)
    # an aggregated pool takes the larger of the two ratios, then the clamp
    assert llmd_ratio(log, 60.0, "worker", 200.0, 20.0) == pytest.approx((2.0 + 1.5 + 0.5) / 3)


def test_llmd_poll_uses_provisioned_and_ready_and_the_pool_bounds() -> None:
    plan = make_plan(min_replicas={"decode": 2})
    ctl = LlmdSloController("llmd-slo", plan)
    log = LatencyLog()
    for t in range(0, 31):
        log.add(TTFT, float(t), 440.0)  # s = 2.2 -> clamped 2.0
        log.add(ITL, float(t), 2.0)     # s = 0.1
    targets = ctl.on_poll(30.0, log, {"prefill": 4, "decode": 3}, {"prefill": 2, "decode": 3})
    # prefill: 4 + ceil(4 (2 x 2/4 / 0.55 - 1)) = 4 + ceil(3.27) = 8; decode: 3 - floor(3 x 0.75) = 1 -> min 2
    assert targets == {"prefill": 8, "decode": 2}
    assert ctl.log[0]["pools"]["prefill"] == {"s": 2.0, "provisioned": 4, "ready": 2, "replicas": 8}


def test_llmd_hpa_scales_up_by_max_100_percent_or_4_pods_per_minute() -> None:
    plan = make_plan()
    path = ActuationPath(llmd_actuation(plan, "prefill"), 4)
    always16 = ScalerReading(16.0, active=True)
    spec = {t: path.advance(t, lambda _t: always16) for t in (0.0, 15.0, 30.0, 45.0, 75.0, 90.0)}
    # the 30 s up window holds the first sync's initial 4 until 30 s; then max(4 + 4, 2 x 4) = 8;
    # the next 8 only once that scale-up is more than 60 s old
    assert spec == {0.0: 4, 15.0: 4, 30.0: 8, 45.0: 8, 75.0: 8, 90.0: 16}


def test_llmd_hpa_scales_down_one_pod_per_two_minutes_after_three() -> None:
    plan = make_plan()
    path = ActuationPath(llmd_actuation(plan, "prefill"), 5)
    down = ScalerReading(1.0, active=True)
    times = [15.0 * k for k in range(30)]
    spec = {t: path.advance(t, lambda _t: down) for t in times}
    changes = [(t, n) for t, n in spec.items() if spec.get(t - 15.0, 5) != n]
    # the initial 5 stays in the 180 s window until 180 s; then one pod per 120 s
    assert changes == [(180.0, 4), (300.0, 3), (420.0, 2)]


def test_llmd_policy_takes_its_own_actuation_path_and_polls_every_30_seconds() -> None:
    plan = make_plan()
    paths = actuation_for(parse_policy("llmd-slo"), plan)
    assert paths is not None and paths["prefill"].keda.polling_interval_seconds == 30
    hpa = paths["decode"].hpa
    assert hpa.behavior is not None and hpa.behavior.scale_down is not None
    assert hpa.behavior.scale_down.stabilization_window_seconds == 180
    assert LlmdSloController("x", plan).poll_interval_seconds == 30.0
    # Dynamo sets replicas itself; static fleets never change
    assert actuation_for(parse_policy("dynamo"), plan) is None
    assert actuation_for(parse_policy("static:2"), plan) is None


# -- Dynamo ---------------------------------------------------------------------------------------
def test_ols_window_solves_the_fit_at_the_sla() -> None:
    reg = OlsWindow(window=50, min_observations=5)
    for x in (10.0, 20.0, 30.0, 40.0):
        reg.add(x, 2 * x + 10)
    assert reg.x_at(50.0) is None  # 4 < 5 points
    reg.add(50.0, 110.0)
    assert reg.x_at(50.0) == pytest.approx(20.0)
    assert reg.x_at(5.0) == 0.0  # below the intercept: clamped
    flat = OlsWindow(window=50, min_observations=2)
    for x, y in ((10.0, 100.0), (20.0, 30.0), (30.0, 40.0)):
        flat.add(x, y)  # slope < 0: the smallest x whose latency met the SLA
    assert flat.x_at(50.0) == 20.0
    assert flat.x_at(10.0) == 10.0  # none met it: the smallest x
    window = OlsWindow(window=3, min_observations=2)
    for x in (1.0, 2.0, 3.0, 4.0):
        window.add(x, x)
    assert [p[0] for p in window.points] == [2.0, 3.0, 4.0]


def test_dynamo_direction() -> None:
    assert dynamo_direction([10.0, 12.0], 5.0, 80.0) == UP
    # boundary 10 x 1/2 x 0.8 = 4: both below -> down; one above -> hold
    assert dynamo_direction([1.0, 3.9], 10.0, 80.0) == DOWN
    assert dynamo_direction([1.0, 5.0], 10.0, 80.0) == HOLD
    assert dynamo_direction([1.0], 10.0, 80.0) == HOLD  # one worker never goes down
    assert dynamo_direction([10.0, 12.0], None, 80.0) == HOLD
    assert dynamo_direction([10.0, 12.0], -1.0, 80.0) == HOLD  # SLA unachievable: no decision
    assert dynamo_direction([], 5.0, 80.0) == HOLD


def _workers(prefill: list[float], decode: list[float]) -> tuple[WorkerLoad, ...]:
    """Workers whose latest samples lie on TTFT = 10 + 0.01 (tokens + ISL 1000) and
    ITL = 2 + 0.1 blocks: x_sla is 19,000 tokens (target 18,000 queued) and 180 blocks."""
    out = [
        WorkerLoad(f"prefill-{i}", "prefill", active_prefill_tokens=a, last_isl=1000.0,
                   last_ttft_ms=10.0 + 0.01 * (a + 1000.0))
        for i, a in enumerate(prefill)
    ]
    out += [
        WorkerLoad(f"decode-{i}", "decode", active_decode_blocks=b, last_itl_ms=2.0 + 0.1 * b)
        for i, b in enumerate(decode)
    ]
    return tuple(out)


def _trained(**kwargs: object) -> DynamoController:
    ctl = DynamoController("dynamo", make_plan(**kwargs), MODEL)  # type: ignore[arg-type]
    for x in (1000.0, 5000.0, 9000.0, 13000.0, 17000.0):
        ctl.regressions[("prefill", TTFT)].add(x + 1000.0, 10.0 + 0.01 * (x + 1000.0))
    for b in (10.0, 50.0, 90.0, 130.0, 170.0):
        ctl.regressions[("decode", ITL)].add(b, 2.0 + 0.1 * b)
    return ctl


def test_dynamo_scales_only_the_pool_that_wants_up() -> None:
    ctl = _trained()
    ready = {"prefill": 2, "decode": 2}
    # prefill: both above 18,000 -> up; decode: both below 180 x 1/2 x 0.8 = 72 -> down, but
    # with one pool going up the other stays
    assert ctl.on_load(10.0, _workers([20000.0, 19000.0], [50.0, 60.0]), ready) == {"prefill": 3, "decode": 2}
    # blocking: the third prefill replica is not ready yet, the tick is skipped
    assert ctl.on_load(20.0, _workers([20000.0, 19000.0], [50.0, 60.0]), ready) is None
    assert ctl.log[-1]["skipped"] == "previous scaling not ready"


def test_dynamo_shrinks_only_when_both_pools_want_down() -> None:
    ready = {"prefill": 2, "decode": 2}
    # prefill boundary 18,000 x 1/2 x 0.8 = 7,200
    ctl = _trained()
    assert ctl.on_load(10.0, _workers([1000.0, 2000.0], [50.0, 60.0]), ready) == {"prefill": 1, "decode": 1}
    ctl = _trained()
    assert ctl.on_load(10.0, _workers([1000.0, 2000.0], [100.0, 60.0]), ready) is None  # decode holds
    # no scale-down delay and the throughput lower bound: both down, floored
    ctl = _trained()
    ctl.floor = {"prefill": 4, "decode": 1}
    assert ctl.on_load(10.0, _workers([1000.0, 2000.0], [50.0, 60.0]), ready) == {"prefill": 4, "decode": 1}


def test_dynamo_prefill_target_uses_this_ticks_isl() -> None:
    ctl = _trained()
    ready = {"prefill": 2, "decode": 2}
    # the workers' last ISL is 12,000 now: target 19,000 - 12,000 = 7,000 queued tokens
    workers = tuple(
        WorkerLoad(f"prefill-{i}", "prefill", active_prefill_tokens=8000.0, last_isl=12000.0, last_ttft_ms=210.0)
        for i in range(2)
    ) + _workers([], [100.0, 100.0])
    assert ctl.on_load(10.0, workers, ready) == {"prefill": 3, "decode": 2}


def test_dynamo_throughput_tick_only_sets_the_lower_bound() -> None:
    ctl = DynamoController("dynamo", make_plan(isl=2000, osl=2, interval_seconds=60), MODEL)
    window = TrafficWindow(window_seconds=60.0, requests=3000.0, isl=2000.0, osl=2.0)
    assert ctl.on_traffic(60.0, window, {"prefill": 1, "decode": 1}) is None
    # Dynamo's formula: 50 req/s x 2000 tokens / 40k tokens/s per replica = 2.5 -> 3
    assert ctl.floor == {"prefill": 3, "decode": 1}
    assert ctl.decisions[0].throughput is not None and not ctl.decisions[0].throughput.correction_enabled


def test_dynamo_plan_is_dynamos_formulas_with_load_scaling() -> None:
    plan = dynamo_plan(make_plan(sizing="attainment"))
    tp = plan.spec.scaling.throughput
    assert tp.sizing == "dynamo" and not tp.queueing.enabled and tp.correction
    assert plan.spec.scaling.load.enabled


def test_dynamo_in_the_engine_grows_prefill_under_a_queue() -> None:
    # 1 prefill replica at 30 req/s of 50 ms prefills (1.5x its capacity): the queue and the
    # TTFT grow together, the fit finds the SLA's load, and every tick with the queue above it
    # adds one replica (once the previous one is ready)
    plan = make_plan(isl=2000, osl=2, interval_seconds=60, load=True)
    n = 6000
    t = np.arange(n) / 30.0
    workload = Arrivals(t=t, isl=np.full(n, 2000), osl=np.full(n, 2))
    ctl = DynamoController("dynamo", plan, MODEL, initial={"prefill": 1, "decode": 1})
    res = simulate(workload, MODEL, ctl, EngineConfig(gpus_per_replica={"prefill": 1, "decode": 1},
                                                      startup_delay_seconds=30.0))
    ups = [e for e in ctl.log if e.get("replicas")]
    assert ups and ups[0]["directions"]["prefill"] == UP and ups[0]["replicas"]["prefill"] == 2
    peak: Optional[int] = max(s.desired for s in res.samples if s.pool == "prefill")
    assert peak is not None and peak >= 2
