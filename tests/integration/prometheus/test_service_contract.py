"""`dynplan serve` driven like KEDA over a real gRPC channel, against a real Prometheus
preloaded with known traffic (promtool backfill): the wire contract of docs/operations.md."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keda_client import average_value_replicas, hpa_metric_name
from scaler.devtools.backfill import OpenMetricsWriter
from scaler.proto import externalscaler_pb2 as pb
from scaler.service.logs import event_of
from service_harness import (
    IDLE,
    NAMESPACE,
    T,
    add_history,
    busy,
    history_end,
    loop_of,
    rpc_error,
    running_scaler,
    scrape,
    test_plan,
    trigger,
    write_plans,
)

E = history_end()
KNOWN = [busy(30)] * 6 + [busy(50)] * 6  # decisions: (3, 2) then, at E, (4, 3)
IDLE_TAIL = [busy(30)] * 3 + [IDLE] * 3


@pytest.fixture(scope="module")
def prom(module_prom_factory):
    w = OpenMetricsWriter()
    add_history(w, "inference-llama-8b", KNOWN, E)
    add_history(w, "idle-ns", IDLE_TAIL, E)
    return module_prom_factory(history=w)


@pytest.fixture
def plans(tmp_path: Path, prom) -> Path:
    d = tmp_path / "plans"
    write_plans(d, [
        test_plan("llama-8b", prom.url, "inference-llama-8b"),
        test_plan("idle", prom.url, "idle-ns", min_replicas={"prefill": 0, "decode": 0}),
        test_plan("secret", prom.url, "inference-llama-8b", namespace="tenant-b"),
    ])
    return d


async def test_known_traffic_gives_exact_replicas_in_both_fields(plans: Path) -> None:
    async with running_scaler(plans) as (server, keda):
        decision = await loop_of(server, "llama-8b").warm_up(E)
        assert decision.throughput.observed_rate == pytest.approx(50.0)
        for pool, want in (("prefill", 4), ("decode", 3)):
            [r] = await keda.poll(trigger("llama-8b", pool))
            assert (r.raw_int, r.raw_float) == (want, float(want))
            assert r.value == want and r.target == 1.0 and r.active is True
            assert r.elapsed_s < 1.0
            # The HPA (AverageValue, target 1) lands exactly on the value from any current count.
            for current in (1, 2, want, 7, 16):
                assert average_value_replicas(r.value, r.target, current) == want
            assert await keda.hpa_replicas(trigger("llama-8b", pool), current=1) == want


async def test_metric_spec_needs_no_prometheus_and_no_decision(plans: Path) -> None:
    async with running_scaler(plans) as (server, keda):
        assert loop_of(server, "llama-8b").latest is None
        for pool in ("prefill", "decode"):
            spec = await keda.metric_spec(trigger("llama-8b", pool))
            assert len(spec.metricSpecs) == 1
            ms = spec.metricSpecs[0]
            assert ms.metricName == f"dynplan-llama-8b-{pool}"
            assert (ms.targetSizeFloat, ms.targetSize) == (1.0, 1)
        err = await rpc_error(keda.poll(trigger("llama-8b", "decode")))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "no decision yet" in err.details()


async def test_get_metrics_answers_only_its_own_metric_name(plans: Path) -> None:
    async with running_scaler(plans) as (server, keda):
        await loop_of(server, "llama-8b").warm_up(E)
        ref = keda.ref(trigger("llama-8b", "prefill"))
        ok = await keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="dynplan-llama-8b-prefill"))
        assert [v.metricName for v in ok.metricValues] == ["dynplan-llama-8b-prefill"]
        for wrong in ("dynplan-llama-8b-decode", hpa_metric_name(0, "dynplan-llama-8b-prefill"), ""):
            err = await rpc_error(keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=wrong)))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "metricName" in err.details() and "dynplan-llama-8b-prefill" in err.details()


async def test_idle_traffic_is_real_and_scales_to_the_minimum(plans: Path) -> None:
    async with running_scaler(plans) as (server, keda):
        decision = await loop_of(server, "idle").warm_up(E)
        assert decision.reason.value == "idle"
        assert decision.throughput.observed_rate == 0.0
        assert decision.throughput.observed_isl is None  # Prometheus' NaN mean: no value, not 0
        for pool in ("prefill", "decode"):
            [r] = await keda.poll(trigger("idle", pool))
            assert (r.raw_int, r.raw_float, r.value) == (0, 0.0, 0.0)
            assert r.active is False
        # The busy plan is active (traffic in the window and replicas > 0).
        await loop_of(server, "llama-8b").warm_up(E)
        [r] = await keda.poll(trigger("llama-8b", "decode"))
        assert r.active is True


async def test_other_namespaces_plans_look_missing(plans: Path) -> None:
    async with running_scaler(plans) as (server, keda):
        await loop_of(server, "secret", "tenant-b").warm_up(E)
        [own] = await keda.poll(trigger("secret", "prefill", namespace="tenant-b"))
        assert own.value == 4
        probe = await rpc_error(keda.poll(trigger("secret", "prefill", namespace=NAMESPACE)))
        missing = await rpc_error(keda.poll(trigger("nope", "prefill", namespace=NAMESPACE)))
        assert probe.code() == missing.code() == grpc.StatusCode.NOT_FOUND
        assert probe.details() == "no plan 'secret' in namespace 'inference'"
        assert missing.details() == "no plan 'nope' in namespace 'inference'"
        for rpc in (keda.stub.IsActive, keda.stub.GetMetricSpec):
            err = await rpc_error(rpc(keda.ref(trigger("secret", "decode", namespace=NAMESPACE))))
            assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_metadata_is_invalid_argument_naming_the_key(plans: Path) -> None:
    async with running_scaler(plans) as (server, keda):
        cases = [
            ({"pool": "prefill"}, "'plan'"),
            ({"plan": "llama-8b"}, "'pool'"),
            ({"plan": "llama-8b", "pool": ""}, "'pool'"),
            ({"plan": "llama-8b", "pool": "gpu"}, "'pool'"),
            ({"plan": "llama-8b", "pool": "worker"}, "'pool'"),  # agg pool of a disagg plan
            ({"plan": "llama-8b", "pool": "decode", "pols": "x"}, "'pols'"),  # a misspelt extra key
        ]
        for metadata, key in cases:
            ref = pb.ScaledObjectRef(name="so", namespace=NAMESPACE, scalerMetadata={"scalerAddress": "x:1", **metadata})
            for rpc in (keda.stub.GetMetricSpec, keda.stub.IsActive):
                err = await rpc_error(rpc(ref))
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, metadata
                assert key in err.details(), (metadata, err.details())
        # KEDA's own keys are ignored, not rejected.
        ref = keda.ref(trigger("llama-8b", "prefill", unsafeSsl="true", caCert="x"))
        assert (await keda.stub.GetMetricSpec(ref)).metricSpecs[0].metricName == "dynplan-llama-8b-prefill"


async def test_stream_is_active_sends_true_and_heartbeats(plans: Path) -> None:
    async with running_scaler(plans, heartbeat_seconds=0.2) as (server, keda):
        # Inactive (idle plan at its zero minimum): nothing is pushed.
        await loop_of(server, "idle").warm_up(E)
        idle_stream = keda.stub.StreamIsActive(keda.ref(trigger("idle", "decode")))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(idle_stream.read(), 0.6)
        idle_stream.cancel()
        # Active plan: `true` as soon as it becomes active, then heartbeats.
        stream = keda.stub.StreamIsActive(keda.ref(trigger("llama-8b", "prefill")))
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await loop_of(server, "llama-8b").warm_up(E)
        first = await asyncio.wait_for(stream.read(), 2)
        assert first.result is True and loop.time() - t0 < 0.5
        beats = [await asyncio.wait_for(stream.read(), 2) for _ in range(3)]
        assert all(b.result for b in beats)
        assert 0.4 <= loop.time() - t0 < 2.0
        stream.cancel()
        assert stream.cancelled()
        # The server handler ended with the cancellation (no stream left behind).
        await asyncio.sleep(0.1)


async def test_stream_metric_spec_sends_at_once_and_ends_when_plan_goes(plans: Path) -> None:
    async with running_scaler(plans) as (server, keda):
        stream = keda.stub.StreamMetricSpec(keda.ref(trigger("llama-8b", "decode")))
        first = await asyncio.wait_for(stream.read(), 2)
        assert first == await keda.metric_spec(trigger("llama-8b", "decode"))
        assert first.metricSpecs[0].metricName == "dynplan-llama-8b-decode"
        (plans / "llama-8b-inference.yaml").unlink()
        await server.registry.scan()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(stream.read(), 2)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_metrics_and_decision_log(plans: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dynplan.decision")
    async with running_scaler(plans) as (server, keda):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for service in ("liveness", "readiness", ""):
                resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING, service
        await loop_of(server, "llama-8b").warm_up(E)
        text = await scrape(server)
        assert 'dynplan_desired_replicas{namespace="inference",plan="llama-8b",pool="prefill"} 4.0' in text
        assert 'dynplan_desired_replicas{namespace="inference",plan="llama-8b",pool="decode"} 3.0' in text
        assert 'dynplan_observed{namespace="inference",plan="llama-8b",quantity="rate"} 50.0' in text
        assert 'dynplan_predicted{namespace="inference",plan="llama-8b",quantity="isl"} 3000.0' in text
        assert 'dynplan_decision_reason{dynplan_decision_reason="scale",namespace="inference",plan="llama-8b"} 1.0' in text
        assert 'dynplan_correction_factor{namespace="inference",plan="llama-8b",pool="decode"} 1.0' in text
        assert "dynplan_decision_duration_seconds_count" in text
        assert 'dynplan_last_good_decision_timestamp_seconds{namespace="inference",plan="llama-8b"}' in text
        assert "dynplan_plans_loaded 3.0" in text
        lines = [event_of(r) for r in caplog.records if r.name == "dynplan.decision"]
        [line] = [l for l in lines if l is not None and l["plan"] == "llama-8b"]
        assert line["event"] == "decision" and line["reason"] == "scale"
        assert line["replicas"] == {"prefill": 4, "decode": 3}
        # The history's counters start one window before the traffic: one idle window more.
        assert line["windowEnd"] == E and line["replayedWindows"] == len(KNOWN) + 1
        assert line["decision"]["throughput"]["observedRate"] == 50.0
        assert line["decision"]["throughput"]["predictedIsl"] == 3000.0


async def test_explain_reports_the_scalers_decision(plans: Path) -> None:
    from click.testing import CliRunner

    from scaler.cli import main
    from scaler.explain import explain_decision, render_table

    plan_file = plans / "llama-8b-inference.yaml"
    doc = await explain_decision(str(plan_file), at=E + 3)
    assert doc.window_end == E
    assert {p: d.replicas for p, d in doc.decision.pools.items()} == {"prefill": 4, "decode": 3}
    assert doc.replayed_windows == len(KNOWN) + 1
    table = render_table(doc)
    assert "reason: scale" in table and "rate (req/s)" in table and "50.00" in table
    # Six windows earlier the traffic was 30 req/s: (3, 2). Through the CLI, as JSON.
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["explain", "-f", str(plan_file), "--output", "json", "--at", str(E - 6 * T + 3)]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {p: v["replicas"] for p, v in out["decision"]["pools"].items()} == {"prefill": 3, "decode": 2}
    assert out["decision"]["throughput"]["observedRate"] == 30.0
    assert math.isclose(out["windowEnd"], E - 6 * T)
