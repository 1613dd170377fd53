"""The garbage collector's schedule in `dynplan serve`: young generations often, the whole
heap rarely, never by surprise in the middle of RPCs.

CPython's automatic collector runs a full collection whenever the objects that survived
since the last one reach a quarter of the older ones. A scaler with 1,000 plans replaces
every plan's state each interval (about 300,000 tracked objects, most of them the plans'
metric series), so full collections came every few seconds and each stopped the event loop
for 140-300 ms while finding nothing to free (measured on bench_fleet): that was the RPCs'
p99. Here automatic collection is off; the youngest two generations (what a tick creates)
are collected every `young_seconds`, which walks only the objects made since and costs a
millisecond or two, and the whole heap every `full_seconds` (one pause of that size every
ten minutes instead of every few seconds). Cycles die young almost always (a failed read's
exception and its frames): the young collections free them; the rare older ones (a replaced
plan's loop and its task) wait for the next full collection.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class CollectorSchedule:
    young_seconds: float = 1.0
    full_seconds: float = 600.0


class Collector:
    """Runs the schedule on the event loop (`run`); `stop` restores automatic collection."""

    def __init__(self, schedule: CollectorSchedule = CollectorSchedule()) -> None:
        self.schedule = schedule
        self.full_collections = 0
        self.longest_full_seconds = 0.0
        self._was_enabled = gc.isenabled()

    def full(self) -> None:
        """Collect every generation (a pause of up to a few hundred ms with 1,000 plans)."""
        t0 = time.perf_counter()
        gc.collect()
        self.full_collections += 1
        self.longest_full_seconds = max(self.longest_full_seconds, time.perf_counter() - t0)

    async def run(self) -> None:
        gc.disable()
        last_full = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.schedule.young_seconds)
                if time.monotonic() - last_full >= self.schedule.full_seconds:
                    self.full()
                    last_full = time.monotonic()
                else:
                    gc.collect(1)
        finally:
            if self._was_enabled:
                gc.enable()
