"""The engine's newer inputs and outputs: the KEDA/HPA actuation path between a policy's targets
and the replicas, per-pool start-up delays, the windows' peak rate and backlog, the latency log
a histogram-reading policy polls, and the stop rule of probe runs."""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import pytest

from helpers import flat_profile, plan_dict, with_changes
from scaler.core.interpolation import perf_model
from scaler.core.plan import Plan
from scaler.sim.actuation import config_from_plan
from scaler.sim.engine import EngineConfig, StopRule, simulate
from scaler.sim.latency import ITL, TTFT, LatencyLog
from scaler.sim.policies import StaticController
from scaler.sim.results import SimResult
from scaler.sim.window import first_window, peak_rate
from scaler.sim.workload import Arrivals
from sim_controllers import Scripted

MODEL = perf_model(flat_profile(40000.0, 10000.0, ttft_ms=50.0, itl_ms=5.0))
CFG = EngineConfig(gpus_per_replica={"prefill": 1, "decode": 1}, startup_delay_seconds=60.0)


def _steady(seconds: float, rate: float, isl: int = 200, osl: int = 2) -> Arrivals:
    t = np.arange(int(seconds * rate)) / rate
    return Arrivals(t=t, isl=np.full(len(t), isl), osl=np.full(len(t), osl))


def _desired(result: SimResult, pool: str) -> list[tuple[float, int]]:
    """(time, desired) at every change of the pool's desired replicas."""
    out: list[tuple[float, int]] = []
    for s in result.samples:
        if s.pool == pool and (not out or out[-1][1] != s.desired):
            out.append((s.t, s.desired))
    return out


def _plan(**keda: object) -> Plan:
    doc = plan_dict(isl=200, osl=2, interval_seconds=60)
    return Plan.model_validate(with_changes(doc, {f"spec.keda.{k}": v for k, v in keda.items()}))


# -- the actuation path ------------------------------------------------------------------------
def test_a_change_inside_the_hpa_tolerance_is_never_applied() -> None:
    plan = _plan()
    actuation = {p: config_from_plan(plan, p) for p in plan.pool_names}
    workload = _steady(300.0, 1.0)
    # 10 -> 11 prefill replicas: usage 11 over 10 replicas is a ratio of 1.1, inside the
    # cluster's 10% tolerance, so the HPA proposes the current 10 at every sync
    script = {1: {"prefill": 11, "decode": 1}}
    direct = simulate(workload, MODEL, Scripted({"prefill": 10, "decode": 1}, 60.0, script), CFG)
    via_hpa = simulate(workload, MODEL, Scripted({"prefill": 10, "decode": 1}, 60.0, script), CFG, actuation)
    assert _desired(direct, "prefill") == [(0.0, 10), (60.0, 11)]
    assert _desired(via_hpa, "prefill") == [(0.0, 10)]
    # 10 -> 12 is outside it: applied at the first HPA sync after the decision (phase 7.5 s)
    script = {1: {"prefill": 12, "decode": 1}}
    via_hpa = simulate(workload, MODEL, Scripted({"prefill": 10, "decode": 1}, 60.0, script), CFG, actuation)
    assert _desired(via_hpa, "prefill") == [(0.0, 10), (67.5, 12)]


def test_scale_down_stabilisation_delays_the_removal() -> None:
    plan = _plan(scaleDownStabilizationSeconds=120)
    actuation = {p: config_from_plan(plan, p) for p in plan.pool_names}
    workload = _steady(400.0, 1.0)
    script = {1: {"prefill": 5, "decode": 1}}
    direct = simulate(workload, MODEL, Scripted({"prefill": 10, "decode": 1}, 60.0, script), CFG)
    via_hpa = simulate(workload, MODEL, Scripted({"prefill": 10, "decode": 1}, 60.0, script), CFG, actuation)
    assert _desired(direct, "prefill") == [(0.0, 10), (60.0, 5)]
    # syncs at 7.5 + 15k s; the proposals of 10 made up to 52.5 s stay in the 120 s window
    # until 172.5 s, when the sync's maximum over the window is 5 at last
    assert _desired(via_hpa, "prefill") == [(0.0, 10), (172.5, 5)]
    # the five extra replicas cost GPUs for 112.5 s longer
    assert via_hpa.gpu_hours("prefill") - direct.gpu_hours("prefill") == pytest.approx(5 * 112.5 / 3600, abs=1e-3)


def test_decision_records_say_whether_the_scalers_answer_changed() -> None:
    plan = _plan()
    actuation = {p: config_from_plan(plan, p) for p in plan.pool_names}
    script = {1: {"prefill": 10, "decode": 1}, 2: {"prefill": 11, "decode": 1}}
    res = simulate(_steady(200.0, 1.0), MODEL, Scripted({"prefill": 10, "decode": 1}, 60.0, script), CFG, actuation)
    assert [(d.t, d.changed) for d in res.decisions] == [(60.0, False), (120.0, True)]


# -- start-up delay per pool ---------------------------------------------------------------------
def test_each_pool_has_its_own_startup_delay() -> None:
    cfg = EngineConfig(
        gpus_per_replica={"prefill": 1, "decode": 1}, startup_delay_seconds=60.0,
        startup_delay_by_pool={"prefill": 30.0},
    )
    script = {1: {"prefill": 2, "decode": 2}}
    res = simulate(_steady(200.0, 1.0), MODEL, Scripted({"prefill": 1, "decode": 1}, 60.0, script), cfg)
    new = {r.pool: r.ready_at for r in res.replicas if r.requested_at == 60.0}
    assert new == {"prefill": 90.0, "decode": 120.0}


# -- the windows ---------------------------------------------------------------------------------
def test_peak_rate_is_the_busiest_minute_sliding_by_half_a_minute() -> None:
    arrivals = list(100.0 + np.arange(30))  # 30 arrivals in [100, 130)
    # minutes ending at 180, 150, 120, 90, 60 hold 10, 30, 20, 0, 0 of them
    assert peak_rate(arrivals, 180.0, 180.0) == pytest.approx(0.5)
    assert peak_rate(arrivals, 130.0, 30.0) == pytest.approx(1.0)  # shorter than a minute: its mean
    assert peak_rate(arrivals, 400.0, 180.0) == 0.0


def test_first_window_is_what_a_running_deployment_reported() -> None:
    t = np.array([0.0, 10.0, 20.0, 70.0, 200.0])
    w = first_window(list(t), np.array([100, 200, 300, 400, 500]), np.array([10, 20, 30, 40, 50]), 180.0)
    assert (w.window_seconds, w.requests, w.isl, w.osl, w.backlog) == (180.0, 4.0, 250.0, 25.0, 0.0)
    assert w.peak_rate == pytest.approx(3 / 60)
    assert (w.ttft_ms, w.itl_ms, w.request_duration_s) == (None, None, None)


def test_backlog_counts_requests_not_yet_in_prefill() -> None:
    # ten requests at once on one prefill worker (50 ms each): at 0.12 s two are done, the
    # third is in prefill and seven wait
    workload = Arrivals(t=np.zeros(10), isl=np.full(10, 200), osl=np.full(10, 2))
    ctl = Scripted({"prefill": 1, "decode": 1}, 0.12, {})
    simulate(workload, MODEL, ctl, CFG)
    assert ctl.windows[0].backlog == 7.0
    assert ctl.windows[0].peak_rate == pytest.approx(10 / 0.12)


def test_agg_backlog_counts_the_prefill_queue() -> None:
    cfg = EngineConfig(gpus_per_replica={"worker": 1}, mode="agg")
    workload = Arrivals(t=np.zeros(10), isl=np.full(10, 200), osl=np.full(10, 2))
    ctl = Scripted({"worker": 1}, 0.12, {})
    simulate(workload, MODEL, ctl, cfg)
    assert ctl.windows[0].backlog == 7.0


# -- the latency log and polls -----------------------------------------------------------------
def test_latency_log_quantiles_over_a_time_slice() -> None:
    log = LatencyLog()
    for i in range(10):
        log.add(TTFT, float(i), 10.0 * (i + 1))
    assert log.quantile(TTFT, 4.0, 9.0, 0.5) == pytest.approx(80.0)  # values 60..100
    assert log.quantile(TTFT, 4.0, 9.0, 0.9) == pytest.approx(96.0)
    assert log.count(TTFT, -1.0, 9.0) == 10
    assert log.quantile(ITL, 0.0, 100.0, 0.9) is None


class Poller(StaticController):
    poll_interval_seconds: Optional[float] = 30.0

    def __init__(self) -> None:
        super().__init__("poller", {"prefill": 1, "decode": 1})
        self.polls: list[tuple[float, Optional[float], int, Mapping[str, int], Mapping[str, int]]] = []

    def on_poll(
        self, t: float, latency: LatencyLog, provisioned: Mapping[str, int], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]:
        self.polls.append((t, latency.quantile(ITL, t - 60, t, 0.9), latency.count(TTFT, t - 60, t),
                           dict(provisioned), dict(ready)))
        return {"prefill": 2, "decode": 1} if t == 30.0 else None


def test_polls_see_the_latency_log_and_the_provisioned_and_ready_replicas() -> None:
    ctl = Poller()
    simulate(_steady(100.0, 1.0, osl=11), MODEL, ctl, CFG)
    t, itl, n_ttft, provisioned, ready = ctl.polls[0]
    assert (t, n_ttft, provisioned, ready) == (30.0, 30, {"prefill": 1, "decode": 1}, {"prefill": 1, "decode": 1})
    assert itl == pytest.approx(5.0)
    t, _, n_ttft, provisioned, ready = ctl.polls[1]
    assert (t, n_ttft, provisioned, ready) == (60.0, 60, {"prefill": 2, "decode": 1}, {"prefill": 1, "decode": 1})


# -- probe runs ----------------------------------------------------------------------------------
def test_a_probe_run_stops_once_the_target_is_out_of_reach() -> None:
    # 30 req/s of 50 ms prefills on one worker: 1.5x its capacity, TTFT grows without bound
    workload = _steady(100.0, 30.0, isl=2000)
    full = simulate(workload, MODEL, StaticController("s", {"prefill": 1, "decode": 1}), CFG)
    misses = int(np.sum(full.ttft_ms > 200.0))
    assert misses > 100 and not full.stopped
    probe = simulate(workload, MODEL, StaticController("s", {"prefill": 1, "decode": 1}), CFG,
                     stop=StopRule(ttft_ms=200.0, itl_ms=20.0, max_misses=100))
    assert probe.stopped
    assert int(np.sum(probe.ttft_ms > 200.0)) == 101  # stopped at the 101st miss
    # a run that passes is never stopped
    ok = simulate(workload, MODEL, StaticController("s", {"prefill": 2, "decode": 1}), CFG,
                  stop=StopRule(ttft_ms=200.0, itl_ms=20.0, max_misses=0))
    assert not ok.stopped and np.all(np.isfinite(ok.finish))
