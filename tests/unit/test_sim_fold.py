"""The simulator's plan policy decides as `dynplan serve`'s loop does: the same windows, ready
counts and load ticks give field-for-field the same decisions from `PlannerController` and
from a real `PlanLoop` reading them from memory, across fold starts (core.replay.fold_read).
The windows are synthetic, so the loop and the controller see exactly the same values."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping, Optional

from helpers import flat_profile, plan_dict
from scaler.core.interpolation import perf_model
from scaler.core.observations import TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.replay import WorkerTick
from scaler.errors import MetricsUnavailable
from scaler.planfile import LoadedPlan
from scaler.service.loop import LoopSettings, PlanLoop
from scaler.sim.policies import PlannerController

T = 60.0
LOAD_T = 10.0
N = 8  # fold starts at multiples of 8 x 60 s; the one at 960 s forgets windows 1 to 8
WINDOWS = 30
PROFILE = flat_profile(40000.0, 10000.0, ttft_ms=50.0, itl_ms=5.0)


def _window(k: int) -> TrafficWindow:
    rate = 8.0 + 5.0 * (k % 4) + (20.0 if k % 7 == 0 else 0.0)
    return TrafficWindow(window_seconds=T, requests=rate * T, isl=2500.0 + 100 * (k % 3), osl=150.0,
                         ttft_ms=90.0 + 40 * (k % 5), itl_ms=6.0 + k % 3, request_duration_s=2.0,
                         peak_rate=rate * 1.5)


def _ready(t: float) -> dict[str, int]:
    # live ready counts that lag and differ from the decisions: only the decision sees them
    k = int(t // T)
    return {"prefill": 1 + k % 3, "decode": 1 + (k // 2) % 2}


def _workers(t: float) -> tuple[WorkerLoad, ...]:
    k = int(t // LOAD_T)
    return (
        WorkerLoad("p0", "prefill", active_prefill_tokens=1000.0 + 400 * (k % 6), last_ttft_ms=80.0 + 15 * (k % 6),
                   last_isl=2500.0),
        WorkerLoad("p1", "prefill", active_prefill_tokens=600.0 + 300 * (k % 4), last_ttft_ms=70.0 + 20 * (k % 4),
                   last_isl=2600.0),
        WorkerLoad("d0", "decode", active_decode_blocks=200.0 + 50 * (k % 5), last_itl_ms=5.0 + 1.5 * (k % 5)),
    )


class Memory:
    """The loop's Reader over the same windows: history holds none before the first one."""

    def __init__(self, windows: dict[float, TrafficWindow]) -> None:
        self.windows = windows

    async def traffic(self, plan: Plan, at: float) -> TrafficWindow:
        if at not in self.windows:
            raise MetricsUnavailable(f"no data at {at}")
        return self.windows[at]

    async def history(self, plan: Plan, end: float, intervals: int) -> list[TrafficWindow]:
        out = []
        for k in range(intervals):
            if end - k * T not in self.windows:
                break
            out.append(self.windows[end - k * T])
        return out[::-1]

    async def workers(self, plan: Plan, at: Optional[float]) -> tuple[WorkerLoad, ...]:
        return _workers(at or 0.0)

    async def worker_history(self, plan: Plan, end: float, ticks: int) -> list[WorkerTick]:
        return []

    async def ready(self, plan: Plan, at: Optional[float], workers: tuple[WorkerLoad, ...]) -> Mapping[str, int]:
        return _ready(at or 0.0)


def _events(load: bool) -> list[tuple[float, str]]:
    """The engine's order: ticks by time, a window before a load tick at the same instant.
    Load ticks from the first window on: the loop starts there (its warm-up), and its first
    load tick is the one at that instant (core.replay.first_load_tick with no settle)."""
    events = [(k * T, "throughput") for k in range(1, WINDOWS + 1)]
    if load:
        events += [(j * LOAD_T, "load") for j in range(int(T / LOAD_T), int(WINDOWS * T / LOAD_T) + 1)]
    return sorted(events, key=lambda e: (e[0], e[1] != "throughput"))


def _controller(plan: Plan, intervals: int = N) -> list[dict[str, Any]]:
    ctl = PlannerController("plan", plan, perf_model(PROFILE), fold_intervals=intervals)
    for t, kind in _events(plan.spec.scaling.load.enabled):
        if kind == "throughput":
            ctl.on_traffic(t, _window(int(t // T)), _ready(t))
        else:
            ctl.on_load(t, _workers(t), _ready(t))
    assert not ctl.skipped
    return ctl.decision_log()


def _loop(plan: Plan) -> list[dict[str, Any]]:
    windows = {k * T: _window(k) for k in range(1, WINDOWS + 1)}
    loaded = LoadedPlan(path=Path("plan.yaml"), plan=plan, profile=PROFILE)
    loop = PlanLoop(loaded, Memory(windows), settings=LoopSettings(settle_seconds=0.0, warmup_intervals=N),
                    clock=lambda: 0.0)

    async def run() -> list[dict[str, Any]]:
        out = []
        for t, kind in _events(plan.spec.scaling.load.enabled):
            if kind == "load":
                decision = await loop.tick_load(t)
            elif t == T:
                decision = await loop.warm_up(t)  # the first window: no history before it
            else:
                decision = await loop.tick_throughput(t)
            out.append(decision.to_dict())
        return out

    return asyncio.run(run())


def _plan(**changes: Any) -> Plan:
    return Plan.model_validate(plan_dict(predictor="kalman", interval_seconds=int(T), **changes))


def test_attainment_sizing_decides_alike_in_the_simulator_and_the_loop() -> None:
    plan = _plan(sizing="attainment")
    sim, live = _controller(plan), _loop(plan)
    assert len(sim) == len(live) == WINDOWS
    for k, (a, b) in enumerate(zip(sim, live), start=1):
        assert a == b, f"window {k}"
    # the fold start at window 16 forgets windows 1-8: a state that never restarts decides
    # otherwise after it (so the comparison above did cross a fold start that matters)
    never = _controller(plan, intervals=10_000)
    assert never[:15] == sim[:15]
    assert never[15:] != sim[15:]


def test_throughput_and_load_decide_alike_in_the_simulator_and_the_loop() -> None:
    """Load ticks continue from the state of the latest decision, the load path's state goes
    into the window's decision and not into the fold."""
    plan = _plan(sizing="attainment", load=True)
    sim, live = _controller(plan), _loop(plan)
    assert len(sim) == len(live) == WINDOWS + (WINDOWS - 1) * int(T / LOAD_T) + 1
    for i, (a, b) in enumerate(zip(sim, live)):
        assert a == b, f"event {i} at {a['timestamp']}"
    # the load path moved the replicas, so its state did carry from tick to tick
    assert len({d["pools"]["prefill"]["replicas"] for d in sim}) > 1
    assert {d["reason"] for d in sim} - {"load_insufficient_data"}
