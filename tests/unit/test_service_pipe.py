"""ThreadedPipe (scaler.service.pipe): messages reach the loop in order, then the close; a
message that arrives after the loop closed (the process exiting) ends the receiver quietly."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from typing import Any

from scaler.service.pipe import ThreadedPipe


def test_messages_then_the_close_reach_the_loop() -> None:
    ours, theirs = multiprocessing.Pipe()
    got: list[Any] = []

    async def main() -> None:
        closed = asyncio.Event()
        ThreadedPipe(ours, asyncio.get_running_loop(), got.append, closed.set, "t")
        for i in range(3):
            theirs.send(i)
        theirs.close()
        await asyncio.wait_for(closed.wait(), 5)

    asyncio.run(main())
    assert got == [0, 1, 2]


def test_a_message_after_the_loop_closed_ends_the_receiver_without_an_exception() -> None:
    ours, theirs = multiprocessing.Pipe()
    loop = asyncio.new_event_loop()
    ThreadedPipe(ours, loop, lambda msg: None, lambda: None, "late")
    loop.close()
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)  # type: ignore[assignment,misc]
    try:
        receiver = next(t for t in threading.enumerate() if t.name == "late-recv")
        theirs.send("late")
        receiver.join(5)
        assert not receiver.is_alive()
    finally:
        threading.excepthook = previous
        theirs.close()
    assert errors == []
