"""Shared pieces of the service tests: known traffic as Prometheus history, plan files,
an in-process `dynplan serve` on loopback and a KEDA-like client for it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator, Optional, Sequence

import grpc
import yaml

from helpers import flat_profile, plan_dict, write_plan
from keda_client import KedaClient, Trigger
from scaler.core.observations import TrafficWindow
from scaler.core.replay import grid_end
from scaler.devtools.backfill import OpenMetricsWriter, frontend_history, requests_from_windows
from scaler.service.loop import PlanLoop
from scaler.service.server import ScalerServer, ServeConfig

T = 10  # throughput interval of every test plan (the plan minimum)
NAMESPACE = "inference"
MODEL = "llama-8b"


def busy(rate: float, isl: float = 3000.0, osl: float = 600.0) -> TrafficWindow:
    """A window at `rate` req/s with fixed means (latencies set so every mean exists)."""
    return TrafficWindow(
        window_seconds=T, requests=rate * T, isl=isl, osl=osl, ttft_ms=50.0, itl_ms=5.0, request_duration_s=3.0
    )


IDLE = TrafficWindow(window_seconds=T, requests=0.0)


def history_end(margin: float = 120.0) -> float:
    """A grid time safely in the past: every window up to it is complete in the history."""
    import time

    return grid_end(time.time() - margin, T)


def add_history(
    writer: OpenMetricsWriter, dynamo_namespace: str, windows: Sequence[TrafficWindow], end: float, step: float = 5.0
) -> OpenMetricsWriter:
    """The frontend series of `windows` (the last one ending at `end`), scraped every `step` s."""
    start = end - len(windows) * T
    reqs = requests_from_windows(list(windows), start)
    return frontend_history(
        reqs, start=start - 2 * step, end=end + 2 * step, step=step,
        labels={"model": MODEL, "dynamo_namespace": dynamo_namespace}, writer=writer,
    )


def test_plan(
    name: str,
    prometheus_url: str,
    dynamo_namespace: str,
    *,
    namespace: str = NAMESPACE,
    predictor: str = "constant",
    correction: bool = False,
    min_replicas: Optional[dict[str, int]] = None,
    max_replicas: Optional[dict[str, int]] = None,
    timeout_seconds: float = 1.0,
    retries: int = 0,
) -> dict[str, Any]:
    doc = plan_dict(
        name=name, predictor=predictor, correction=correction, interval_seconds=T,
        min_replicas=min_replicas, max_replicas=max_replicas,
    )
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["metrics"] = {
        "source": "dynamo",
        "selector": {"dynamo_namespace": dynamo_namespace},
        "prometheus": {"url": prometheus_url, "timeoutSeconds": timeout_seconds, "retries": retries},
        "useRecordingRules": True,
        # declared 1 s: ranges = windows, as this test's windows were written for (the scrape-interval rule: test_sources_scrape30.py)
        "scrapeIntervalSeconds": 1,
    }
    return doc


test_plan.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def write_plans(directory: Path, docs: Sequence[dict[str, Any]]) -> None:
    """Each plan as <name>-<namespace>.yaml, sharing one flat profile (./profile)."""
    directory.mkdir(parents=True, exist_ok=True)
    first = True
    for doc in docs:
        fname = f"{doc['metadata']['name']}-{doc['metadata']['namespace']}.yaml"
        write_plan(directory, doc, profile=flat_profile() if first else None, filename=fname)
        first = False


def rewrite_plan(path: Path, doc: dict[str, Any]) -> None:
    import os
    import time

    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    # Make sure the mtime moves even on coarse-grained filesystems.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, max(st.st_mtime_ns, time.time_ns()) + 1_000_000))


@contextlib.asynccontextmanager
async def running_scaler(
    plans_dir: Path, *, run_loops: bool = False, **config: Any
) -> AsyncIterator[tuple[ScalerServer, KedaClient]]:
    """An in-process scaler on a loopback port and a KEDA client on a real channel."""
    cfg = ServeConfig(plans_dir=plans_dir, listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", **config)
    server = ScalerServer(cfg, run_loops=run_loops)
    port = await server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield server, KedaClient(channel, address)
    finally:
        await channel.close()
        await server.stop(grace=0.5)


def loop_of(server: ScalerServer, plan: str, namespace: str = NAMESPACE) -> PlanLoop:
    return server.registry.index[(namespace, plan)]


def trigger(plan: str, pool: str, namespace: str = NAMESPACE, **extra: str) -> Trigger:
    return Trigger(scaled_object=f"{plan}-{pool}", namespace=namespace, metadata={"plan": plan, "pool": pool, **extra})


async def raw_http(port: int, request: bytes) -> bytes:
    """Send `request` as is to a loopback HTTP port; everything the server sends until it closes."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def scrape(server: ScalerServer, path: str = "/metrics") -> str:
    """GET the scaler's /metrics from a worker thread: the server answers on this event loop."""
    import asyncio
    import urllib.request

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}{path}", timeout=5) as resp:
            return resp.read().decode()

    return await asyncio.to_thread(get)


async def rpc_error(coro: Any) -> grpc.aio.AioRpcError:
    try:
        await coro
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the RPC succeeded; an error was expected")
