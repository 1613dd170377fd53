"""`ScalerServer`: the plans, their decision loops, Prometheus access, /metrics and
/decisions, and (in one process, `--one-process`, and in the in-process tests) the RPCs.

In the default two processes the decider process runs it without RPCs
(`serve_rpcs=False`, scaler.service.decider) and the serving process answers them
(scaler.service.front). Start-up: bind, mark live, load the plans, mark ready.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import Any, Callable, Optional

import grpc

from scaler.errors import FieldError, InputError
from scaler.planfile import LoadedPlan
from scaler.prom.batch import SharedReads
from scaler.prom.client import PromClient
from scaler.prom.credentials import check_access
from scaler.prom.reader import PromReader
from scaler.service.collector import Collector
from scaler.service.compute import Compute, ProcessCompute, ThreadCompute
from scaler.service.decisions import decision_document, index_document
from scaler.service.logs import log_event
from scaler.service.loop import LoopSettings, PlanLoop, Reader
from scaler.service.metrics import MetricsServer, ServiceMetrics
from scaler.service.options import ServeConfig, TlsConfig, split_host_port
from scaler.service.registry import PlanRegistry
from scaler.service.rpc import RpcServer

__all__ = ["ScalerServer", "ServeConfig", "TlsConfig", "split_host_port"]

log = logging.getLogger("dynplan.server")


class ScalerServer:
    """Everything `dynplan serve` runs, startable and stoppable from tests."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        reader_factory: Optional[Callable[[LoadedPlan], Reader]] = None,
        run_loops: bool = True,
        serve_rpcs: bool = True,
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
            profile_roots=config.profile_roots, trusted_namespace=config.trusted_namespace,
        )
        # the RPCs, here (one process); None in the decider process, whose RPCs the serving
        # process answers (scaler.service.front)
        self.rpc: Optional[RpcServer] = (
            RpcServer(config, self.registry, count=self.count_rpc) if serve_rpcs else None
        )
        self.port: Optional[int] = None
        self.metrics_port: Optional[int] = None
        self._metrics_server: Optional[MetricsServer] = None
        self._watch: Optional[asyncio.Task[None]] = None
        self.collector = Collector()
        self._gc: Optional[asyncio.Task[None]] = None

    @property
    def health(self) -> Any:
        """The gRPC health servicer (tests set statuses through it)."""
        assert self.rpc is not None
        return self.rpc.health

    @property
    def server(self) -> Optional[grpc.aio.Server]:
        return None if self.rpc is None else self.rpc.server

    def count_rpc(self, method: str, code: str, n: int = 1) -> None:
        """One answered call (or `n`, counted by the serving process) on /metrics."""
        self.metrics.rpcs.labels(method, code).inc(n)

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
        """Bind, mark live, load plans, mark ready; return the gRPC port (0 without RPCs)."""
        port = await self.rpc.start() if self.rpc is not None else 0
        self.port = port
        await self.start_decisions()
        if self.rpc is not None:
            await self.rpc.ready()
        log_event(log, "listening", listen=self.config.listen if self.rpc is not None else None, port=port,
                  metricsPort=self.metrics_port, plans=len(self.registry.index))
        return port

    async def start_decisions(self) -> None:
        """The metrics listener, the planner, the plans (scanned once), their loops."""
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
        if isinstance(self.compute, ProcessCompute):
            await asyncio.to_thread(self.compute.start)  # spawned before the first warm-up needs them
        await self.registry.scan()
        # Plans, profiles and models are long-lived: out of the collector's way from here on
        # (scaler.service.collector: young generations every second, the heap every 10 min).
        gc.collect()
        gc.freeze()
        self._gc = asyncio.get_running_loop().create_task(self.collector.run(), name="dynplan-gc")
        self._watch = asyncio.get_running_loop().create_task(self.registry.watch(self.config.reload_seconds))

    async def stop(self, grace: Optional[float] = None) -> None:
        """Graceful: stop accepting, let in-flight RPCs finish, cancel streams and loops."""
        if self.rpc is not None:
            await self.rpc.draining()
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
        if self.rpc is not None:
            await self.rpc.stop(self.config.grace_seconds if grace is None else grace)
        await self.registry.close()
        await self.compute.close()
        reads, self._reads = list(self._reads.values()), {}
        for r in reads:
            r.client.close()
        if self._metrics_server is not None:
            await self._metrics_server.close()
