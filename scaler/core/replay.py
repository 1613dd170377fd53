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

import copy
import math
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence

from scaler.core.decision import Decision
from scaler.core.interpolation import PerfModel
from scaler.core.load_scaling import LoadState, rebuild_load_state
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad, window_problem
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
    """The window to read after reading `next_end` failed: the same one. The next attempt
    reads every window from it to the newest closed one at once (`windows_due`), so however
    long Prometheus was away, one successful read decides the newest window."""
    return next_end


def retry_delay(interval: float) -> float:
    """Seconds between attempts after a failed read: a quarter interval, at most 5 s.

    The recovery bound: a read that succeeds again is attempted at most this long after
    Prometheus heals (plus the failing read's own deadline, if one was in flight), and
    that read decides the newest window; 5 s <= interval / 2 for every plan (interval >= 10 s)."""
    return min(5.0, interval / 4)


def windows_due(now: float, next_end: float, interval: float, settle: float, horizon: int) -> Optional[tuple[float, float]]:
    """(first, last) window ends to read now, or None when `next_end` has not settled yet.

    `last` is the newest closed window; `first` is `next_end`, or the oldest of the
    `horizon` windows ending at `last` after a long outage (`catch_up`). A loop more than
    one interval behind (a slow Prometheus, a shared query pool) reads them all in one
    history read and decides the newest, instead of queueing one tick per window: its
    lateness is bounded by one read, whatever the backlog."""
    if now < next_end + settle:
        return None
    last = latest_closed(now, interval, settle)
    return catch_up(next_end, last, interval, horizon), last


def decision_lag(made_at: float, window_end: float, settle: float) -> float:
    """How late a throughput decision is: made at minus (window end + settle delay)."""
    return made_at - window_end - settle


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


# -- one window, or none -------------------------------------------------------------------
@dataclass(frozen=True)
class Skipped:
    """A window no decision was made on, and why: a `window_problem` code (its data is
    outside the physical limits) or `decide_error` (decide raised on it)."""

    end: float
    reason: str
    detail: str


def decide_window(
    plan: Plan, model: Optional[PerfModel], obs: Observation, state: PlannerState
) -> tuple[PlannerState, Decision | Skipped]:
    """`decide` as one transaction: (the new state, the decision), or (`state` untouched,
    why the window was skipped). A window outside the physical limits is skipped before
    anything sees it; one that makes decide raise is skipped after, with the state it had
    before, so a poisoned window costs one interval and is never retried. The decision
    loop and `replay` both decide through here, so a restart skips the same windows."""
    if obs.traffic is not None:
        problem = window_problem(obs.traffic)
        if problem is not None:
            return state, _rejected(obs.timestamp, obs.traffic, problem)
    trial = _copy_state(state)
    try:
        decision = decide(plan, model, obs, trial)
    except Exception as exc:  # noqa: BLE001 - one window's data must not stop the plan
        return state, _decide_error(obs.timestamp, exc)
    return trial, decision


def _copy_state(state: PlannerState) -> PlannerState:
    # Decisions are frozen values, replaced and never changed: shared, not copied (the copy
    # then takes about 0.15 ms instead of 0.2-0.7 ms).
    return copy.deepcopy(state, {id(d): d for d in (state.last, state.throughput) if d is not None})


def _rejected(end: float, window: TrafficWindow, problem: str) -> Skipped:
    return Skipped(end, problem, f"window ending at {end:.0f} rejected: {problem} ({window})")


def _decide_error(end: float, exc: Exception) -> Skipped:
    return Skipped(end, "decide_error", f"window ending at {end:.0f}: {type(exc).__name__}: {exc}")


# -- replay ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replayed:
    state: PlannerState
    decision: Optional[Decision]   # on the newest window decided; None if none was
    skipped: tuple[Skipped, ...]   # windows skipped on the way, oldest first


def replay_windows(
    plan: Plan,
    model: Optional[PerfModel],
    windows: Sequence[TrafficWindow],
    workers: tuple[WorkerLoad, ...],
    end: float,
    load_history: Sequence[WorkerTick] = (),
    *,
    ready: Optional[Mapping[str, int]] = None,
    state: Optional[PlannerState] = None,
) -> Replayed:
    """`state` (default: a fresh one) after the throughput `windows` (oldest first, the
    last one ending at `end`), and the decision on the newest: what a scaler that never
    stopped has after that window. Each window is decided or skipped as `decide_window`
    does, so windows the live loop skipped are skipped here too.

    Worker counts are known for the newest usable window only (history has none); `ready`
    (default: counted from `workers`) goes with it. They feed the correction factors, which
    are recomputed each window anyway. `load_history` (per-worker load up to `end`) refills
    the load path's regressions before that window."""
    interval = float(plan.spec.scaling.throughput.interval_seconds)
    first_end = end - (len(windows) - 1) * interval
    usable = [i for i, w in enumerate(windows) if window_problem(w) is None]
    last = usable[-1] if usable else -1
    failed: dict[int, Skipped] = {}
    # Optimistic: decide in place on one copy of the starting state, no copy per window (a
    # warm-up replays 32 or more). A window decide raises on is rare: the replay then
    # starts over from the starting state with that window skipped, which gives exactly
    # what deciding window by window through `decide_window` gives.
    while True:
        current = new_state(plan) if state is None else _copy_state(state)
        decision: Optional[Decision] = None
        skipped: list[Skipped] = []
        try:
            for i, window in enumerate(windows):
                t = first_end + i * interval
                if i in failed:
                    skipped.append(failed[i])
                    continue
                problem = window_problem(window)
                if problem is not None:
                    skipped.append(_rejected(t, window, problem))
                    continue
                if i != last:
                    obs = Observation(timestamp=t, traffic=window)
                else:
                    if load_history:
                        current.load = rebuild_load(plan, load_history)
                    obs = throughput_observation(plan, t, window, workers)
                    if ready is not None:
                        obs = replace(obs, ready_replicas=dict(ready))
                try:
                    decision = decide(plan, model, obs, current)
                except Exception as exc:  # noqa: BLE001 - skipped, as decide_window does
                    failed[i] = _decide_error(t, exc)
                    raise _StartOver() from exc
        except _StartOver:
            continue
        return Replayed(current, decision, tuple(skipped))


class _StartOver(Exception):
    """A replayed window made decide raise: replay again without it."""


def replay(
    plan: Plan,
    model: Optional[PerfModel],
    windows: Sequence[TrafficWindow],
    workers: tuple[WorkerLoad, ...],
    end: float,
    load_history: Sequence[WorkerTick] = (),
) -> tuple[PlannerState, Optional[Decision]]:
    """`replay_windows` from a fresh state: (state, decision on the newest window)."""
    done = replay_windows(plan, model, windows, workers, end, load_history)
    return done.state, done.decision
