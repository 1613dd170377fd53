"""One decision loop per plan: read an Observation from Prometheus, call the planner core.

`PlanLoop` schedules, reads, decides, publishes and sleeps; what to read and when comes
from `scaler.core.replay` (pure). Throughput windows end on a fixed grid and are read a
short settle delay after they close, so a scaler started at any time warms up by replaying
exactly the windows a never-stopped scaler read, and makes the same next decision (restart
safety). Load ticks (when load scaling is on) run on their own, shorter interval against
live data.

A failed read is not idle: it raises MetricsUnavailable, no decision is made, and the
latest good decision keeps serving until it is older than the staleness bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Protocol

from scaler.core.decision import Decision
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import PlannerState, new_state
from scaler.core.replay import (
    Advanced,
    Skipped,
    WorkerTick,
    after_failed_read,
    decision_lag,
    first_load_tick,
    fold_held,
    fold_read,
    fold_windows,
    grid_end,
    latest_closed,
    load_history_end,
    load_history_ticks,
    load_observation,
    load_replay_ticks,
    load_settle,
    next_fold_start,
    next_load_tick,
    rebuild_load,
    retry_delay,
    throughput_observation,
    warmup_intervals,
    windows_due,
)
from scaler.errors import MetricsUnavailable, WindowRejected
from scaler.planfile import LoadedPlan
from scaler.prom.reader import throughput_queries
from scaler.service.answers import PlanAnswer, check_fresh, is_active
from scaler.service.compute import Compute, PlanHandle, ThreadCompute
from scaler.service.logs import log_event
from scaler.service.metrics import ServiceMetrics

log = logging.getLogger("dynplan.decision")
errlog = logging.getLogger("dynplan.loop")


class Reader(Protocol):
    """Where observations come from (Prometheus in production)."""

    async def traffic(self, plan: Plan, at: float) -> TrafficWindow: ...

    async def workers(self, plan: Plan, at: Optional[float]) -> tuple[WorkerLoad, ...]: ...

    async def history(self, plan: Plan, end: float, intervals: int) -> list[TrafficWindow]: ...

    async def worker_history(self, plan: Plan, end: float, ticks: int) -> list[WorkerTick]: ...

    async def ready(self, plan: Plan, at: Optional[float], workers: tuple[WorkerLoad, ...]) -> Mapping[str, int]:
        """Ready replicas per pool (Observation.ready_replicas): `replay.ready_replicas(workers)`
        where nothing better is known; pools without a count are left out."""
        ...


def _with_ready(obs: Observation, ready: Mapping[str, int]) -> Observation:
    return replace(obs, ready_replicas=dict(ready))


@dataclass(frozen=True)
class LoopSettings:
    staleness_factor: float = 3.0
    # Delay after a window closes before it is read, so the last scrape and rule
    # evaluation are in; None -> min(15 s, interval / 4).
    settle_seconds: Optional[float] = None
    # Windows replayed at start-up; None -> enough for the plan's predictor.
    warmup_intervals: Optional[int] = None
    # Retry delay after a failed tick; None -> min(5 s, interval / 4) (core.replay.retry_delay).
    retry_seconds: Optional[float] = None
    # Plans act on their due events up to this much later, each at its own fixed offset
    # (min(this, shortest interval / 6) x a hash of the plan's key): 1,000 plans due on one
    # grid instant then wake spread over seconds instead of all at once, which kept RPCs
    # waiting behind a second of plan work. What is read is unchanged (the same instants);
    # replicas share the offsets. 0: every plan at once.
    spread_seconds: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """The latest good decision and what it was made from."""

    decision: Decision
    made_at: float                 # wall clock (seconds) when it was made
    window_end: Optional[float]    # grid time of the throughput window, if any
    traffic_requests: Optional[float]  # requests in the latest throughput window

    def replicas(self, pool: str) -> int:
        return self.decision.replicas(pool)

    def active(self, pool: str) -> bool:
        return is_active(self.traffic_requests, self.decision.replicas(pool))


class PlanLoop:
    """Owns one plan's PlannerState and its latest good decision."""

    def __init__(
        self,
        loaded: LoadedPlan,
        reader: Reader,
        *,
        settings: LoopSettings = LoopSettings(),
        metrics: Optional[ServiceMetrics] = None,
        clock: Callable[[], float] = time.time,
        on_change: Optional[Callable[[], None]] = None,
        compute: Optional[Compute] = None,
        gate: Optional[asyncio.Semaphore] = None,
    ) -> None:
        self.loaded = loaded
        self.plan = loaded.plan
        self.model = loaded.model
        # where decide/advance/replays run (threads here, or the planner processes)
        self.compute: Compute = compute if compute is not None else ThreadCompute()
        self.gate = gate  # shared by the scaler's loops (see _gated)
        self._handle: PlanHandle = self.compute.register(self.plan, self.model)
        self.reader = reader
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.on_change = on_change
        self.state: PlannerState = new_state(self.plan)
        self.latest: Optional[Snapshot] = None
        self.last_error: Optional[str] = None
        self.next_end: Optional[float] = None  # end of the next throughput window to read
        self.next_load: Optional[float] = None  # the next load grid instant to read (load scaling)
        # the fold of throughput windows as history holds them (core.replay.advance), and
        # the ends of its oldest and newest windows
        self.shadow: Optional[PlannerState] = None
        self.shadow_start: Optional[float] = None
        self.shadow_end: Optional[float] = None
        # the next fold, built ahead from its first window (core.replay.next_fold_start), and
        # the ends of its oldest and newest windows
        self.ahead: Optional[PlannerState] = None
        self.ahead_held: tuple[float, float] = (0.0, 0.0)
        self.replayed = 0  # windows replayed by the latest warm-up
        self._rejected_ends: dict[float, None] = {}  # windows counted as rejected (insertion order)
        self._task: Optional[asyncio.Task[None]] = None
        self._lock = asyncio.Lock()
        tp = self.plan.spec.scaling.throughput
        self.throughput_interval_seconds: Optional[float] = float(tp.interval_seconds) if tp.enabled else None
        ld = self.plan.spec.scaling.load
        self.load_interval_seconds: Optional[float] = float(ld.interval_seconds) if ld.enabled else None

    # -- derived settings ---------------------------------------------------------------
    @property
    def interval(self) -> float:
        """The decision interval staleness is measured against."""
        if self.throughput_interval_seconds is not None:
            return self.throughput_interval_seconds
        return float(self.load_interval_seconds or 1.0)

    @property
    def staleness_bound(self) -> float:
        return self.settings.staleness_factor * self.interval

    @property
    def settle(self) -> float:
        if self.settings.settle_seconds is not None:
            return self.settings.settle_seconds
        return min(15.0, self.interval / 4)

    @property
    def load_settle(self) -> float:
        """Delay after a load grid instant before it is read (core.replay.load_settle)."""
        return load_settle(self.settle, self.load_interval_seconds or 0.0)

    @property
    def retry(self) -> float:
        if self.settings.retry_seconds is not None:
            return self.settings.retry_seconds
        return retry_delay(self.interval)

    @functools.cached_property
    def warmup_intervals(self) -> int:
        """Throughput windows replayed at start-up (and the catch-up horizon)."""
        return self.settings.warmup_intervals or warmup_intervals(self.plan)

    @property
    def key(self) -> str:
        return f"{self.plan.namespace}/{self.plan.name}"

    # -- serving ------------------------------------------------------------------------
    def current(self) -> Snapshot:
        """The decision to serve now, or why there is none (both map to UNAVAILABLE)."""
        snap = self.latest
        check_fresh(self.key, None if snap is None else snap.made_at, self.last_error, self.clock(),
                    self.settings.staleness_factor, self.interval)
        assert snap is not None
        return snap

    def answer(self) -> PlanAnswer:
        """What the serving process answers from (`scaler.service.answers`)."""
        snap = self.latest
        return PlanAnswer(
            namespace=self.plan.namespace, name=self.plan.name, mode=self.plan.spec.mode,
            pools=tuple(self.plan.pool_names), staleness_factor=self.settings.staleness_factor,
            interval=self.interval,
            replica_counts=None if snap is None else tuple((p, snap.decision.replicas(p)) for p in self.plan.pool_names),
            made_at=None if snap is None else snap.made_at,
            traffic_requests=None if snap is None else snap.traffic_requests,
            last_error=self.last_error,
        )

    def adopt(self, snapshot: Optional[Snapshot]) -> None:
        """Serve a previous version's decision until this loop makes its own (hot reload)."""
        if (
            snapshot is not None
            and snapshot.decision.plan == self.plan.name
            and set(snapshot.decision.pools) == set(self.plan.pool_names)
        ):
            self.latest = snapshot

    # -- ticks --------------------------------------------------------------------------
    async def warm_up(self, end: Optional[float] = None, *, load_end: Optional[float] = None) -> Decision:
        """Replay the windows ending at `end` (default: the latest closed one) through decide.

        The decision for the last replayed window is the one a never-stopped scaler made at
        that window; it is served at once. The load path's history ends before `load_end`
        (default `end`; `start_up` passes the first load tick it will read itself).
        """
        assert self.throughput_interval_seconds is not None, "warm-up replays throughput windows"
        interval = self.throughput_interval_seconds
        if end is None:
            end = latest_closed(self.clock(), interval, self.settle)
        # from the fold's start on the grid (core.replay.fold_start): N to 2N - 1 windows
        n = fold_windows(end, interval, self.warmup_intervals)
        started = time.perf_counter()
        async with self._lock:
            try:
                windows = await self.reader.history(self.plan, end, n)
                workers = await self.reader.workers(self.plan, end)
                ready = await self.reader.ready(self.plan, end, workers)
                load_history = await self._load_history(end if load_end is None else load_end)
            except MetricsUnavailable as exc:
                self._failed("warmup", exc)
                raise
            # Planner work (predictor fits can be slow) runs off the event loop so RPCs
            # keep being answered meanwhile.
            if not windows:
                err = MetricsUnavailable(
                    f"plan {self.key}: Prometheus returned no history up to {end:.0f}: no request count in {n} windows; "
                    f"query: {throughput_queries(self.plan)['requests']}"
                )
                self._failed("warmup", err)
                raise err
            obs = _with_ready(throughput_observation(self.plan, end, windows[-1], workers), ready)
            load = rebuild_load(self.plan, load_history) if load_history else None
            ahead = self._ahead_job(end, interval, windows, carry=False)
            done, seconds = await self.compute.run(self._handle, "advance", None, windows[:-1], obs, load, ahead)
            skipped = list(done.skipped) + ([done.decision] if isinstance(done.decision, Skipped) else [])
            for skip in skipped:
                self._rejected("warmup", skip)
            # a rejected newest window: the fold's decision on the one before is served
            decision = done.decision if isinstance(done.decision, Decision) else done.previous
            if decision is None:
                err = MetricsUnavailable(f"plan {self.key}: Prometheus returned no history up to {end:.0f} (none within the physical limits)")
                self._failed("warmup", err)
                raise err
            self.state, self.shadow, self.shadow_start, self.shadow_end = done.state, done.shadow, end - (len(windows) - 1) * interval, end
            self._keep_ahead(ahead, done.ahead, end, interval)
            self.replayed = len(windows)
            self.next_end = end + interval
            # the newest window decided (a rejected newest one is skipped, as live)
            requests = windows[len(windows) - 1 - round((end - decision.timestamp) / interval)].requests
            self._publish(decision, "warmup", decision.timestamp, requests, started, replayed=len(windows))
            return decision

    async def _load_history(self, end: float) -> list[WorkerTick]:
        """Per-worker load on the load grid up to (not including) `end`: enough ticks to
        refill the load path's regression windows after a restart."""
        if self.load_interval_seconds is None:
            return []
        last = load_history_end(end, self.load_interval_seconds)
        return await self.reader.worker_history(self.plan, last, load_history_ticks(self.plan))

    async def warm_up_load(self, now: Optional[float] = None) -> int:
        """Load-only plans: rebuild the load path's regressions from per-worker history.

        Returns the number of ticks read. A failure is not fatal: the regressions then
        start empty and fill from live ticks (no decision until minObservations)."""
        end = self.clock() if now is None else now
        async with self._lock:
            if self.throughput_interval_seconds is not None:
                history = await self._load_history(end)
                self.state, _ = await self.compute.run(self._handle, "with_load", self.state, rebuild_load(self.plan, history))
                return len(history)
            # load only: the last ticks are decided again too (core.replay.replay_load)
            assert self.load_interval_seconds is not None
            last = load_history_end(end, self.load_interval_seconds)
            ticks = load_history_ticks(self.plan) + load_replay_ticks(self.plan)
            history = await self.reader.worker_history(self.plan, last, ticks)
            decided = history[max(0, len(history) - load_replay_ticks(self.plan)):]
            ready = [await self.reader.ready(self.plan, t, workers) for t, workers in decided]
            (self.state, skipped), _ = await self.compute.run(self._handle, "replay_load", history, ready)
            for skip in skipped:
                self._rejected("warmup", skip)
        return len(history)

    async def tick_throughput(self, end: float, first: Optional[float] = None) -> Decision:
        """Decide on the throughput window ending at `end` (a grid time).

        The window is decided on the fold of the windows before it since the fold's start
        on the grid (`core.replay.fold_start`); at a new fold start the fold is read again
        from history, so every replica decides on the same state. With `first` < `end` (the
        loop fell behind), the windows from `first` on are read in one history read and
        folded in oldest first; only the newest one is decided and published, the others
        are counted as caught up. A window outside the physical limits, or one that makes
        decide raise, is skipped (WindowRejected): the state is left as it was, and the loop
        moves on to the next window."""
        started = time.perf_counter()
        interval = self.throughput_interval_seconds or 0.0
        first = end if first is None else first
        held = None
        if self.shadow is not None and self.shadow_start is not None and self.shadow_end is not None:
            held = (self.shadow_start, self.shadow_end)
        held_next = self.ahead_held if self.ahead is not None else None
        read = fold_read(end, first, interval, self.warmup_intervals, held, held_next)
        extend, count, behind = read.extend, read.count, read.behind
        async with self._lock:
            try:
                if extend and count > 1:
                    windows = await self.reader.history(self.plan, end, count)
                    if not windows:
                        raise MetricsUnavailable(f"plan {self.key}: no traffic data for the window ending at {end:.0f}")
                else:
                    # the newest window by itself (its own errors: no counter, not a count),
                    # and at a new fold start the windows before it from history
                    newest = await self.reader.traffic(self.plan, end)
                    prior = [] if count == 1 else await self.reader.history(self.plan, end - interval, count - 1)
                    windows = [*prior, newest]
                workers = await self.reader.workers(self.plan, end)
                ready = await self.reader.ready(self.plan, end, workers)
            except WindowRejected as exc:  # the reader found no count in it (NaN, negative)
                self.next_end = end + interval
                if extend and count == 1:
                    if read.from_next:
                        self.shadow, self.shadow_start = self.ahead, self.ahead_held[0]
                    self.shadow_end = end  # skipped by the fold too, as a replay skips it
                self.ahead = None  # the next fold is read from history at its start instead
                self._rejected("throughput", Skipped(end, exc.reason, str(exc)))
                raise
            except MetricsUnavailable as exc:
                self._failed("throughput", exc)
                raise
            window = windows[-1]
            obs = _with_ready(throughput_observation(self.plan, end, window, workers), ready)
            shadow = (self.ahead if read.from_next else self.shadow) if extend else None
            basis = held_next if read.from_next else held
            ahead = self._ahead_job(end, interval, windows, carry=not read.from_next)
            done = await self._advance(shadow, windows[:-1], obs, ahead)
            self.state, self.shadow = done.state, done.shadow
            self.shadow_start, self.shadow_end = fold_held(read, basis, end, len(windows), interval)
            self._keep_ahead(ahead, done.ahead, end, interval)
            for skipped in done.skipped:
                self._rejected("throughput", skipped)
            if behind and self.metrics is not None:
                self.metrics.windows_caught_up.labels(self.plan.namespace, self.plan.name).inc(behind)
            # Whatever the outcome, this window is done: a poisoned one is never retried.
            self.next_end = end + interval
            result = done.decision
            if isinstance(result, Skipped):
                self._rejected("throughput", result)
                raise WindowRejected(f"plan {self.key}: {result.detail}", result.reason)
            self._publish(result, "throughput", end, window.requests, started)
            return result

    def _ahead_job(
        self, end: float, interval: float, windows: list[TrafficWindow], carry: bool
    ) -> Optional[tuple[Optional[PlannerState], list[TrafficWindow], float]]:
        """What to fold into the next fold with this window (`advance`'s `ahead`), or None.

        The next fold (`core.replay.next_fold_start`) is built as its windows come, so at
        its start on the grid the loop switches to it instead of reading and replaying
        N - 1 windows at once (1,000 plans do that on the same instant). It is started with
        the windows read now when they reach back to its first one, and carried on one
        window at a time; anything else (a gap, a rejected window) drops it, and the next
        fold start reads history as before."""
        start = next_fold_start(end, interval, self.warmup_intervals)
        first = end - (len(windows) - 1) * interval
        if start > end:
            return None
        if carry and self.ahead is not None and self.ahead_held == (start, first - interval):
            return (self.ahead, windows, first)
        if first <= start:  # the windows read reach back to the next fold's first one
            k = round((start - first) / interval)
            return (None, windows[k:], start)
        return None

    def _keep_ahead(
        self, job: Optional[tuple[Optional[PlannerState], list[TrafficWindow], float]], folded: Optional[PlannerState],
        end: float, interval: float,
    ) -> None:
        if job is None or folded is None:
            self.ahead = None
            return
        self.ahead = folded
        self.ahead_held = (next_fold_start(end, interval, self.warmup_intervals), end)

    async def _advance(
        self, shadow: Optional[PlannerState], prior: list[TrafficWindow], obs: Observation,
        ahead: Optional[tuple[Optional[PlannerState], list[TrafficWindow], float]] = None,
    ) -> Advanced:
        done, seconds = await self.compute.run(self._handle, "advance_on", shadow, prior, obs, self.state, ahead)
        if self.metrics is not None:
            self.metrics.compute.labels(self.plan.namespace, self.plan.name).observe(seconds)
        return done  # type: ignore[no-any-return]

    async def tick_load(self, at: Optional[float] = None) -> Decision:
        """Decide on the workers' load at the load grid instant `at` (the loop's ticks), or
        live now (None: `explain`, tests). Reading a fixed instant is what makes replicas agree."""
        started = time.perf_counter()
        async with self._lock:
            now = self.clock() if at is None else at
            requests = self.latest.traffic_requests if self.latest else None
            window_end = self.latest.window_end if self.latest else None
            try:
                workers = await self.reader.workers(self.plan, at)
                ready = await self.reader.ready(self.plan, at, workers)
                if self.throughput_interval_seconds is None:
                    # Load-only plans still need the request count for activation (IsActive);
                    # it is not part of the load observation.
                    requests = (await self.reader.traffic(self.plan, now)).requests
                    window_end = now
            except MetricsUnavailable as exc:
                self._failed("load", exc)
                raise
            result = await self._decide(_with_ready(load_observation(now, workers), ready))
            if isinstance(result, Skipped):
                self._rejected("load", result)
                raise WindowRejected(f"plan {self.key}: {result.detail}", result.reason)
            self._publish(result, "load", window_end, requests, started)
            return result

    async def _decide(self, obs: Observation) -> Decision | Skipped:
        """`core.replay.decide_window` off the event loop; the new state is kept only when
        a decision was made."""
        (state, result), seconds = await self.compute.run(self._handle, "decide_window", obs, self.state)
        self.state = state
        if self.metrics is not None:
            self.metrics.compute.labels(self.plan.namespace, self.plan.name).observe(seconds)
        return result

    def _rejected(self, kind: str, skipped: Skipped) -> None:
        """A window skipped without a decision: counted, logged, and the reason kept for
        the UNAVAILABLE message should the latest good decision go stale."""
        self.last_error = f"plan {self.key}: {skipped.detail}"
        self._changed()
        if skipped.end in self._rejected_ends:
            return  # a warm-up retried, or a catch-up re-reading it: counted and logged once
        self._rejected_ends[skipped.end] = None
        while len(self._rejected_ends) > 4 * self.warmup_intervals:  # bounded, oldest first
            del self._rejected_ends[next(iter(self._rejected_ends))]
        if self.metrics is not None:
            self.metrics.windows_rejected.labels(self.plan.namespace, self.plan.name, skipped.reason).inc()
        log_event(errlog, "window_rejected", logging.WARNING, namespace=self.plan.namespace, plan=self.plan.name,
                  kind=kind, windowEnd=skipped.end, reason=skipped.reason, error=skipped.detail)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _failed(self, kind: str, exc: BaseException) -> None:
        self.last_error = str(exc)
        self._changed()  # the UNAVAILABLE text names the last error: the serving process gets it now
        if self.metrics is not None:
            self.metrics.query_errors.labels(self.plan.namespace, self.plan.name, kind).inc()
        log_event(errlog, "decision_failed", logging.WARNING,
                  namespace=self.plan.namespace, plan=self.plan.name, kind=kind, error=str(exc))

    def _publish(
        self,
        decision: Decision,
        kind: str,
        window_end: Optional[float],
        requests: Optional[float],
        started: float,
        replayed: int = 0,
    ) -> None:
        made_at = self.clock()
        self.latest = Snapshot(decision=decision, made_at=made_at, window_end=window_end, traffic_requests=requests)
        self.last_error = None
        duration = time.perf_counter() - started
        lag = None if kind == "load" or window_end is None else decision_lag(made_at, window_end, self.settle)
        if self.metrics is not None:
            self.metrics.record_decision(self.plan.namespace, decision, made_at)
            self.metrics.duration.labels(self.plan.namespace, self.plan.name, kind).observe(duration)
            if lag is not None and kind == "throughput":
                self.metrics.decision_lag.labels(self.plan.namespace, self.plan.name).set(lag)
        extra: dict[str, Any] = {"replayedWindows": replayed} if replayed else {}
        if lag is not None and kind == "throughput":
            extra["lagSeconds"] = round(lag, 3)
        log_event(
            log,
            "decision",
            namespace=self.plan.namespace,
            plan=self.plan.name,
            kind=kind,
            windowEnd=window_end,
            madeAt=round(made_at, 3),
            durationMs=round(duration * 1000, 3),
            replicas={p: d.replicas for p, d in decision.pools.items()},
            reason=decision.reason.value,
            decision=decision.to_dict(),
            **extra,
        )
        self._changed()

    # -- running ------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"dynplan-loop-{self.key}")

    async def stop(self) -> None:
        self.compute.forget(self._handle)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        """Warm up, then tick on the grid (and on the load grid) until cancelled."""
        while True:
            async with self._gated():
                if await self.start_up():
                    break
            await asyncio.sleep(self.retry)
        while True:
            wait = self.wait()
            if wait <= 0:
                async with self._gated():
                    wait = await self.step()
            if wait > 0:
                await asyncio.sleep(wait)

    async def start_up(self) -> bool:
        """One attempt at what run() does first: the warm-up, and the first load tick on the
        load grid. False if it must be retried (a failed warm-up). Everything is a function
        of `clock()` and the grids, so replicas started at different times line up."""
        tp, ld = self.throughput_interval_seconds, self.load_interval_seconds
        now = self.clock()
        if tp is None:
            if ld is not None:
                # the newest load instant already due is read at once, right after its history
                self.next_load = grid_end(now - self.load_settle, ld)
                try:
                    await self.warm_up_load(self.next_load)
                except MetricsUnavailable as exc:
                    self._failed("warmup", exc)
            return True
        end = latest_closed(now, tp, self.settle)
        load_end = None if ld is None else first_load_tick(end, self.settle, ld, self.load_settle)
        try:
            await self.warm_up(end, load_end=load_end)
        except MetricsUnavailable:
            return False
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the loop silently
            self._crashed(exc)
            return False
        self.next_load = load_end
        return True

    @property
    def offset(self) -> float:
        """When this plan acts after its events are due (`LoopSettings.spread_seconds`): the
        same for all its events, so their order is the order of their due times."""
        shortest = min(i for i in (self.throughput_interval_seconds, self.load_interval_seconds, self.interval) if i)
        spread = min(self.settings.spread_seconds, shortest / 6)
        return spread * (zlib.crc32(self.key.encode()) / 2**32) if spread > 0 else 0.0

    def next_due(self) -> Optional[tuple[str, float]]:
        """The next event, ("throughput" or "load", when it is due): the earlier one; a tie
        goes to the throughput window. Ordered by due time, not by kind, so a loop that was
        busy past both does them in the order an idle one did."""
        events = []
        offset = self.offset
        if self.next_end is not None and self.throughput_interval_seconds is not None:
            events.append(("throughput", self.next_end + self.settle + offset))
        if self.next_load is not None and self.load_interval_seconds is not None:
            events.append(("load", self.next_load + self.load_settle + offset))
        return min(events, key=lambda e: (e[1], e[0] != "throughput")) if events else None

    def _gated(self) -> contextlib.AbstractAsyncContextManager[object]:
        """At most `gate`'s count of plans read, plan and publish at once: when a shared
        read's answer comes, only they wake, so the event loop never runs a thousand plans'
        steps in one iteration while an RPC waits."""
        return self.gate if self.gate is not None else contextlib.nullcontext()

    def wait(self) -> float:
        """Seconds until the next event is due (0: now), as `step` would return them."""
        due_event = self.next_due()
        if due_event is None:
            return 3600.0
        return max(0.0, due_event[1] - self.clock())

    async def step(self) -> float:
        """Run the next event if it is due; returns the seconds to wait before calling again
        (0 after an event, the retry delay after a failed read)."""
        due_event = self.next_due()
        if due_event is None:
            return 3600.0  # nothing scheduled (no mode enabled)
        kind, at = due_event
        now = self.clock()
        if at > now:
            return at - now
        if kind == "load":
            return await self._load_step(now)
        tp_interval = self.throughput_interval_seconds or 0.0
        assert self.next_end is not None
        due = windows_due(now, self.next_end, tp_interval, self.settle, self.warmup_intervals)
        if due is None:
            return 0.0
        first, last = due
        try:
            await self.tick_throughput(last, first if first < last else None)
        except WindowRejected:
            pass  # counted and logged; the next window is due on the grid
        except MetricsUnavailable:
            self.next_end = after_failed_read(first, last, tp_interval)
            return self.retry
        except Exception as exc:  # noqa: BLE001
            self._crashed(exc)
            # never the same window again: a bug on one window must not stop the plan
            self.next_end = last + tp_interval
            return self.retry
        return 0.0

    async def _load_step(self, now: float) -> float:
        interval = self.load_interval_seconds
        assert interval is not None and self.next_load is not None
        at = next_load_tick(self.next_load, now, interval, self.load_settle, load_history_ticks(self.plan))
        # A failed read is not retried: the next grid instant comes one load interval later.
        self.next_load = at + interval
        try:
            await self.tick_load(at)
        except (MetricsUnavailable, WindowRejected):
            pass  # counted and logged
        except Exception as exc:  # noqa: BLE001
            self._crashed(exc)
        return 0.0

    def _crashed(self, exc: BaseException) -> None:
        self.last_error = f"internal error: {exc!r}"
        self._changed()
        errlog.exception("decision loop error for plan %s", self.key, exc_info=exc)
