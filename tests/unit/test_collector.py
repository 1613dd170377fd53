"""serve's garbage-collector schedule (scaler.service.collector): automatic collection off
while it runs, young cycles freed by the frequent young collections, the heap by `full`,
automatic collection back on when it stops."""

from __future__ import annotations

import asyncio
import gc
import weakref

from scaler.service.collector import Collector, CollectorSchedule


class Node:
    def __init__(self) -> None:
        self.other: object = None


async def test_young_cycles_are_freed_while_automatic_collection_is_off() -> None:
    assert gc.isenabled()
    collector = Collector(CollectorSchedule(young_seconds=0.05, full_seconds=3600))
    task = asyncio.get_running_loop().create_task(collector.run())
    await asyncio.sleep(0.01)
    assert not gc.isenabled()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    ref = weakref.ref(a)
    del a, b
    for _ in range(40):
        if ref() is None:
            break
        await asyncio.sleep(0.05)
    assert ref() is None
    assert collector.full_collections == 0  # a young collection did it
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert gc.isenabled()


async def test_the_full_collection_comes_on_its_schedule() -> None:
    collector = Collector(CollectorSchedule(young_seconds=0.05, full_seconds=0.2))
    task = asyncio.get_running_loop().create_task(collector.run())
    await asyncio.sleep(0.6)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert 1 <= collector.full_collections <= 3
    assert gc.isenabled()
