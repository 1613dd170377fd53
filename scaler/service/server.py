"""The `dynplan serve` process: grpc.aio server, health, /metrics and /decisions, TLS,
graceful shutdown.

Health (grpc.health.v1): `liveness` is SERVING as soon as the server runs and never
depends on Prometheus (a Prometheus outage must not restart scalers); `readiness` and the
overall "" service turn SERVING once the plans directory has been loaded.

Shutdown is bounded: after SIGTERM/SIGINT the process exits within `shutdown_seconds`
(exit 0) whatever it was doing. A worker thread that cannot be stopped (a query to a
Prometheus that drips bytes, a stat on a hung filesystem) would keep the interpreter from
exiting, so once the bound passes the logs are flushed and the process ends with
`os._exit(0)`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from scaler.errors import FieldError, InputError
from scaler.planfile import LoadedPlan
from scaler.prom.batch import SharedReads
from scaler.prom.client import DEFAULT_CONCURRENCY, PromClient
from scaler.prom.credentials import Credentials, check_access
from scaler.prom.reader import PromReader
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.collector import Collector
from scaler.service.compute import Compute, ProcessCompute, ThreadCompute
from scaler.service.decisions import decision_document, index_document
from scaler.service.logs import log_event
from scaler.service.loop import LoopSettings, PlanLoop, Reader
from scaler.service.metrics import MetricsServer, ServiceMetrics
from scaler.service.registry import PlanRegistry
from scaler.service.servicer import ExternalScalerServicer

log = logging.getLogger("dynplan.server")
LIVENESS = "liveness"
READINESS = "readiness"


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Optional[Path] = None  # set -> mTLS: clients must present a cert it signed

    def _files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert, self.key, self.client_ca) if p is not None)

    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in self._files():
            st = p.stat()  # follows symlinks: Kubernetes secret updates swap them
            out.append((os.path.realpath(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def check(self) -> None:
        """Raise InputError naming the flag when a file is not PEM or the key does not match.

        gRPC accepts any bytes and fails later (a bind error at start, silently at
        rotation), so the files go through OpenSSL first."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        for flag, path in (("--tls-cert", self.cert), ("--tls-client-ca", self.client_ca)):
            if path is None:
                continue
            try:
                context.load_verify_locations(cadata=path.read_text(errors="replace"))
            except (ssl.SSLError, ValueError) as exc:
                raise InputError([FieldError(flag, "", f"{path}: not a PEM certificate ({exc.__class__.__name__}: {exc})")]) from None
        try:
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            raise InputError([FieldError("--tls-key", "", f"{self.key}: not a PEM private key for {self.cert} ({exc})")]) from None

    def _configuration(self) -> Any:
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([(self.key.read_bytes(), self.cert.read_bytes())], root_certificates=ca)

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up rotated files on the next new connection."""
        state: dict[str, Any] = {"stamp": self._stamp(), "failed": None}

        def failed(why: object, exc: BaseException) -> None:
            # Once per change, not once per handshake; the current certificate stays.
            if state["failed"] != why:
                state["failed"] = why
                log_event(log, "tls_reload_failed", logging.ERROR, cert=str(self.cert), key=str(self.key),
                          error=str(exc), keeping="the current certificate")

        def fetch() -> Any:
            # Called by gRPC before each new handshake: reload only when a file changed,
            # and keep the current certificate if the new files cannot be read or parsed.
            try:
                stamp = self._stamp()
            except OSError as exc:
                failed(str(exc), exc)
                return None
            if stamp == state["stamp"]:
                return None
            try:
                self.check()
                config = self._configuration()
            except (OSError, ValueError, InputError) as exc:
                failed(stamp, exc)
                return None
            state["stamp"], state["failed"] = stamp, None
            log_event(log, "tls_reloaded", cert=str(self.cert))
            return config

        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), fetch, require_client_authentication=self.client_ca is not None
        )


@dataclass(frozen=True)
class ServeConfig:
    plans_dir: Path
    listen: str = "0.0.0.0:9090"
    metrics_listen: Optional[str] = "0.0.0.0:9091"
    tls: Optional[TlsConfig] = None
    staleness_factor: float = 3.0
    heartbeat_seconds: float = 5.0
    reload_seconds: float = 2.0
    settle_seconds: Optional[float] = None
    warmup_intervals: Optional[int] = None
    grace_seconds: float = 5.0
    shutdown_seconds: float = 10.0  # SIGTERM -> exit within this, whatever is stuck
    metrics_read_timeout: float = 10.0  # a /metrics connection must send its request within this
    metrics_max_connections: int = 64
    # queries in flight per Prometheus access (threads); Prometheus runs 20 at once by
    # default (--query.max-concurrency), so 8 leaves room for its rules and dashboards
    prometheus_concurrency: int = DEFAULT_CONCURRENCY
    # where plans may point (URL prefixes; empty: anywhere) and the operator's credentials
    prometheus_allow: tuple[str, ...] = ()
    credentials: Optional[Credentials] = None
    # directories spec.profile may point into besides the plans directory; None: anywhere
    profile_roots: Optional[tuple[Path, ...]] = None
    # planner processes the decisions run in (scaler.service.compute); 0: threads of this
    # process (`dynplan serve` defaults to 1: the RPCs' tail stays clear of planning)
    planner_processes: int = 0
    # plans act on due windows spread over up to this many seconds (LoopSettings.spread_seconds)
    decision_spread_seconds: float = 5.0
    # plans reading, planning and publishing at once (the rest wait their turn)
    decision_concurrency: int = 8


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class ScalerServer:
    """Everything `dynplan serve` runs, startable and stoppable from tests."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        reader_factory: Optional[Callable[[LoadedPlan], Reader]] = None,
        run_loops: bool = True,
    ) -> None:
        self.config = config
        self.metrics = ServiceMetrics()
        # one client per distinct Prometheus access, and the reads its plans share
        self._reads: dict[str, SharedReads] = {}
        self._reader_factory = reader_factory  # (LoadedPlan) -> Reader; default: Prometheus
        self.compute: Compute = ProcessCompute(config.planner_processes) if config.planner_processes > 0 else ThreadCompute()
        self.gate = asyncio.Semaphore(config.decision_concurrency)  # plans deciding at once (PlanLoop._gated)
        self.settings = LoopSettings(
            staleness_factor=config.staleness_factor,
            settle_seconds=config.settle_seconds,
            warmup_intervals=config.warmup_intervals,
            spread_seconds=config.decision_spread_seconds,
        )
        self.registry = PlanRegistry(
            config.plans_dir, self._make_plan_loop, metrics=self.metrics, run_loops=run_loops,
            profile_roots=config.profile_roots,
        )
        self.health = health.aio.HealthServicer()
        self.server: Optional[grpc.aio.Server] = None
        self.port: Optional[int] = None
        self.metrics_port: Optional[int] = None
        self._metrics_server: Optional[MetricsServer] = None
        self._watch: Optional[asyncio.Task[None]] = None
        self.collector = Collector()
        self._gc: Optional[asyncio.Task[None]] = None

    def _reader(self, loaded: LoadedPlan) -> Reader:
        access = loaded.plan.spec.metrics.prometheus
        # PlanError naming the plan's field: the registry keeps serving the previous version
        credential = check_access(access, str(loaded.path), self.config.credentials, self.config.prometheus_allow)
        if self._reader_factory is not None:
            return self._reader_factory(loaded)
        key = access.model_dump_json()
        reads = self._reads.get(key)
        if reads is None:
            # Close the clients no loaded plan uses (a reload changed a plan's access): each
            # holds query threads. The version being replaced is still loaded, so at most
            # one stale client per plan lives until its next reload.
            used = {plan.spec.metrics.prometheus.model_dump_json() for plan in self.registry.plans()}
            for stale in [k for k in self._reads if k not in used]:
                self._reads.pop(stale).client.close()
            client = PromClient(access, credential=credential, max_concurrency=self.config.prometheus_concurrency)
            reads = self._reads[key] = SharedReads(client)
        return PromReader(reads.client, reads)

    @property
    def _clients(self) -> dict[str, PromClient]:
        """The Prometheus client of each distinct access."""
        return {k: r.client for k, r in self._reads.items()}

    def _make_plan_loop(self, loaded: LoadedPlan) -> PlanLoop:
        return PlanLoop(
            loaded,
            self._reader(loaded),
            settings=self.settings,
            metrics=self.metrics,
            on_change=self.registry.notify,
            compute=self.compute,
            gate=self.gate,
        )

    def _decisions(self, key: Optional[tuple[str, str]]) -> Optional[Callable[[], dict[str, Any]]]:
        """The metrics listener's /decisions documents (None: no such plan). The plans are
        taken here, on the event loop (a reload may change the index); the returned
        function only reads their published, frozen snapshots, from a worker thread."""
        if key is None:
            plan_loops = list(self.registry.index.values())
            return lambda: index_document(plan_loops)
        plan_loop = self.registry.index.get(key)
        return None if plan_loop is None else (lambda: decision_document(plan_loop))

    async def start(self) -> int:
        """Bind, mark live, load plans, mark ready; return the gRPC port."""
        # No SO_REUSEPORT (gRPC's default on Linux): a second scaler on the same port must
        # fail to bind, not silently take half of KEDA's connections.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_ExternalScalerServicer_to_server(
            ExternalScalerServicer(self.registry, metrics=self.metrics, heartbeat_seconds=self.config.heartbeat_seconds),
            server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            if self.config.tls is not None:
                self.config.tls.check()
                port = server.add_secure_port(self.config.listen, self.config.tls.credentials())
            else:
                port = server.add_insecure_port(self.config.listen)
        except RuntimeError:  # grpcio's "Failed to bind to address"
            port = 0
        if port == 0:
            raise InputError([FieldError("--listen", "", f"cannot listen on {self.config.listen} (address in use or not available)")])
        if self.config.metrics_listen:
            host, mport = split_host_port(self.config.metrics_listen)
            metrics_server = MetricsServer(
                self.metrics, read_timeout=self.config.metrics_read_timeout,
                max_connections=self.config.metrics_max_connections, decisions=self._decisions,
            )
            try:
                self.metrics_port = await metrics_server.start(host, mport)
            except OSError as exc:
                raise InputError([FieldError("--metrics-listen", "", f"cannot listen on {self.config.metrics_listen} ({os.strerror(exc.errno) if exc.errno else exc})")]) from None
            self._metrics_server = metrics_server
        NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
        SERVING = health_pb2.HealthCheckResponse.SERVING
        await self.health.set(READINESS, NOT_SERVING)
        await self.health.set("", NOT_SERVING)
        await server.start()
        self.server, self.port = server, port
        await self.health.set(LIVENESS, SERVING)
        if isinstance(self.compute, ProcessCompute):
            await asyncio.to_thread(self.compute.start)  # spawned before the first warm-up needs them
        await self.registry.scan()
        # Plans, profiles and models are long-lived: out of the collector's way from here on
        # (scaler.service.collector: young generations every second, the heap every 10 min).
        gc.collect()
        gc.freeze()
        self._gc = asyncio.get_running_loop().create_task(self.collector.run(), name="dynplan-gc")
        await self.health.set(READINESS, SERVING)
        await self.health.set("", SERVING)
        self._watch = asyncio.get_running_loop().create_task(self.registry.watch(self.config.reload_seconds))
        log_event(log, "listening", listen=self.config.listen, port=port, metricsPort=self.metrics_port,
                  plans=len(self.registry.index))
        return port

    async def stop(self, grace: Optional[float] = None) -> None:
        """Graceful: stop accepting, let in-flight RPCs finish, cancel streams and loops."""
        await self.health.enter_graceful_shutdown()
        for task in (self._watch, self._gc):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        # Streams end now (OK, KEDA reconnects to a live replica) instead of holding the
        # grace period open: it is for unary calls in flight.
        self.registry.end_streams()
        if self.server is not None:
            await self.server.stop(self.config.grace_seconds if grace is None else grace)
        await self.registry.close()
        await self.compute.close()
        reads, self._reads = list(self._reads.values()), {}
        for r in reads:
            r.client.close()
        if self._metrics_server is not None:
            await self._metrics_server.close()


async def serve(config: ServeConfig, on_signal: Optional[Callable[[], None]] = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully within config.shutdown_seconds.

    A signal during start-up (a plan still loading) stops the start-up too."""
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


def _flush_logs() -> None:
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
        _flush_logs()
        os._exit(0)


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
    _exit_unless_done(min(1.0, config.shutdown_seconds))


def _exit_unless_done(seconds: float) -> None:
    """Join the non-daemon threads for up to `seconds`; os._exit(0) if any still runs
    (the interpreter would otherwise wait for it at exit, for ever if it is stuck)."""
    deadline = time.monotonic() + seconds
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    held = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not threading.current_thread()]
    if held:
        log_event(log, "shutdown_forced", logging.WARNING, timeoutSeconds=seconds, threads=held)
        _flush_logs()
        os._exit(0)
