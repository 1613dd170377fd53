"""Restart safety, pure: which windows a decision loop reads, and replaying them.

Throughput windows end on a fixed grid (multiples of the plan's interval since the Unix
epoch). A scaler started at any time therefore reads exactly the windows a never-stopped
scaler read, and replaying the last N of them through `decide` rebuilds the same planner
state, so the next decision is the same one (`replay`). The load path's regressions come
back from per-worker history on the load grid (`rebuild_load`); its decisions are not
replayed.

Everything here is a function of its arguments: no clock, no I/O. The decision loop
(`scaler.service.loop`) asks it what to read and when, fetches, and sleeps.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from scaler.core.decision import Decision
from scaler.core.interpolation import PerfModel
from scaler.core.load_scaling import LoadState, rebuild_load_state
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import PlannerState, decide, new_state
from scaler.core.predictors import memory

# One load tick of per-worker history: (tick time, the workers read at it).
WorkerTick = tuple[float, tuple[WorkerLoad, ...]]


# -- the grid ----------------------------------------------------------------------------
def grid_end(t: float, interval: float) -> float:
    """The latest multiple of `interval` (since the epoch) at or before t."""
    return math.floor(t / interval) * interval


def latest_closed(now: float, interval: float, settle: float) -> float:
    """End of the newest window that closed at least `settle` seconds before `now`."""
    return grid_end(now - settle, interval)


def warmup_intervals(plan: Plan) -> int:
    """Windows to replay at start: covers the predictor's memory (bounded)."""
    return min(200, max(32, memory(plan.spec.scaling.throughput.predictor)))


def catch_up(next_end: float, latest: float, interval: float, intervals: int) -> float:
    """The window to read next. After a long outage, skip to the oldest of the `intervals`
    windows ending at `latest`: the windows a restart would replay."""
    return max(next_end, latest - intervals * interval)


def after_failed_read(next_end: float, latest: float, interval: float) -> float:
    """The window to read after reading `next_end` failed: the same one (what a restart
    would replay) while it is the newest closed one; once a newer window has closed, the
    one after it."""
    return next_end + interval if next_end < latest else next_end


def load_history_end(end: float, load_interval: float) -> float:
    """The last load tick strictly before `end` (the load grid's own multiples)."""
    last = grid_end(end, load_interval)
    return last - load_interval if last >= end else last


def load_history_ticks(plan: Plan) -> int:
    """Load ticks of history that refill the load path's regression windows."""
    return plan.spec.scaling.load.window + 1


# -- observations ------------------------------------------------------------------------
def ready_replicas(workers: tuple[WorkerLoad, ...]) -> dict[str, int]:
    """Workers reporting per pool: the count Little's law and the load path need."""
    seen: dict[str, set[str]] = {}
    for w in workers:
        seen.setdefault(w.pool, set()).add(w.worker_id)
    return {pool: len(ids) for pool, ids in seen.items()}


def throughput_observation(
    plan: Plan, end: float, window: TrafficWindow, workers: tuple[WorkerLoad, ...]
) -> Observation:
    """What a live throughput tick decides on: the window ending at `end` and the workers
    read then. With load scaling on, the load ticks own the per-worker signal (workers read
    at a past window end would feed the regressions stale, duplicate points), so only the
    ready counts go in."""
    return Observation(
        timestamp=end,
        traffic=window,
        workers=() if plan.spec.scaling.load.enabled else workers,
        ready_replicas=ready_replicas(workers),
    )


def load_observation(now: float, workers: tuple[WorkerLoad, ...]) -> Observation:
    """What a live load tick decides on."""
    return Observation(timestamp=now, workers=workers, ready_replicas=ready_replicas(workers))


def rebuild_load(plan: Plan, history: Sequence[WorkerTick]) -> LoadState:
    """The load path's regressions from per-worker history (oldest first)."""
    return rebuild_load_state(plan, [Observation(timestamp=t, workers=w) for t, w in history])


# -- replay ------------------------------------------------------------------------------
def replay(
    plan: Plan,
    model: Optional[PerfModel],
    windows: Sequence[TrafficWindow],
    workers: tuple[WorkerLoad, ...],
    end: float,
    load_history: Sequence[WorkerTick] = (),
) -> tuple[PlannerState, Optional[Decision]]:
    """A fresh planner state after the throughput `windows` (oldest first, the last one
    ending at `end`), and the decision on the last one: the state and decision a scaler
    that never stopped has after that window. None when there are no windows.

    Worker counts are known for the last window only (history has none); they feed the
    correction factors, which are recomputed each window anyway. `load_history` (per-worker
    load up to `end`) refills the load path's regressions before the last window."""
    interval = float(plan.spec.scaling.throughput.interval_seconds)
    state = new_state(plan)
    decision: Optional[Decision] = None
    first_end = end - (len(windows) - 1) * interval
    for i, window in enumerate(windows):
        t = first_end + i * interval
        if i < len(windows) - 1:
            obs = Observation(timestamp=t, traffic=window)
        else:
            if load_history:
                state.load = rebuild_load(plan, load_history)
            obs = throughput_observation(plan, t, window, workers)
        decision = decide(plan, model, obs, state)
    return state, decision
