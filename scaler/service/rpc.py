"""The grpc.aio server that runs the ExternalScaler handlers and gRPC health, with TLS.

One class for both process models: in one process (`--one-process`) it reads the plan
registry; in the serving process of the default two (scaler.service.front) it reads the
AnswerBook the decider process fills.

Health (grpc.health.v1): `liveness` is SERVING as soon as the server runs and never
depends on Prometheus (a Prometheus outage must not restart scalers); `readiness` and the
overall "" service turn SERVING once the plans directory has been loaded (`ready`).
"""

from __future__ import annotations

from typing import Callable, Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from scaler.errors import FieldError, InputError
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.answers import PlanView
from scaler.service.options import ServeConfig
from scaler.service.servicer import ExternalScalerServicer

LIVENESS = "liveness"
READINESS = "readiness"


class RpcServer:
    def __init__(self, config: ServeConfig, view: PlanView, count: Optional[Callable[[str, str], None]] = None) -> None:
        self.config = config
        self.health = health.aio.HealthServicer()
        self.servicer = ExternalScalerServicer(view, count=count, heartbeat_seconds=config.heartbeat_seconds)
        self.server: Optional[grpc.aio.Server] = None
        self.port: Optional[int] = None

    async def start(self) -> int:
        """Bind (InputError naming --listen if it cannot), start, mark live; the port."""
        # No SO_REUSEPORT (gRPC's default on Linux): a second scaler on the same port must
        # fail to bind, not silently take half of KEDA's connections.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_ExternalScalerServicer_to_server(self.servicer, server)
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
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(READINESS, not_serving)
        await self.health.set("", not_serving)
        await server.start()
        self.server, self.port = server, port
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def ready(self, ready: bool = True) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(READINESS, status)
        await self.health.set("", status)

    async def draining(self) -> None:
        """Every health service NOT_SERVING: shutting down."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        """Stop accepting, let calls in flight finish within `grace` seconds."""
        if self.server is not None:
            await self.server.stop(grace)
