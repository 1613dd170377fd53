"""The decision loop against poisoned data and lateness, with an in-memory reader and a
fixed clock (no Prometheus, no sockets): a poisoned window is skipped and counted, the next
window decides; a loop behind by several windows reads them at once and decides the newest;
and the retry schedule's recovery bound (pure, core.replay)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Mapping, Optional

import pytest

from helpers import flat_profile, plan_dict
from scaler.core.observations import TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.replay import WorkerTick, decision_lag, latest_closed, retry_delay, windows_due
from scaler.errors import MetricsUnavailable, WindowRejected
from scaler.planfile import LoadedPlan
from scaler.prom.client import Series
from scaler.prom.reader import read_traffic_history, read_traffic_history_grid
from scaler.service.loop import LoopSettings, PlanLoop
from scaler.service.metrics import ServiceMetrics

T = 60.0
E = 1_800_000_000.0  # a grid time
SETTLE = 15.0


def _window(rate: float) -> TrafficWindow:
    return TrafficWindow(window_seconds=T, requests=rate * T, isl=3000.0, osl=150.0, ttft_ms=50.0, itl_ms=5.0,
                         request_duration_s=3.0)


class Reader:
    """Windows by end time; counts the reads of each kind."""

    def __init__(self, windows: dict[float, TrafficWindow]) -> None:
        self.windows = windows
        self.reads: list[str] = []

    async def traffic(self, plan: Plan, at: float) -> TrafficWindow:
        self.reads.append("traffic")
        if at not in self.windows:
            raise MetricsUnavailable(f"no data at {at}")
        return self.windows[at]

    async def workers(self, plan: Plan, at: Optional[float]) -> tuple[WorkerLoad, ...]:
        return ()

    async def history(self, plan: Plan, end: float, intervals: int) -> list[TrafficWindow]:
        self.reads.append(f"history:{intervals}")
        out = []
        for k in range(intervals):
            t = end - (intervals - 1 - k) * T
            if t in self.windows:
                out.append(self.windows[t])
            else:
                out = []
        return out

    async def worker_history(self, plan: Plan, end: float, ticks: int) -> list[WorkerTick]:
        return []

    async def ready(self, plan: Plan, at: Optional[float], workers: tuple[WorkerLoad, ...]) -> Mapping[str, int]:
        return {}


def _loop(reader: Reader, now: list[float], metrics: ServiceMetrics) -> PlanLoop:
    plan = Plan.model_validate(plan_dict(predictor="kalman", interval_seconds=int(T)))
    loaded = LoadedPlan(path=Path("plan.yaml"), plan=plan, profile=flat_profile())
    return PlanLoop(loaded, reader, settings=LoopSettings(settle_seconds=SETTLE, warmup_intervals=8),
                    metrics=metrics, clock=lambda: now[0])


def _sample(metrics: ServiceMetrics, name: str, **labels: str) -> Optional[float]:
    return metrics.registry.get_sample_value(name, {"namespace": "inference", "plan": "llama-8b", **labels})


def test_a_poisoned_window_is_skipped_counted_and_the_next_one_decides() -> None:
    """Before: the 1e308 window raised OverflowError on every attempt (28 tracebacks in
    90 s, UNAVAILABLE for good). Now: WindowRejected once, the loop moves to the next
    window, which decides; the state never saw the poison."""
    windows = {E - k * T: _window(50.0) for k in range(8)}
    windows[E + T] = TrafficWindow(window_seconds=T, requests=1e308)
    windows[E + 2 * T] = _window(55.0)
    reader, now, metrics = Reader(windows), [E + SETTLE], ServiceMetrics()
    loop = _loop(reader, now, metrics)

    async def run() -> None:
        await loop.warm_up(E)
        good = loop.latest
        now[0] = E + T + SETTLE
        with pytest.raises(WindowRejected, match="absurd_requests"):
            await loop.tick_throughput(E + T)
        assert loop.next_end == E + 2 * T and loop.latest is good
        assert loop.last_error is not None and "absurd_requests" in loop.last_error
        now[0] = E + 2 * T + SETTLE + 0.25
        d = await loop.tick_throughput(E + 2 * T)
        assert d.throughput is not None and d.throughput.observed_rate == 55.0
        assert loop.last_error is None

    asyncio.run(run())
    assert _sample(metrics, "dynplan_windows_rejected_total", reason="absurd_requests") == 1.0
    assert _sample(metrics, "dynplan_decision_lag_seconds") == pytest.approx(0.25)


def test_warm_up_skips_a_poisoned_window_in_history() -> None:
    """A restart replays the same window: it is skipped there too, and counted."""
    windows = {E - k * T: _window(50.0 + k) for k in range(8)}
    windows[E - 3 * T] = TrafficWindow(window_seconds=T, requests=100.0, isl=-3000.0, ttft_ms=-50.0)
    reader, now, metrics = Reader(windows), [E + SETTLE], ServiceMetrics()
    loop = _loop(reader, now, metrics)
    d = asyncio.run(loop.warm_up(E))
    assert d.timestamp == E and loop.replayed == 8
    assert _sample(metrics, "dynplan_windows_rejected_total", reason="negative_isl") == 1.0
    asyncio.run(loop.warm_up(E))  # again (a retried warm-up): the same window is not counted twice
    assert _sample(metrics, "dynplan_windows_rejected_total", reason="negative_isl") == 1.0


def test_a_loop_behind_reads_the_missed_windows_at_once_and_decides_the_newest() -> None:
    """M7: 200 plans sharing 4 query slots ran 50-76 s late at T = 30 s, one tick per window.
    A loop three windows behind now makes one history read, folds the older windows into
    its state, decides the newest and counts the others; its lag is exported."""
    windows = {E + k * T: _window(50.0 + 5 * k) for k in range(-8, 5)}
    reader, now, metrics = Reader(windows), [E + SETTLE], ServiceMetrics()
    loop = _loop(reader, now, metrics)

    async def run() -> None:
        await loop.warm_up(E)
        assert loop.next_end == E + T
        now[0] = E + 4 * T + SETTLE + 2.0  # windows E+T .. E+4T have closed
        due = windows_due(now[0], E + T, T, SETTLE, 8)
        assert due == (E + T, E + 4 * T)
        reader.reads.clear()
        d = await loop.tick_throughput(due[1], due[0])
        assert reader.reads == ["history:4"]
        assert d.timestamp == E + 4 * T and loop.next_end == E + 5 * T
        assert d.throughput is not None and d.throughput.observed_rate == 70.0

    asyncio.run(run())
    assert _sample(metrics, "dynplan_windows_caught_up_total") == 3.0
    assert _sample(metrics, "dynplan_decision_lag_seconds") == pytest.approx(2.0)


def test_catching_up_gives_the_state_of_a_loop_that_was_on_time() -> None:
    windows = {E + k * T: _window(50.0 + 7 * (k % 3)) for k in range(-8, 5)}
    on_time, late = (_loop(Reader(windows), [E + SETTLE], ServiceMetrics()) for _ in range(2))

    async def run() -> tuple[dict, dict]:
        await on_time.warm_up(E)
        await late.warm_up(E)
        for k in range(1, 5):
            d = await on_time.tick_throughput(E + k * T)
        caught = await late.tick_throughput(E + 4 * T, E + T)
        return d.to_dict(), caught.to_dict()

    a, b = asyncio.run(run())
    assert a == b


# -- the retry schedule (pure) --------------------------------------------------------------
@pytest.mark.parametrize("interval", [10.0, 30.0, 180.0, 3600.0])
def test_recovery_within_one_attempt_after_prometheus_heals(interval: float) -> None:
    """Prometheus fails for `outage` seconds; attempts follow the loop's schedule (due
    windows, then retry_delay after each failure; each read takes `read` s). The first
    decision after it heals comes within retry_delay + one read, and it is on the newest
    window, however long the outage (before: one tick per missed window after a catch-up)."""
    settle, read = min(15.0, interval / 4), 2.0
    for outage in (interval / 3, 3 * interval, 40 * interval):
        start = E + settle
        healed = start + outage
        t, next_end = start, E
        decided_at: Optional[float] = None
        while decided_at is None:
            due = windows_due(t, next_end, interval, settle, 32)
            if due is None:
                t = next_end + settle
                continue
            first, last = due
            if t + read <= healed:  # the read fails
                t += read + retry_delay(interval)
                next_end = first
                continue
            decided_at = t + read
            assert last == latest_closed(t, interval, settle)
        assert decided_at - healed <= retry_delay(interval) + 2 * read, (interval, outage)
        assert retry_delay(interval) + 2 * read <= interval


def test_retry_delay_and_lag() -> None:
    assert [retry_delay(i) for i in (10.0, 16.0, 60.0, 180.0)] == [2.5, 4.0, 5.0, 5.0]
    assert decision_lag(made_at=E + 20.0, window_end=E, settle=15.0) == 5.0
    assert windows_due(E + 14.9, E, T, 15.0, 32) is None
    assert windows_due(E + 15.0, E, T, 15.0, 32) == (E, E)
    # a long outage: back to the oldest window a restart would replay
    assert windows_due(E + 100 * T + 15.0, E, T, 15.0, 32) == (E + 68 * T, E + 100 * T)
    assert math.isfinite(retry_delay(86400.0))


# -- request counts that are not counts (NaN, negative) ----------------------------------------
def test_a_window_without_a_usable_count_is_skipped_not_retried() -> None:
    """A NaN request count made every read of that window fail: retried every retry delay
    while it was the newest. Now the reader rejects it (WindowRejected, invalid_requests),
    the loop counts it and moves on."""
    windows = {E - k * T: _window(50.0) for k in range(8)}
    windows[E + 2 * T] = _window(60.0)
    reader, now, metrics = Reader(windows), [E + SETTLE], ServiceMetrics()

    async def traffic(plan: Plan, at: float) -> TrafficWindow:
        if at == E + T:
            raise WindowRejected("plan 'llama-8b': request count is nan, not a count", reason="invalid_requests")
        return windows[at]

    reader.traffic = traffic  # type: ignore[method-assign]
    loop = _loop(reader, now, metrics)

    async def run() -> None:
        await loop.warm_up(E)
        with pytest.raises(WindowRejected):
            await loop.tick_throughput(E + T)
        assert loop.next_end == E + 2 * T
        assert loop.last_error is not None and "not a count" in loop.last_error
        d = await loop.tick_throughput(E + 2 * T)
        assert d.throughput is not None and d.throughput.observed_rate == 60.0

    asyncio.run(run())
    assert _sample(metrics, "dynplan_windows_rejected_total", reason="invalid_requests") == 1.0


class RangeClient:
    """PromClient's range() over fixed points per series (by a substring of the query)."""

    def __init__(self, points: dict[str, list[tuple[float, float]]]) -> None:
        self.points = points

    async def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        for needle, pts in self.points.items():
            if needle in query:
                return [Series(labels={}, points=tuple(p for p in pts if start <= p[0] <= end))]
        return []


def test_history_treats_a_nan_or_negative_count_as_a_gap() -> None:
    """Before, one NaN count anywhere in the 32 windows failed the whole history read, so
    every warm-up failed until the window left the range (32 x T). Now it is a gap: the
    windows after it are replayed."""
    plan = Plan.model_validate(plan_dict(predictor="kalman", interval_seconds=int(T)))
    ends = [E - (5 - k) * T for k in range(6)]
    counts = [3000.0, 3000.0, math.nan, 3000.0, -5.0, 3600.0]
    client = RangeClient({"requests_": list(zip(ends, counts)), "input_sequence": [(t, 3000.0) for t in ends]})
    got = asyncio.run(read_traffic_history(client, plan, E, 6))  # type: ignore[arg-type]
    assert [w.requests for w in got] == [3600.0]
    grid = asyncio.run(read_traffic_history_grid(client, plan, E, 6))  # type: ignore[arg-type]
    assert [w is None for _, w in grid] == [False, False, True, False, True, False]
