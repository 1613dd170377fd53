"""Reads shared across plans (`scaler.prom.batch.SharedReads`) against a real Prometheus:
every plan gets exactly what its own queries return, with one query per recorded series
for all plans, and its own query only where the shared answer cannot stand for it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from helpers import plan_dict
from prometheus import PromFactory
from scaler.core.plan import Plan
from scaler.devtools.backfill import CompletedRequest, OpenMetricsWriter, frontend_history
from scaler.prom import (
    PromClient,
    SharedReads,
    read_ready,
    read_traffic_detail,
    read_traffic_history_grid,
    read_workers,
    read_workers_history,
    throughput_series,
)
from scaler.prom.reader import WORKER_SERIES
from scaler.sources import NAMESPACE_LABEL, PLAN_LABEL, plan_record_name

T = 30  # throughput interval
L = 10  # load interval
STEP = 10  # sample spacing of the backfilled series
RECORDED = ("alpha", "beta", "gamma")  # plans with recorded series (gamma: only the later half)
RAW = "delta"  # a plan with no recorded series: raw frontend history only


def make_plan(name: str, url: str) -> Plan:
    doc = plan_dict(name=name, interval_seconds=T, load=True, sizing="attainment")
    doc["spec"]["scaling"]["load"]["intervalSeconds"] = L
    doc["spec"]["pools"]["prefill"]["scaleTargetRef"] = {"name": f"{name}-prefill"}
    doc["spec"]["pools"]["decode"]["scaleTargetRef"] = {"name": f"{name}-decode"}
    doc["spec"]["metrics"] = {
        "source": "dynamo",
        "selector": {"dynamo_namespace": name},
        "useRecordingRules": True,
        "scrapeIntervalSeconds": 1,
        "prometheus": {"url": url, "timeoutSeconds": 5, "retries": 0},
    }
    return Plan.model_validate(doc)


def _points(start: float, end: float, f: Any) -> list[tuple[float, float]]:
    n = int((end - start) // STEP) + 1
    return [(start + i * STEP, f(i)) for i in range(n)]


@pytest.fixture(scope="module")
def env(module_prom_factory: PromFactory) -> dict[str, Any]:
    start = int(time.time()) // 3600 * 3600 - 2 * 3600
    end = start + 40 * STEP
    half = start + 20 * STEP
    w = OpenMetricsWriter()
    probe = make_plan("probe", "http://127.0.0.1:9")
    for k, name in enumerate(RECORDED):
        first = half if name == "gamma" else start
        for j, s in enumerate(throughput_series(probe)):
            rec = plan_record_name(probe, s, T)
            w.gauge(rec, {PLAN_LABEL: name, NAMESPACE_LABEL: "inference"}, _points(first, end, lambda i, k=k, j=j: 10.0 * (k + 1) + j + (i % 7)))
        for j, s in enumerate(WORKER_SERIES):
            rec = plan_record_name(probe, s, L)
            for wid, wtype in (("p0", "prefill"), ("d0", "decode"), ("d1", "decode")):
                labels = {PLAN_LABEL: name, NAMESPACE_LABEL: "inference", "worker_id": f"{name}-{wid}", "worker_type": wtype}
                w.gauge(rec, labels, _points(first, end, lambda i, k=k, j=j: 1.0 + k + j + (i % 3)))
        for pool in ("prefill", "decode"):
            labels = {"namespace": "inference", "deployment": f"{name}-{pool}"}
            w.gauge("kube_deployment_status_replicas_ready", labels, _points(start, end, lambda i, k=k: float(k + 2)))
    reqs = [CompletedRequest(start + 5 + i * 7.0, 3000, 150, 0.2, 0.01, 2.0) for i in range(50)]
    frontend_history(reqs, start=start, end=end, step=STEP, labels={"model": "llama", "dynamo_namespace": RAW}, writer=w)
    server = module_prom_factory(history=w)
    return {"server": server, "start": start, "end": end, "half": half}


async def _both(env: dict[str, Any], read: Any) -> tuple[list[Any], list[Any], SharedReads]:
    """`read(client, plan, shared)` for every plan, alone (shared=None) and through one
    SharedReads, all plans at once as the scaler's loops do."""
    plans = [make_plan(n, env["server"].url) for n in (*RECORDED, RAW)]
    async with PromClient(plans[0].spec.metrics.prometheus) as client:
        alone = [await read(client, p, None) for p in plans]
        shared = SharedReads(client)
        together = await asyncio.gather(*(read(client, p, shared) for p in plans))
    return alone, list(together), shared


async def test_instant_traffic_is_the_per_plan_answer_from_one_query_per_series(env: dict[str, Any]) -> None:
    at = env["end"] - 2 * STEP

    async def read(client: PromClient, plan: Plan, shared: SharedReads | None) -> Any:
        r = await read_traffic_detail(client, plan, at, shared=shared)
        return (r.window, dict(r.paths))

    alone, together, shared = await _both(env, read)
    assert together == alone
    assert [paths["requests"] for _, paths in alone] == ["recorded", "recorded", "recorded", "raw"]
    n = len(throughput_series(make_plan("x", "http://h")))
    assert alone[0][0].requests == pytest.approx(10.0 + (38 % 7))  # alpha, series 0 at step 38
    # one query per series for the four plans, plus delta's own queries (no recorded series)
    assert (shared.queries, shared.shared, shared.fallbacks) == (n, 3 * n, n)


async def test_history_ranges_shared_only_where_the_recorded_series_cover_every_step(env: dict[str, Any]) -> None:
    end = env["end"] - 2 * STEP
    intervals = 12  # reaches before gamma's first recorded sample

    async def read(client: PromClient, plan: Plan, shared: SharedReads | None) -> Any:
        return await read_traffic_history_grid(client, plan, end, intervals, shared=shared)

    alone, together, shared = await _both(env, read)
    assert together == alone
    n = len(throughput_series(make_plan("x", "http://h")))
    # alpha and beta from the shared ranges; gamma (gaps) and delta (none) their own
    assert (shared.queries, shared.shared, shared.fallbacks) == (n, 2 * n, 2 * n)
    assert [w is None for _, w in alone[2]][:4] == [True] * 4  # gamma: no data before its rules


async def test_workers_and_their_history(env: dict[str, Any]) -> None:
    at = env["end"] - 2 * STEP

    async def read(client: PromClient, plan: Plan, shared: SharedReads | None) -> Any:
        now = await read_workers(client, plan, at, shared=shared)
        past = await read_workers_history(client, plan, at, 5, shared=shared)
        return now, past

    alone, together, shared = await _both(env, read)
    assert together == alone
    assert [len(now) for now, _ in alone] == [3, 3, 3, 0]
    assert shared.queries == 2 * len(WORKER_SERIES)  # one instant and one range per series


async def test_ready_counts_from_one_aggregate(env: dict[str, Any]) -> None:
    at = env["end"] - 2 * STEP

    async def read(client: PromClient, plan: Plan, shared: SharedReads | None) -> Any:
        r = await read_ready(client, plan, at, (), shared=shared)
        return dict(r.counts), dict(r.sources)

    alone, together, shared = await _both(env, read)
    assert together == alone
    assert [c for c, _ in alone] == [{"prefill": 2, "decode": 2}, {"prefill": 3, "decode": 3}, {"prefill": 4, "decode": 4}, {}]
    # one aggregate for all plans and pools; delta's absence is an answer, not a reason to ask again
    assert (shared.queries, shared.fallbacks) == (1, 0)


async def test_a_failed_shared_query_fails_every_plan_and_is_not_kept(module_prom_factory: PromFactory) -> None:
    plan = make_plan("alpha", "http://127.0.0.1:9")  # nothing listens there
    async with PromClient(plan.spec.metrics.prometheus) as client:
        shared = SharedReads(client)
        from scaler.errors import MetricsUnavailable

        results = await asyncio.gather(*(read_ready(client, plan, 1000.0, (), shared=shared) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, MetricsUnavailable) for r in results)
        assert shared.queries == 1  # the three plans waited for the one query
        with pytest.raises(MetricsUnavailable):
            await read_ready(client, plan, 1000.0, (), shared=shared)
        assert shared.queries == 2  # not kept: asked again
