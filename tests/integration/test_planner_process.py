"""Decisions computed in planner processes (`serve --planner-processes`, scaler.service.compute):
the same decisions as in threads, the model sent once per profile, a killed process
restarted with its jobs failed as PlannerUnavailable, errors raised as their own type."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Iterator, Mapping, Optional

import pytest

from helpers import flat_profile, plan_dict
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import new_state
from scaler.core.replay import WorkerTick
from scaler.errors import PlannerUnavailable
from scaler.planfile import LoadedPlan
from scaler.service.compute import Packed, ProcessCompute, ThreadCompute
from scaler.service.loop import LoopSettings, PlanLoop

T = 60.0
E = 1_800_000_000.0  # a grid time


def _window(k: int) -> TrafficWindow:
    rate = 4.0 + (k * 7 % 11)
    return TrafficWindow(window_seconds=T, requests=rate * T, isl=2500.0 + 100 * (k % 5), osl=150.0,
                         ttft_ms=50.0, itl_ms=5.0, request_duration_s=3.0)


class Reader:
    async def traffic(self, plan: Plan, at: float) -> TrafficWindow:
        return _window(round(at / T))

    async def workers(self, plan: Plan, at: Optional[float]) -> tuple[WorkerLoad, ...]:
        return ()

    async def history(self, plan: Plan, end: float, intervals: int) -> list[TrafficWindow]:
        return [_window(round(end / T) - intervals + 1 + k) for k in range(intervals)]

    async def worker_history(self, plan: Plan, end: float, ticks: int) -> list[WorkerTick]:
        return []

    async def ready(self, plan: Plan, at: Optional[float], workers: tuple[WorkerLoad, ...]) -> Mapping[str, int]:
        return {}


def _loaded(name: str, sizing: str = "attainment") -> LoadedPlan:
    plan = Plan.model_validate(plan_dict(name=name, predictor="kalman", interval_seconds=int(T), sizing=sizing))
    return LoadedPlan(path=Path(f"{name}.yaml"), plan=plan, profile=flat_profile())


async def _decisions(compute: object, names: list[str], ticks: int) -> list[list[dict]]:
    out = []
    for name in names:
        loop = PlanLoop(_loaded(name), Reader(), settings=LoopSettings(settle_seconds=5, warmup_intervals=6),
                        clock=lambda: E + 10, compute=compute)  # type: ignore[arg-type]
        got = [(await loop.warm_up(E)).to_dict()]
        for k in range(1, ticks + 1):
            got.append((await loop.tick_throughput(E + k * T)).to_dict())
        out.append(got)
    return out


@pytest.fixture(scope="module")
def shared_compute() -> Iterator[ProcessCompute]:
    """One planner process for the tests that do not kill it (a spawn costs 1-4 s here)."""
    compute = ProcessCompute(1)
    compute.start()
    yield compute
    asyncio.run(compute.close())


async def test_the_same_decisions_as_in_threads_across_a_fold_restart(shared_compute: ProcessCompute) -> None:
    names = ["a", "b", "c"]
    # 8 ticks with warmupIntervals 6 cross a fold start on the 6 x 60 s grid
    in_process = await _decisions(shared_compute, names, 8)
    in_threads = await _decisions(ThreadCompute(), names, 8)
    assert in_process == in_threads
    assert len(in_process[0]) == 9
    (proc,) = [p for p in shared_compute._procs if p is not None]
    assert len(proc.models) == 1  # three plans, one profile: the model was sent once
    assert len(proc.plans) >= 3


async def test_a_killed_planner_fails_its_job_and_is_started_again() -> None:
    compute = ProcessCompute(1)
    await asyncio.to_thread(compute.start)
    try:
        loaded = _loaded("a")
        handle = compute.register(loaded.plan, loaded.model)
        obs = Observation(timestamp=E, traffic=_window(1))
        (state, decision), seconds = await compute.run(handle, "decide_window", obs, new_state(loaded.plan))
        assert decision.pools["prefill"].replicas >= 1 and seconds > 0
        assert isinstance(state, Packed)  # states stay pickled in the serving process
        (pid,) = compute.pids()
        # a long replay in flight when the process dies fails as PlannerUnavailable
        long = [_window(k) for k in range(1500)]
        job = asyncio.ensure_future(compute.run(handle, "advance", None, long, Observation(timestamp=E + 1500 * T, traffic=_window(0)), None))
        await asyncio.sleep(0.3)
        assert not job.done()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(PlannerUnavailable):
            await asyncio.wait_for(job, 10)
        # the next job starts a new process, which gets the plan and model again
        (_, again), _ = await compute.run(handle, "decide_window", obs, new_state(loaded.plan))
        assert again.to_dict() == decision.to_dict()
        assert compute.restarts == 1 and compute.pids() != [pid]
    finally:
        await compute.close()
    assert compute.pids() == []


async def test_an_error_in_the_planner_is_raised_as_its_own_type(shared_compute: ProcessCompute) -> None:
    compute = shared_compute
    loaded = _loaded("a")
    handle = compute.register(loaded.plan, loaded.model)
    with pytest.raises(AttributeError):
        await compute.run(handle, "decide_window", "not an observation", new_state(loaded.plan))
    # the process is still there for the next job
    (_, decision), _ = await compute.run(handle, "decide_window", Observation(timestamp=E, traffic=_window(2)), new_state(loaded.plan))
    assert decision.pools["decode"].replicas >= 1
    assert compute.restarts == 0
