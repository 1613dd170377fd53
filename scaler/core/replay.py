"""Restart safety, pure: which windows a decision loop reads, and replaying them.

Throughput windows end on a fixed grid (multiples of the plan's interval since the Unix
epoch), and the state they are decided on restarts on a coarser one (`fold_start`: every
N windows), folding in only what history holds (`advance`). A scaler started at any time
therefore reads exactly the windows a never-stopped scaler folded, rebuilds the same state
and makes the same next decision; two replicas decide alike. Load ticks sit on their own
grid, read at their instant (`load_settle`, `first_load_tick`, `next_load_tick`); the load
path's regressions come back from per-worker history (`rebuild_load`), and a load-only
plan's last decisions too (`replay_load`).

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


def load_settle(settle: float, load_interval: float) -> float:
    """Delay after a load grid instant before it is read at that instant: the throughput
    settle, at most a quarter load interval. Reading a fixed past instant, not "now", is what
    makes two replicas read the same samples, and the delay lets the scrapes up to it land."""
    return min(settle, load_interval / 4)


def first_load_tick(window_end: float, settle: float, load_interval: float, load_settle: float) -> float:
    """The first load grid instant a loop reads after deciding the window ending at
    `window_end`. Events run in the order they fall due (a window at end + settle, a load
    tick at its instant + load settle; a tie goes to the window), so this is the first load
    tick due at or after the window: the ones before it were observed before the window was
    decided, and a warm-up reads them as history."""
    return math.ceil((window_end + settle - load_settle) / load_interval) * load_interval


def next_load_tick(next_tick: float, now: float, load_interval: float, load_settle: float, horizon: int) -> float:
    """The load tick to read next: `next_tick`, each missed one in turn so the regressions
    see every grid point, but no more than `horizon` ticks behind the newest due one."""
    return max(next_tick, grid_end(now - load_settle, load_interval) - (horizon - 1) * load_interval)


def load_history_ticks(plan: Plan) -> int:
    """Load ticks of history that refill the load path's regression windows."""
    return plan.spec.scaling.load.window + 1


def load_replay_ticks(plan: Plan) -> int:
    """Load ticks a load-only plan's warm-up decides again after refilling the regressions
    (`replay_load`): one regression window's worth."""
    return plan.spec.scaling.load.window


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


# -- replicas that agree: the fold restarts on a fixed grid ---------------------------------
def fold_start(end: float, interval: float, intervals: int) -> float:
    """End of the oldest window in the state that decides the window ending at `end`.

    Learned values with a long memory (the attainment sizing's slowdowns and bursts, the
    queueing factor) feed back into the replicas they size, so two loops started at
    different times can settle on different values for good (measured: a learned prefill
    slowdown of 1.39 in one replica, 1.0 in the other, 5 prefill replicas against 4). So the
    state never remembers further back than a fixed grid instant: at every multiple of
    `intervals` x `interval` since the epoch it starts over from the `intervals` - 1 windows
    before it, and in between each window is folded in. The state a window is decided on is
    then a function of the windows since that instant alone, the same in every replica and
    after any restart."""
    return grid_end(end, intervals * interval) - (intervals - 1) * interval


def fold_windows(end: float, interval: float, intervals: int) -> int:
    """Windows a warm-up at `end` reads: from `fold_start` to `end`, N to 2N - 1."""
    return round((end - fold_start(end, interval, intervals)) / interval) + 1


@dataclass(frozen=True)
class FoldRead:
    """What to read to decide one window on the fold (`fold_read`)."""

    extend: bool  # a fold held goes on: fold the windows read into it (else start a new one)
    count: int    # windows to read, oldest first, the last ending at the window decided
    behind: int   # of them, windows after the fold held, before the one decided (caught up)
    from_next: bool = False  # the fold that goes on is the next one, built ahead (`next_fold_start`)


def fold_read(
    end: float,
    first: float,
    interval: float,
    intervals: int,
    held: Optional[tuple[float, float]],
    held_next: Optional[tuple[float, float]] = None,
) -> FoldRead:
    """The windows to read to decide the window ending at `end`, the windows from `first`
    to it being new (`first` < `end`: the loop fell behind), for a loop holding a fold of
    the windows ending from held[0] to held[1] (None: no fold), and maybe the next fold,
    built ahead, from held_next[0] to held_next[1].

    The fold held goes on while it starts at `fold_start(end)` and ends just before
    `first`: only the new windows are read. At a new fold start on the grid the next fold
    goes on in the same way, if one was built ahead. Otherwise (a first window, a gap) the
    fold is read again from history: every window from `fold_start(end)` on. `dynplan
    serve`'s loop and the simulator both schedule their folds here, so they fold the same
    windows."""
    if interval <= 0:  # no throughput grid: the window alone
        return FoldRead(False, 1, 0)
    behind = max(0, round((end - first) / interval))
    start = fold_start(end, interval, intervals)
    extend = held is not None and held == (start, first - interval)
    from_next = not extend and held_next is not None and held_next == (start, first - interval)
    if extend or from_next:
        return FoldRead(True, behind + 1, behind, from_next)
    return FoldRead(False, round((end - start) / interval) + 1, behind)


def next_fold_start(end: float, interval: float, intervals: int) -> float:
    """End of the oldest window of the fold after the one that decides `end`: the next fold
    (from the next multiple of `intervals` x `interval` on) holds the windows from here on,
    so a loop can fold them in as they come (`advance`'s `ahead`) and switch to it at the
    grid instant instead of reading and replaying `intervals` - 1 windows at once."""
    return fold_start(end + intervals * interval, interval, intervals)


def fold_in(
    plan: Plan, model: Optional[PerfModel], state: Optional[PlannerState], windows: Sequence[TrafficWindow], first_end: float
) -> PlannerState:
    """`state` (None: a fresh one) with `windows` (oldest first, the first ending at
    `first_end`) folded in one by one, each decided as the fold decides it (`advance`): a
    window `decide_window` skips leaves the state as it was."""
    interval = float(plan.spec.scaling.throughput.interval_seconds)
    current = new_state(plan) if state is None else state
    for i, window in enumerate(windows):
        current, _ = decide_window(plan, model, Observation(timestamp=first_end + i * interval, traffic=window), current)
    return current


def fold_held(read: FoldRead, held: Optional[tuple[float, float]], end: float, windows: int, interval: float) -> tuple[float, float]:
    """The ends of the oldest and newest windows of the fold after `end` was decided on
    the `windows` windows `read` asked for (history may hold fewer: from its oldest one)."""
    if read.extend and held is not None:
        return held[0], end
    return end - (windows - 1) * interval, end


@dataclass(frozen=True)
class Advanced:
    """One window decided on the fold of the windows before it."""

    state: PlannerState            # after the decision: what load ticks continue from
    shadow: PlannerState           # the fold, now including this window (the next one is decided on it)
    decision: Decision | Skipped   # on this window, or why it was skipped
    previous: Optional[Decision]   # the fold's decision on the window before (None if none)
    skipped: tuple[Skipped, ...]   # windows skipped in the fold, oldest first
    ahead: Optional[PlannerState] = None  # the next fold built ahead (`advance`'s `ahead`), if asked for


def advance(
    plan: Plan,
    model: Optional[PerfModel],
    shadow: Optional[PlannerState],
    prior: Sequence[TrafficWindow],
    obs: Observation,
    load: Optional[LoadState],
    ahead: Optional[tuple[Optional[PlannerState], Sequence[TrafficWindow], float]] = None,
) -> Advanced:
    """Fold `prior` (the windows just before `obs`'s, oldest first) into `shadow` (None: a
    fresh state), decide `obs` (the newest window with what was observed at it: worker
    counts, and `load`, the load path's live state) on that fold, and fold the newest window
    into it as well. With `ahead` = (the next fold so far or None, windows, end of the first
    of them), those windows are also folded into the next fold (`fold_in`), returned as
    `Advanced.ahead`.

    The fold holds the windows as history holds them: no worker counts and no load path, so
    a warm-up (which reads them from history) rebuilds it exactly. What was observed only
    live (ready counts, the load path) goes into the decision, not into what later windows
    learn from."""
    assert obs.traffic is not None, "advance decides a throughput window"
    interval = float(plan.spec.scaling.throughput.interval_seconds)
    if prior:
        before = replay_windows(plan, model, prior, (), obs.timestamp - interval, state=shadow)
    else:
        before = Replayed(new_state(plan) if shadow is None else shadow, None, ())
    base = _copy_state(before.state)
    base.load = load
    state, result = decide_window(plan, model, obs, base)
    folded, _ = decide_window(plan, model, Observation(timestamp=obs.timestamp, traffic=obs.traffic), before.state)
    next_fold = None if ahead is None else fold_in(plan, model, ahead[0], ahead[1], ahead[2])
    return Advanced(state, folded, result, before.decision, before.skipped, next_fold)


def replay_load(
    plan: Plan,
    model: Optional[PerfModel],
    history: Sequence[WorkerTick],
    ready: Sequence[Mapping[str, int]],
) -> tuple[PlannerState, tuple[Skipped, ...]]:
    """A load-only plan's state from per-worker history (oldest first) and the ready counts
    at its last len(`ready`) ticks: the ticks before those refill the regressions, those
    are decided as live load ticks were. So the load path's last decisions (a scale-up in
    flight, a pending scale-down's streak) come back too, not only its regressions: a
    replica started while a replica asked for is not ready yet holds it, as the other
    replica does, instead of starting over from the ready count. A decision made more
    than len(`ready`) ticks ago that is still in flight is not recovered."""
    first = len(history) - len(ready)
    state = new_state(plan)
    state.load = rebuild_load(plan, history[:first])
    skipped: list[Skipped] = []
    for (t, workers), counts in zip(history[first:], ready):
        obs = replace(load_observation(t, workers), ready_replicas=dict(counts))
        state, result = decide_window(plan, model, obs, state)
        if isinstance(result, Skipped):
            skipped.append(result)
    return state, tuple(skipped)
