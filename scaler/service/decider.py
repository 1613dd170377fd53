"""The decider process of `dynplan serve`: everything but the RPCs.

Started by the serving process (scaler.service.front) with the same ServeConfig, it runs
what one process would run minus the gRPC server (`ScalerServer(serve_rpcs=False)`): the
plans directory and its reloads, Prometheus reads, planning, `/metrics` and `/decisions`.
It sends the serving process each plan's `PlanAnswer` when it changes, and counts the RPCs
the serving process reports. Pipe messages:

- to the serving process: ("started", metrics port), ("book", BookUpdate), ("failed", [FieldError, ...]);
- from it: ("rpcs", {(method, code): n}, restarts of the decider so far) once a second, ("stop",). Its end of the pipe closing is a stop too,
  so a serving process that dies takes this one with it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.connection
import os
import signal
import sys
from typing import Any, Optional

from scaler.errors import InputError
from scaler.service.answers import BookUpdate, PlanAnswer, PlanKey, book_changes
from scaler.service.exiting import exit_unless_done, flush_logs
from scaler.service.logs import configure_logging, log_event
from scaler.service.options import ServeConfig
from scaler.service.pipe import ThreadedPipe
from scaler.service.registry import PlanRegistry
from scaler.service.server import ScalerServer

log = logging.getLogger("dynplan.decider")
PUBLISH_PERIOD = 1.0  # answers are compared at least this often (a failed read changes only the error text)
COALESCE = 0.05  # after a change, wait this long so a burst of decisions goes in one message
# The decider's CPU priority below the serving process's: when both want the CPU (a
# decision burst, a busy node), the kernel runs the RPCs first. Decisions have seconds to
# spare (a window is read a settle delay after it closes); an RPC has milliseconds.
NICENESS = 10


def main(argv: list[str]) -> None:
    """`python -m scaler.service.decider FD`: FD is this end of the serving process's socket
    pair; the first message on it is the ServeConfig."""
    conn = multiprocessing.connection.Connection(int(argv[1]))
    try:
        config = conn.recv()
    except (EOFError, OSError):
        return  # the serving process is gone already
    decider_main(conn, config)


def decider_main(conn: multiprocessing.connection.Connection, config: ServeConfig) -> None:
    """The decider's life: set up, decide until told to stop (or the pipe closes), exit."""
    # Ctrl-C in a terminal signals the whole process group: the serving process decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICENESS)
    configure_logging(config.log_level, config.log_format)
    event_loop = asyncio.new_event_loop()
    try:
        event_loop.run_until_complete(_run(conn, config))
    finally:
        event_loop.close()  # the default executor is not joined: a read may be stuck
        flush_logs()
    exit_unless_done(min(1.0, config.shutdown_seconds))


def answers_now(registry: PlanRegistry) -> dict[PlanKey, PlanAnswer]:
    return {key: plan_loop.answer() for key, plan_loop in registry.index.items()}


async def publish_answers(registry: PlanRegistry, pipe: ThreadedPipe) -> None:
    """Send the whole book once, then what changed, until cancelled."""
    sent = answers_now(registry)
    pipe.send(("book", BookUpdate(answers=tuple(sent.values()), loaded=registry.loaded, full=True)))
    version = registry.version
    while True:
        version = await registry.wait_changed(version, PUBLISH_PERIOD)
        await asyncio.sleep(COALESCE)
        now = answers_now(registry)
        changed, removed = book_changes(sent, now)
        if changed or removed:
            pipe.send(("book", BookUpdate(answers=changed, removed=removed, loaded=registry.loaded)))
        sent = now


async def _run(conn: multiprocessing.connection.Connection, config: ServeConfig) -> None:
    inbox: asyncio.Queue[Optional[tuple[Any, ...]]] = asyncio.Queue()  # None: the pipe closed
    pipe = ThreadedPipe(conn, asyncio.get_running_loop(), inbox.put_nowait, lambda: inbox.put_nowait(None),
                        name="dynplan-decider")
    core = ScalerServer(config, serve_rpcs=False)
    try:
        await core.start_decisions()
    except InputError as exc:
        pipe.send(("failed", list(exc.errors)))
        await asyncio.to_thread(pipe.flush, 2.0)
        await core.stop(0)
        return
    pipe.send(("started", core.metrics_port))
    publisher = asyncio.get_running_loop().create_task(publish_answers(core.registry, pipe), name="dynplan-publish")
    try:
        while True:
            msg = await inbox.get()
            if msg is None or msg[0] == "stop":
                break
            if msg[0] == "rpcs":
                for (method, code), n in msg[1].items():
                    core.count_rpc(method, code, n)
                core.metrics.decider_restarts.set(msg[2])
    finally:
        publisher.cancel()
        try:
            await asyncio.wait_for(core.stop(0), max(0.5, config.shutdown_seconds / 2))
        except asyncio.TimeoutError:
            log_event(log, "shutdown_timeout", logging.WARNING, timeoutSeconds=config.shutdown_seconds / 2)
            flush_logs()
            os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
