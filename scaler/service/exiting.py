"""Ending a `dynplan serve` process within its bound, whatever a thread is stuck in.

A worker thread that cannot be stopped (a query to a Prometheus that drips bytes, a stat on
a hung filesystem) would keep the interpreter from exiting, so once the bound passes the
logs are flushed and the process ends with `os._exit(0)`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Optional

from scaler.service.logs import log_event

log = logging.getLogger("dynplan.server")


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    sys.stderr.flush()


class ShutdownBound:
    """Once started (by the signal), end the process after `seconds` even if a worker
    thread is stuck: a daemon timer flushes the logs and calls os._exit(0)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: Optional[threading.Timer] = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._exit)
            self._timer.daemon = True
            self._timer.start()

    def _exit(self) -> None:
        stuck = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not threading.main_thread()]
        log_event(log, "shutdown_forced", logging.WARNING, timeoutSeconds=self.seconds, threads=stuck)
        flush_logs()
        os._exit(0)


def exit_unless_done(seconds: float) -> None:
    """Join the non-daemon threads for up to `seconds`; os._exit(0) if any still runs
    (the interpreter would otherwise wait for it at exit, for ever if it is stuck)."""
    deadline = time.monotonic() + seconds
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    held = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not threading.current_thread()]
    if held:
        log_event(log, "shutdown_forced", logging.WARNING, timeoutSeconds=seconds, threads=held)
        flush_logs()
        os._exit(0)
