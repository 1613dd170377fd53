"""The serving process of `dynplan serve` (the default): it answers KEDA and nothing else.

Python threads share one interpreter lock, so any work in the process that answers RPCs
(a Prometheus answer being parsed, a decision being logged, /metrics being rendered, the
plans directory being walked) delays the calls waiting behind it: with 1,000 plans that put
the p99 of GetMetrics at 5x the floor of a Python gRPC scaler. Here the serving process
holds only the gRPC server (ExternalScaler and health), the `AnswerBook` the decider
process fills (scaler.service.decider), and the RPC counts it sends there once a second for
/metrics. The decider process owns everything else, the metrics listener included.

The decider is started at `start` and again (after 1, 2, 4 ... 30 s) if it ever exits:
meanwhile readiness is NOT_SERVING and the answers already received are served until they
pass their staleness bound, exactly as a decision loop's latest good decision would be. A
bad flag the decider finds (`--metrics-listen` in use) ends the start with its InputError.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing.connection
import socket
import subprocess
import sys
import time
from typing import Any, Optional

from scaler.errors import FieldError, InputError
from scaler.service.answers import AnswerBook, BookUpdate
from scaler.service.logs import log_event
from scaler.service.options import ServeConfig
from scaler.service.pipe import ThreadedPipe
from scaler.service.rpc import RpcServer

log = logging.getLogger("dynplan.server")
COUNTS_PERIOD = 1.0  # RPC counts go to the decider's /metrics this often
MAX_BACKOFF = 30.0


class _Decider:
    """One decider process (`python -m scaler.service.decider FD`, its end of a socket pair
    as FD) and the pipe to it. A plain subprocess rather than a
    multiprocessing one: nothing is forked, and no resource-tracker process comes along."""

    def __init__(self, config: ServeConfig, front: "FrontServer") -> None:
        ours, theirs = socket.socketpair()
        conn = multiprocessing.connection.Connection(ours.detach())
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scaler.service.decider", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        conn.send(config)  # its first message; the credentials in it never touch argv or the environment
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pipe = ThreadedPipe(conn, asyncio.get_running_loop(), front._on_message,
                                 lambda: _settle(self.exited), name="dynplan-front")

    def send(self, msg: tuple[Any, ...]) -> None:
        self.pipe.send(msg)

    def stop(self, timeout: float) -> Optional[int]:
        """Ask it to stop, wait up to `timeout`, then kill it (blocking: call in a thread)."""
        self.send(("stop",))
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(1.0)
        self.pipe.close()
        return self.process.returncode


def _reap(process: "subprocess.Popen[bytes]", timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:  # its pipe closed but it lingers: it is replaced anyway
        process.kill()
        process.wait(1.0)


def _settle(future: "asyncio.Future[Any]", value: Any = None) -> None:
    if not future.done():
        future.set_result(value)


class FrontServer:
    """`dynplan serve`'s serving process, startable and stoppable like ScalerServer."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.book = AnswerBook()
        self.rpc = RpcServer(config, self.book, count=self._count)
        self.port: Optional[int] = None
        self.metrics_port: Optional[int] = None
        self.restarts = 0
        self._counts: dict[tuple[str, str], int] = {}
        self._decider: Optional[_Decider] = None
        # the first decider's start: None once its plans are loaded, its FieldErrors if it failed
        self._first: Optional[asyncio.Future[Optional[list[FieldError]]]] = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False

    def _count(self, method: str, code: str) -> None:
        key = (method, code)
        self._counts[key] = self._counts.get(key, 0) + 1

    def _on_message(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "book":
            update: BookUpdate = msg[1]
            self.book.apply(update)
            if update.loaded and not self._ready:
                self._ready = True
                asyncio.get_running_loop().create_task(self.rpc.ready(True))
                if self._first is not None:
                    _settle(self._first)
        elif kind == "started":
            self.metrics_port = msg[1]
        elif kind == "failed":
            if self._first is not None and not self._first.done():
                _settle(self._first, msg[1])  # the start ends with it (exit 2)
            else:  # a decider started again could not start: said here, then tried again
                log_event(log, "decider_start_failed", logging.ERROR, errors=[str(e) for e in msg[1]])

    async def start(self) -> int:
        """Bind, mark live, start the decider and wait for its plans; the gRPC port."""
        port = await self.rpc.start()
        # what this process holds from here on is long-lived and small: out of the collector's
        # way, so a full collection never walks the imported modules while a call waits
        gc.collect()
        gc.freeze()
        self.port = port
        self._first = asyncio.get_running_loop().create_future()
        self._decider = _Decider(self.config, self)
        waits: set[asyncio.Future[Any]] = {self._first, self._decider.exited}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        # (messages and the pipe's end arrive in order: a "failed" sent before exiting is in)
        errors = self._first.result() if self._first.done() else None
        if errors:
            await asyncio.to_thread(self._decider.stop, 2.0)
            raise InputError(errors)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise(), name="dynplan-decider-watch"),
                       loop.create_task(self._ship_counts(), name="dynplan-rpc-counts")]
        log_event(log, "listening", listen=self.config.listen, port=port, metricsPort=self.metrics_port,
                  plans=len(self.book.answers), deciderPid=self._decider.process.pid)
        return port

    async def _supervise(self) -> None:
        """Start the decider again whenever it exits (not while stopping)."""
        backoff = 1.0
        while True:
            decider = self._decider
            assert decider is not None
            await asyncio.shield(decider.exited)
            if self._stopping:
                return
            await asyncio.to_thread(_reap, decider.process, 2.0)
            self._ready = False
            await self.rpc.ready(False)
            log_event(log, "decider_exited", logging.ERROR, exitCode=decider.process.returncode,
                      restartInSeconds=backoff, serving="the answers received, until they are stale")
            started = time.monotonic()
            await asyncio.sleep(backoff)
            if self._stopping:
                return
            self.restarts += 1
            self._decider = _Decider(self.config, self)
            log_event(log, "decider_started", deciderPid=self._decider.process.pid, restarts=self.restarts)
            await asyncio.wait({self._decider.exited}, timeout=MAX_BACKOFF)
            # a decider that ran a while earns a fresh backoff; one that keeps dying waits longer
            backoff = 1.0 if time.monotonic() - started > MAX_BACKOFF else min(MAX_BACKOFF, backoff * 2)

    async def _ship_counts(self) -> None:
        while True:
            await asyncio.sleep(COUNTS_PERIOD)
            self._flush_counts()

    def _flush_counts(self) -> None:
        if self._decider is not None and not self._decider.exited.done():
            counts, self._counts = self._counts, {}
            self._decider.send(("rpcs", counts, self.restarts))

    async def stop(self, grace: Optional[float] = None) -> None:
        """Graceful: stop accepting, let calls in flight finish, end streams, stop the decider."""
        started = time.monotonic()
        self._stopping = True
        await self.rpc.draining()
        for task in self._tasks:
            task.cancel()
        self.book.end_streams()
        await self.rpc.stop(self.config.grace_seconds if grace is None else grace)
        self._flush_counts()
        if self._decider is not None:
            left = self.config.shutdown_seconds - (time.monotonic() - started) - 0.5
            await asyncio.to_thread(self._decider.stop, max(0.5, left))

