"""The `dynplan serve` process: run until SIGTERM or SIGINT, then shut down within the bound.

Two processes by default (`FrontServer`: the serving process, which starts the decider
process), or one with `--one-process` (`ScalerServer`). Shutdown is bounded: after
SIGTERM/SIGINT the process exits within `shutdown_seconds` (exit 0) whatever it was doing
(scaler.service.exiting).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Callable, Optional, Union

from scaler.service.exiting import ShutdownBound, exit_unless_done
from scaler.service.front import FrontServer
from scaler.service.logs import log_event
from scaler.service.options import ServeConfig

if TYPE_CHECKING:
    from scaler.service.server import ScalerServer

log = logging.getLogger("dynplan.server")


async def serve(config: ServeConfig, on_signal: Optional[Callable[[], None]] = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully within config.shutdown_seconds.

    A signal during start-up (a plan still loading) stops the start-up too."""
    scaler: Union[ScalerServer, FrontServer]
    if config.decider_process:
        scaler = FrontServer(config)
    else:
        # here only: the serving process of two never loads the decision machinery (memory)
        from scaler.service.server import ScalerServer

        scaler = ScalerServer(config)
    stop = asyncio.Event()
    event_loop = asyncio.get_running_loop()

    def signalled() -> None:
        if on_signal is not None:
            on_signal()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        event_loop.add_signal_handler(sig, signalled)
    starting = event_loop.create_task(scaler.start())
    stopping = event_loop.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a bind error: InputError, exit 2
            await stopping
        else:
            starting.cancel()
        log_event(log, "shutting_down", timeoutSeconds=config.shutdown_seconds)
    finally:
        stopping.cancel()
        try:
            await asyncio.wait_for(scaler.stop(min(config.grace_seconds, config.shutdown_seconds / 2)),
                                   config.shutdown_seconds)
        except asyncio.TimeoutError:
            log_event(log, "shutdown_timeout", logging.WARNING, timeoutSeconds=config.shutdown_seconds)


def run(config: ServeConfig) -> None:
    """`dynplan serve`: asyncio.run(serve(config)) with the shutdown bound armed by the signal.

    The default executor is not joined at the end (a thread stuck in a read would block
    forever): once the event loop has closed, worker threads get at most a second to
    finish; their work (a model being built, a query, a scan) has no one left to use it,
    so if any still runs the logs are flushed and the process ends with os._exit(0). The
    bound's timer covers an event loop that itself does not get that far."""
    bound = ShutdownBound(config.shutdown_seconds)
    event_loop = asyncio.new_event_loop()
    try:
        event_loop.run_until_complete(serve(config, on_signal=bound.start))
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(event_loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                event_loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            event_loop.run_until_complete(event_loop.shutdown_asyncgens())
        finally:
            event_loop.close()  # shuts the default executor down without waiting
    exit_unless_done(min(1.0, config.shutdown_seconds))
