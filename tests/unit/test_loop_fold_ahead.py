"""The next fold built ahead (`core.replay.next_fold_start`, `PlanLoop._ahead_job`): at a
fold start on the grid the loop switches to it instead of reading N - 1 windows of history
and replaying them, and decides exactly as the history refold did."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Mapping, Optional

from helpers import flat_profile, plan_dict
from scaler.core.observations import TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.replay import WorkerTick, fold_start, next_fold_start
from scaler.planfile import LoadedPlan
from scaler.service.loop import LoopSettings, PlanLoop

T = 60.0
N = 4  # warm-up intervals: a fold start every 4 windows
E = 1_800_000_000.0 - 2 * T  # a grid time two windows after a fold start (1.8e9 is a multiple of 240)


def _window(k: int) -> TrafficWindow:
    rate = 2.0 + (k * 5 % 13)
    return TrafficWindow(window_seconds=T, requests=rate * T, isl=2000.0 + 150 * (k % 4), osl=150.0,
                         ttft_ms=50.0, itl_ms=5.0, request_duration_s=3.0)


class Reader:
    def __init__(self) -> None:
        self.reads: list[str] = []

    async def traffic(self, plan: Plan, at: float) -> TrafficWindow:
        self.reads.append("traffic")
        return _window(round(at / T))

    async def workers(self, plan: Plan, at: Optional[float]) -> tuple[WorkerLoad, ...]:
        return ()

    async def history(self, plan: Plan, end: float, intervals: int) -> list[TrafficWindow]:
        self.reads.append(f"history:{intervals}")
        return [_window(round(end / T) - intervals + 1 + k) for k in range(intervals)]

    async def worker_history(self, plan: Plan, end: float, ticks: int) -> list[WorkerTick]:
        return []

    async def ready(self, plan: Plan, at: Optional[float], workers: tuple[WorkerLoad, ...]) -> Mapping[str, int]:
        return {}


class NoAhead(PlanLoop):
    """The loop as it was: every fold start read and replayed from history."""

    def _ahead_job(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        return None


def _run(cls: type[PlanLoop], ticks: int) -> tuple[list[dict], list[str]]:
    plan = Plan.model_validate(plan_dict(predictor="kalman", interval_seconds=int(T), sizing="attainment"))
    reader = Reader()
    loop = cls(LoadedPlan(path=Path("p.yaml"), plan=plan, profile=flat_profile()), reader,
               settings=LoopSettings(settle_seconds=5, warmup_intervals=N), clock=lambda: E + 10)

    async def go() -> list[dict]:
        out = [(await loop.warm_up(E)).to_dict()]
        for k in range(1, ticks + 1):
            out.append((await loop.tick_throughput(E + k * T)).to_dict())
        return out

    return asyncio.run(go()), reader.reads


def test_the_grid_arithmetic() -> None:
    assert fold_start(E, T, N) == E - 2 * T - 3 * T
    # the fold after: from the window after the last fold start on
    assert next_fold_start(E, T, N) == E - T
    assert next_fold_start(E + 2 * T, T, N) == E + 3 * T  # E + 2T is a fold start


def test_switching_to_the_fold_built_ahead_decides_as_the_history_refold() -> None:
    ticks = 3 * N + 1  # three fold starts
    ahead, reads = _run(PlanLoop, ticks)
    refold, old_reads = _run(NoAhead, ticks)
    assert ahead == refold
    assert len(ahead) == ticks + 1
    # history only at the warm-up; the old loop read it again at each of the three fold starts
    assert [r for r in reads if r.startswith("history")] == ["history:6"]
    assert [r for r in old_reads if r.startswith("history")] == ["history:6", "history:3", "history:3", "history:3"]
