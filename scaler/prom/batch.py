"""One Prometheus query per recorded series for all plans, instead of one per plan.

Every plan that uses recording rules reads series named the same for all plans (told apart
by the `dynplan_plan` label), at the same grid instants: the grids are epoch-aligned, so
1,000 plans with a 30-s interval all read the window ending at the same second. `SharedReads`
sends the bare record name once for that instant (or range) and hands every plan its own
samples from the one answer: the first plan to ask starts the query, the others wait for it,
and later ones take the answer from a short-lived cache. The instants are fixed grid times
in the past, read after the settle delay, so every plan gets what its own query would have
returned at that time.

A plan whose samples are not in the shared answer (its rules are not loaded yet, a recorded
range with gaps) reads its own query (`recorded or on() (raw)`, `scaler.sources.read_query`),
so the result is always what the per-plan query gives: the tests compare the two on a real
Prometheus. Reads "now" (at=None: `explain`, live load ticks) are never shared. Failures are
not cached: the next plan to ask sends the query again, as it would have sent its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional, Union

from scaler.prom.client import PromClient, Sample, Series
from scaler.sources import SharedQuery

# How long a shared answer is kept for plans that ask late (a loop busy with its previous
# step): a few seconds cover the spread of 1,000 loops waking on one grid instant; the
# instants are past grid times, so a kept answer cannot go stale within this.
KEEP_SECONDS = 30.0
# Answers kept at most (distinct record names x instants in flight): one tick of a plan
# reads ten to twenty series; a warm-up of plans with several intervals a few dozen ranges.
MAX_KEPT = 128

_Key = tuple[str, float, float, float]  # (expr, start, end, step); an instant: start = end, step = 0


@dataclass
class _Answer:
    """A shared query in flight or answered, and its samples indexed by match labels."""

    future: "asyncio.Future[Union[list[Sample], list[Series]]]"
    made: float
    index: dict[tuple[str, ...], dict[tuple[str, ...], list]]


class SharedReads:
    """Shares recorded-series reads of one Prometheus access (one `PromClient`) across plans."""

    def __init__(self, client: PromClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self._clock = clock
        self._answers: OrderedDict[_Key, _Answer] = OrderedDict()
        self.shared = 0     # plan reads answered from a shared answer
        self.fallbacks = 0  # plan reads that sent their own query (not in the shared answer)
        self.queries = 0    # shared queries sent

    async def instant(self, query: str, shared: Optional[SharedQuery], at: Optional[float]) -> list[Sample]:
        """The samples `client.instant(query, at)` returns, from one shared query when one
        is given and `at` is a fixed instant."""
        if shared is None or at is None:
            return await self.client.instant(query, at)
        samples: list[Sample] = await self._mine((shared.expr, float(at), float(at), 0.0), shared)
        if samples or shared.complete:
            self.shared += 1
            return samples
        self.fallbacks += 1
        return await self.client.instant(query, at)

    async def range(
        self, query: str, shared: Optional[SharedQuery], start: float, end: float, step: float
    ) -> list[Series]:
        """The series `client.range(query, start, end, step)` returns. The shared answer is
        used only when the plan's recorded series have a point at every step: at a step
        without one, the per-plan query would have evaluated the raw expression instead."""
        if shared is None:
            return await self.client.range(query, start, end, step)
        series: list[Series] = await self._mine((shared.expr, float(start), float(end), float(step)), shared)
        if series and _covers(series, start, end, step):
            self.shared += 1
            return series
        self.fallbacks += 1
        return await self.client.range(query, start, end, step)

    async def _mine(self, key: _Key, shared: SharedQuery) -> list:
        answer = self._answer(key)
        await asyncio.shield(answer.future)
        names = tuple(k for k, _ in shared.match)
        index = answer.index.get(names)
        if index is None:
            index = {}
            for item in answer.future.result():
                labels = item.labels
                values = tuple(labels.get(k, "") for k in names)
                index.setdefault(values, []).append(item)
            answer.index[names] = index
        return list(index.get(tuple(v for _, v in shared.match), ()))

    def _answer(self, key: _Key) -> _Answer:
        now = self._clock()
        answer = self._answers.get(key)
        if answer is not None and _usable(answer, now):
            return answer
        self._expire(now)
        loop = asyncio.get_running_loop()
        answer = _Answer(loop.create_future(), now, {})
        self._answers[key] = answer
        loop.create_task(self._fetch(key, answer.future), name=f"dynplan-shared-read:{key[0][:40]}")
        return answer

    def _expire(self, now: float) -> None:
        for key in [k for k, a in self._answers.items() if not _usable(a, now)]:
            del self._answers[key]
        while len(self._answers) >= MAX_KEPT:
            oldest = next((k for k, a in self._answers.items() if a.future.done()), None)
            if oldest is None:
                break  # all in flight: keep them (bounded by the plans' own reads)
            del self._answers[oldest]

    async def _fetch(self, key: _Key, future: "asyncio.Future[Union[list[Sample], list[Series]]]") -> None:
        expr, start, end, step = key
        self.queries += 1
        try:
            result: Union[list[Sample], list[Series]]
            if step == 0.0:
                result = await self.client.instant(expr, end)
            else:
                result = await self.client.range(expr, start, end, step)
        except asyncio.CancelledError:  # the scaler is stopping
            future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every waiting plan, as their own query would raise
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)


def _usable(answer: _Answer, now: float) -> bool:
    """In flight, or answered without error less than KEEP_SECONDS ago."""
    f = answer.future
    if not f.done():
        return True
    return not f.cancelled() and f.exception() is None and now - answer.made <= KEEP_SECONDS


def _covers(series: list[Series], start: float, end: float, step: float) -> bool:
    """Whether some series has a point at every step of [start, end]."""
    steps = round((end - start) / step) + 1
    seen = {round((t - start) / step) for s in series for t, _ in s.points}
    return all(i in seen for i in range(steps))
