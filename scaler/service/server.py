"""The `dynplan serve` process: grpc.aio server, health, /metrics, TLS, graceful shutdown.

Health (grpc.health.v1): `liveness` is SERVING as soon as the server runs and never
depends on Prometheus (a Prometheus outage must not restart scalers); `readiness` and the
overall "" service turn SERVING once the plans directory has been loaded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from scaler.planfile import LoadedPlan
from scaler.prom.client import DEFAULT_CONCURRENCY, PromClient
from scaler.prom.credentials import Credentials, check_access
from scaler.prom.reader import PromReader
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.logs import log_event
from scaler.service.loop import LoopSettings, PlanLoop, Reader
from scaler.service.metrics import ServiceMetrics, serve_metrics
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

    def _configuration(self) -> Any:
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([(self.key.read_bytes(), self.cert.read_bytes())], root_certificates=ca)

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up rotated files on the next new connection."""
        state = {"stamp": self._stamp()}

        def fetch() -> Any:
            # Called by gRPC before each new handshake: reload only when a file changed,
            # and keep the current certificate if the new files cannot be read.
            try:
                stamp = self._stamp()
                if stamp == state["stamp"]:
                    return None
                config = self._configuration()
            except (OSError, ValueError) as exc:
                # keeping the current certificate
                log_event(log, "tls_reload_failed", logging.ERROR, cert=str(self.cert), error=str(exc))
                return None
            state["stamp"] = stamp
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
    # queries in flight per Prometheus access (threads); Prometheus runs 20 at once by
    # default (--query.max-concurrency), so 8 leaves room for its rules and dashboards
    prometheus_concurrency: int = DEFAULT_CONCURRENCY
    # where plans may point (URL prefixes; empty: anywhere) and the operator's credentials
    prometheus_allow: tuple[str, ...] = ()
    credentials: Optional[Credentials] = None


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
        self._clients: dict[str, PromClient] = {}  # one per distinct Prometheus access
        self._reader_factory = reader_factory  # (LoadedPlan) -> Reader; default: Prometheus
        self.settings = LoopSettings(
            staleness_factor=config.staleness_factor,
            settle_seconds=config.settle_seconds,
            warmup_intervals=config.warmup_intervals,
        )
        self.registry = PlanRegistry(config.plans_dir, self._make_plan_loop, metrics=self.metrics, run_loops=run_loops)
        self.health = health.aio.HealthServicer()
        self.server: Optional[grpc.aio.Server] = None
        self.port: Optional[int] = None
        self.metrics_port: Optional[int] = None
        self._metrics_server: Any = None
        self._watch: Optional[asyncio.Task[None]] = None

    def _reader(self, loaded: LoadedPlan) -> Reader:
        access = loaded.plan.spec.metrics.prometheus
        # PlanError naming the plan's field: the registry keeps serving the previous version
        credential = check_access(access, str(loaded.path), self.config.credentials, self.config.prometheus_allow)
        if self._reader_factory is not None:
            return self._reader_factory(loaded)
        key = access.model_dump_json()
        client = self._clients.get(key)
        if client is None:
            client = PromClient(access, credential=credential, max_concurrency=self.config.prometheus_concurrency)
            self._clients[key] = client
        return PromReader(client)

    def _make_plan_loop(self, loaded: LoadedPlan) -> PlanLoop:
        return PlanLoop(
            loaded,
            self._reader(loaded),
            settings=self.settings,
            metrics=self.metrics,
            on_change=self.registry.notify,
        )

    async def start(self) -> int:
        """Bind, mark live, load plans, mark ready; return the gRPC port."""
        server = grpc.aio.server()
        pb_grpc.add_ExternalScalerServicer_to_server(
            ExternalScalerServicer(self.registry, metrics=self.metrics, heartbeat_seconds=self.config.heartbeat_seconds),
            server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.config.tls is not None:
            port = server.add_secure_port(self.config.listen, self.config.tls.credentials())
        else:
            port = server.add_insecure_port(self.config.listen)
        if port == 0:
            raise OSError(f"cannot listen on {self.config.listen}")
        if self.config.metrics_listen:
            host, mport = split_host_port(self.config.metrics_listen)
            self._metrics_server, self.metrics_port = serve_metrics(self.metrics, host, mport)
        NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
        SERVING = health_pb2.HealthCheckResponse.SERVING
        await self.health.set(READINESS, NOT_SERVING)
        await self.health.set("", NOT_SERVING)
        await server.start()
        self.server, self.port = server, port
        await self.health.set(LIVENESS, SERVING)
        await self.registry.scan()
        # Plans, profiles and models are long-lived: keep them out of the cyclic GC's
        # generations so collections stay short while RPCs are answered.
        gc.collect()
        gc.freeze()
        await self.health.set(READINESS, SERVING)
        await self.health.set("", SERVING)
        self._watch = asyncio.get_running_loop().create_task(self.registry.watch(self.config.reload_seconds))
        log_event(log, "listening", listen=self.config.listen, port=port, metricsPort=self.metrics_port,
                  plans=len(self.registry.index))
        return port

    async def stop(self, grace: Optional[float] = None) -> None:
        """Graceful: stop accepting, let in-flight RPCs finish, cancel streams and loops."""
        await self.health.enter_graceful_shutdown()
        if self._watch is not None:
            self._watch.cancel()
            try:
                await self._watch
            except asyncio.CancelledError:
                pass
        if self.server is not None:
            await self.server.stop(self.config.grace_seconds if grace is None else grace)
        await self.registry.close()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()


async def serve(config: ServeConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    scaler = ScalerServer(config)
    stop = asyncio.Event()
    event_loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        event_loop.add_signal_handler(sig, stop.set)
    await scaler.start()
    try:
        await stop.wait()
        log_event(log, "shutting_down")
    finally:
        await scaler.stop()
