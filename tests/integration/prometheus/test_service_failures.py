"""Failure semantics of `dynplan serve`: Prometheus down, slow, NaN, empty; staleness.

Never a made-up number: without a fresh good decision GetMetrics and IsActive fail with
UNAVAILABLE (so KEDA's fallback acts), GetMetricSpec keeps answering, and every RPC
answers well inside KEDA's 3 s budget even while Prometheus hangs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fake_http import FakeHTTPServer
from procs import closed_port
from scaler.devtools.backfill import OpenMetricsWriter
from scaler.errors import MetricsUnavailable
from service_harness import T, add_history, busy, history_end, loop_of, rpc_error, running_scaler, scrape, test_plan, trigger, write_plans

E = history_end()


async def _metrics_text(server) -> str:
    return await scrape(server)


async def _unavailable(keda, plan: str, pool: str, *words: str) -> None:
    for call in ("GetMetrics", "IsActive"):
        if call == "GetMetrics":
            err = await rpc_error(keda.poll(trigger(plan, pool)))
        else:
            err = await rpc_error(keda.stub.IsActive(keda.ref(trigger(plan, pool)), timeout=3))
        assert err.code() == grpc.StatusCode.UNAVAILABLE, (call, err.details())
        for word in words:
            assert word in err.details(), (call, err.details())


async def test_prometheus_down_from_the_start(tmp_path: Path) -> None:
    write_plans(tmp_path, [test_plan("llama-8b", f"http://127.0.0.1:{closed_port()}", "x")])
    async with running_scaler(tmp_path) as (server, keda):
        with pytest.raises(MetricsUnavailable):
            await loop_of(server, "llama-8b").warm_up(E)
        await _unavailable(keda, "llama-8b", "prefill", "no decision yet", "Connection refused")
        spec = await keda.metric_spec(trigger("llama-8b", "prefill"))
        assert spec.metricSpecs[0].metricName == "dynplan-llama-8b-prefill"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            live = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=2)
            assert live.status == health_pb2.HealthCheckResponse.SERVING
        text = await _metrics_text(server)
        assert 'dynplan_prometheus_query_errors_total{kind="warmup",namespace="inference",plan="llama-8b"} 1.0' in text
        assert "dynplan_desired_replicas{" not in text


async def test_last_good_decision_serves_until_stale(tmp_path: Path, prom_factory) -> None:
    w = add_history(OpenMetricsWriter(), "inference-llama-8b", [busy(50)] * 3, E)
    prom = prom_factory(history=w)
    write_plans(tmp_path, [test_plan("llama-8b", prom.url, "inference-llama-8b")])
    # bound = 0.15 x 10 s = 1.5 s
    async with running_scaler(tmp_path, staleness_factor=0.15) as (server, keda):
        loop = loop_of(server, "llama-8b")
        await loop.warm_up(E)
        prom.stop()
        with pytest.raises(MetricsUnavailable):
            await loop.tick_throughput(E + T)
        # Within the bound: the last good decision, not an error and not a zero.
        [r] = await keda.poll(trigger("llama-8b", "prefill"))
        assert (r.raw_int, r.raw_float, r.active) == (4, 4.0, True)
        assert 'dynplan_prometheus_query_errors_total{kind="throughput",namespace="inference",plan="llama-8b"} 1.0' in await _metrics_text(server)
        await asyncio.sleep(max(0.0, loop.latest.made_at + 1.6 - time.time()))
        await _unavailable(keda, "llama-8b", "prefill", "staleness bound of 1.5s", "Connection refused")
        assert (await keda.metric_spec(trigger("llama-8b", "prefill"))).metricSpecs[0].targetSizeFloat == 1.0
        # Prometheus back: a new good decision is served again.
        prom.start()
        fixed = test_plan("llama-8b", prom.url, "inference-llama-8b")  # the port changed on restart
        from service_harness import rewrite_plan

        rewrite_plan(tmp_path / "llama-8b-inference.yaml", fixed)
        await server.registry.scan()
        await loop_of(server, "llama-8b").warm_up(E)
        [r] = await keda.poll(trigger("llama-8b", "decode"))
        assert r.value == 3


async def test_hanging_prometheus_never_blocks_rpcs(tmp_path: Path) -> None:
    with FakeHTTPServer(delay=30) as hanging:
        write_plans(tmp_path, [test_plan("llama-8b", hanging.url, "x", timeout_seconds=2.0, retries=1)])
        async with running_scaler(tmp_path, run_loops=True, settle_seconds=0.0) as (server, keda):
            deadline = time.monotonic() + 5
            while not hanging.requests and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert hanging.requests, "the decision loop never queried Prometheus"
            for _ in range(3):
                t0 = time.monotonic()
                await _unavailable(keda, "llama-8b", "decode", "no decision yet")
                spec = await keda.metric_spec(trigger("llama-8b", "decode"))
                assert spec.metricSpecs[0].metricName == "dynplan-llama-8b-decode"
                assert time.monotonic() - t0 < 0.5


async def test_nan_request_count_is_not_a_number_to_scale_on(tmp_path: Path) -> None:
    body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}'
    with FakeHTTPServer(body=body) as nan_prom:
        write_plans(tmp_path, [test_plan("llama-8b", nan_prom.url, "x")])
        async with running_scaler(tmp_path) as (server, keda):
            with pytest.raises(MetricsUnavailable, match="not a count"):
                await loop_of(server, "llama-8b").tick_throughput(E)
            await _unavailable(keda, "llama-8b", "prefill", "no decision yet", "not a count")


async def test_empty_prometheus_is_not_idle(tmp_path: Path, prom_factory) -> None:
    prom = prom_factory()  # real, running, no series at all
    write_plans(tmp_path, [test_plan("llama-8b", prom.url, "inference-llama-8b")])
    async with running_scaler(tmp_path) as (server, keda):
        loop = loop_of(server, "llama-8b")
        with pytest.raises(MetricsUnavailable, match="no history"):
            await loop.warm_up(E)
        with pytest.raises(MetricsUnavailable, match="no request counter"):
            await loop.tick_throughput(E)
        await _unavailable(keda, "llama-8b", "prefill", "no decision yet", "no request counter")
