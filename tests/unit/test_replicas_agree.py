"""Two decision loops started at different times decide alike on the same windows: the
state restarts on a grid (core.replay.fold_start) and ready counts stay out of the fold.
In-memory reader and clock; the end-to-end version is
tests/integration/prometheus/test_two_replicas.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Mapping, Optional

from helpers import flat_profile, plan_dict
from scaler.core.observations import TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.replay import WorkerTick
from scaler.errors import MetricsUnavailable
from scaler.planfile import LoadedPlan
from scaler.service.loop import LoopSettings, PlanLoop

T = 60.0
N = 8
E = 1_800_000_000.0  # a multiple of N x T


def _window(k: int) -> TrafficWindow:
    rate = 20.0 + 3.0 * (k % 5) + (15.0 if k % 11 == 0 else 0.0)
    return TrafficWindow(window_seconds=T, requests=rate * T, isl=2500.0 + 100 * (k % 3), osl=200.0,
                         ttft_ms=90.0 + 10 * (k % 4), itl_ms=6.0, request_duration_s=3.0)


class Reader:
    def __init__(self, windows: dict[float, TrafficWindow], ready: dict[float, dict[str, int]]) -> None:
        self.windows, self.ready_at = windows, ready

    async def traffic(self, plan: Plan, at: float) -> TrafficWindow:
        if at not in self.windows:
            raise MetricsUnavailable(f"no data at {at}")
        return self.windows[at]

    async def workers(self, plan: Plan, at: Optional[float]) -> tuple[WorkerLoad, ...]:
        return ()

    async def history(self, plan: Plan, end: float, intervals: int) -> list[TrafficWindow]:
        return [self.windows[end - (intervals - 1 - k) * T] for k in range(intervals)]

    async def worker_history(self, plan: Plan, end: float, ticks: int) -> list[WorkerTick]:
        return []

    async def ready(self, plan: Plan, at: Optional[float], workers: tuple[WorkerLoad, ...]) -> Mapping[str, int]:
        return self.ready_at.get(at or 0.0, {})


def test_loops_started_at_different_times_decide_alike() -> None:
    """Attainment sizing with live ready counts that differ from the decisions: A starts
    early, B 13 windows later (off the fold grid); every decision after B's start is equal
    field by field."""
    ends = [E + k * T for k in range(-30, 40)]
    windows = {t: _window(k) for k, t in enumerate(ends)}
    ready = {t: {"prefill": 2 + k % 3, "decode": 1 + k % 2} for k, t in enumerate(ends)}
    plan = Plan.model_validate(plan_dict(predictor="kalman", interval_seconds=int(T), sizing="attainment"))
    loaded = LoadedPlan(path=Path("plan.yaml"), plan=plan, profile=flat_profile())
    now = [0.0]

    def loop() -> PlanLoop:
        return PlanLoop(loaded, Reader(windows, ready), settings=LoopSettings(settle_seconds=15.0, warmup_intervals=N),
                        clock=lambda: now[0])

    async def run() -> int:
        a, b = loop(), loop()
        await a.warm_up(E + T)
        compared = 0
        for k in range(2, 38):
            end = E + k * T
            now[0] = end + 15.0
            if k == 14:
                got = (await b.warm_up(end)).to_dict()
                want = (await a.tick_throughput(end)).to_dict()
            elif k > 14:
                want, got = (await a.tick_throughput(end)).to_dict(), (await b.tick_throughput(end)).to_dict()
            else:
                await a.tick_throughput(end)
                continue
            assert got == want, f"window {k}"
            compared += 1
        return compared

    assert asyncio.run(run()) == 24
