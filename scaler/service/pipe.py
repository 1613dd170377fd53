"""A pipe between `dynplan serve`'s two processes, carried by two threads.

Each side (scaler.service.front, scaler.service.decider) talks to the other over one
multiprocessing Connection: a sender thread writes what `send` queues, so a slow peer never
blocks the event loop, and a receiver thread hands each message to the event loop, then
says once that the pipe closed.
"""

from __future__ import annotations

import asyncio
import multiprocessing.connection
import queue
import threading
from typing import Any, Callable

_STOP = object()  # the sender thread ends


class ThreadedPipe:
    def __init__(
        self,
        conn: multiprocessing.connection.Connection,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Any], None],
        on_closed: Callable[[], None],
        name: str,
    ) -> None:
        """`on_message(msg)` and then, at the pipe's end, `on_closed()` run on `loop`."""
        self.conn = conn
        self._loop = loop
        self._on_message = on_message
        self._on_closed = on_closed
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._receive, name=f"{name}-recv", daemon=True).start()
        threading.Thread(target=self._send, name=f"{name}-send", daemon=True).start()

    def send(self, msg: Any) -> None:
        self._outbox.put(msg)

    def flush(self, timeout: float) -> None:
        """Wait (blocking: call in a thread) until what was sent so far is written, or `timeout`."""
        written = threading.Event()
        self._outbox.put(written)
        written.wait(timeout)

    def close(self) -> None:
        """End the sender thread and close the connection (the receiver then sees its end)."""
        self._outbox.put(_STOP)
        self.conn.close()

    def _send(self) -> None:
        while True:
            msg = self._outbox.get()
            if msg is _STOP:
                return
            if isinstance(msg, threading.Event):
                msg.set()
                continue
            try:
                self.conn.send(msg)
            except (OSError, ValueError, EOFError):
                return  # the peer is gone: the receiver sees it too

    def _receive(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            if not self._hand(self._on_message, msg):
                return
        self._hand(self._on_closed)

    def _hand(self, callback: Callable[..., None], *args: Any) -> bool:
        """Run `callback(*args)` on the loop; False when the loop is already closed (the
        process is exiting, e.g. a flag only the decider checks failed: nobody is left to
        tell, and a traceback on stderr would be noise)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            if self._loop.is_closed():
                return False
            raise
        return True
