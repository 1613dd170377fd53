"""Load-based scaling end to end: synthetic Dynamo frontends publish per-worker gauges, a
real Prometheus scrapes them and evaluates the recording rules `dynplan render manifests`
generates, the scaler's decision loop reads them (scaler.prom.reader.read_workers) and
decides, and a KEDA-like client reads the replicas over a real gRPC channel.

Two plans share one Prometheus: a disaggregated plan with both modes (the throughput
decision is the floor) and an aggregated plan scaled on load alone. Worker latencies follow
the lines of tests/unit/test_load.py: TTFT = 0.1 x (queued tokens + ISL) + 100 ms (SLA 500 ms:
4000 tokens, i.e. 900 queued tokens per worker at a mean ISL of 3100) and ITL =
0.5 x blocks + 10 ms (SLA 50 ms: 80 blocks).

Ticks are called directly (no timers): each waits until Prometheus serves the values just
set, so the test does not depend on scheduling.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

from helpers import flat_profile, plan_dict, with_changes, write_plan
from prometheus import PromFactory, PromServer, wait_for_value
from scaler.core.decision import Reason
from scaler.core.observations import WorkerLoad
from scaler.core.plan import Plan
from scaler.devtools.frontend_exporter import SyntheticFrontend
from scaler.errors import MetricsUnavailable
from scaler.naming import rules_file as rules_file_name
from scaler.prom.client import PromClient
from scaler.prom.reader import read_traffic, read_workers
from scaler.render.pipeline import render_manifests
from service_harness import loop_of, running_scaler, trigger

DISAGG, AGG = "llm-disagg", "llm-agg"
NS = {DISAGG: "e2e-disagg", AGG: "e2e-agg"}
LOAD_INTERVAL = 2


def _doc(name: str, url: str) -> dict[str, Any]:
    agg = name == AGG
    doc = plan_dict(
        name=name,
        mode="agg" if agg else "disagg",
        ttft_ms=500,
        itl_ms=50,
        throughput=not agg,
        load=True,
        profile=None if agg else "profile",
        interval_seconds=10,
        correction=False,
    )
    return with_changes(
        doc,
        {
            "spec.scaling.load.intervalSeconds": LOAD_INTERVAL,
            # the disaggregated plan removes at once; the aggregated one after 2 load ticks
            "spec.scaling.load.scaleDownDelaySeconds": 0 if not agg else 2 * LOAD_INTERVAL,
            "spec.metrics": {
                "source": "dynamo",
                "selector": {"dynamo_namespace": NS[name]},
                "prometheus": {"url": url, "timeoutSeconds": 2.0, "retries": 0},
                "useRecordingRules": True,
                "scrapeIntervalSeconds": 1,  # ranges = windows, as this test's windows were written for (the scrape-interval rule: test_sources_scrape30.py)
            },
        },
    )


def _write(directory: Path, url: str) -> list[Path]:
    return [
        write_plan(directory, _doc(DISAGG, url), profile=flat_profile(), filename=f"{DISAGG}.yaml"),
        write_plan(directory, _doc(AGG, url), filename=f"{AGG}.yaml"),
    ]


@pytest.fixture(scope="module")
def cluster(module_prom_factory: PromFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    frontends = {name: SyntheticFrontend(model="llama-8b", dynamo_namespace=ns) for name, ns in NS.items()}
    try:
        ports = [f.serve() for f in frontends.values()]
        # The recording rules exactly as the generator renders them (they do not depend on the URL).
        rendered = tmp_path_factory.mktemp("rendered")
        draft = tmp_path_factory.mktemp("draft")
        render_manifests([str(p) for p in _write(draft, "http://127.0.0.1:9")], str(rendered))
        rules = [rendered / rules_file_name("inference", name) for name in NS]  # plan_dict's namespace
        server: PromServer = module_prom_factory(scrape_targets=[f"127.0.0.1:{p}" for p in ports], rule_files=rules)
        plans = tmp_path_factory.mktemp("plans")
        _write(plans, server.url)
        yield {"frontends": frontends, "server": server, "plans": plans}
    finally:
        for f in frontends.values():
            f.stop()


def _plan(cluster: dict[str, Any], name: str) -> Plan:
    return Plan.model_validate(_doc(name, cluster["server"].url))


async def _workers_when(plan: Plan, ok: Callable[[Sequence[WorkerLoad]], bool], timeout: float = 25.0) -> Sequence[WorkerLoad]:
    """Poll read_workers until `ok` holds for what Prometheus serves (recorded series)."""
    deadline = time.monotonic() + timeout
    seen: Sequence[WorkerLoad] = ()
    async with PromClient(plan.spec.metrics.prometheus) as client:
        while time.monotonic() < deadline:
            seen = await read_workers(client, plan)
            if ok(seen):
                return seen
            await asyncio.sleep(0.25)
    pytest.fail(f"Prometheus never served the expected workers for {plan.name}; last: {seen}", pytrace=False)


def _settled(expected: dict[str, float], attr: str) -> Callable[[Sequence[WorkerLoad]], bool]:
    """Exactly these workers report `attr`, each at its value (the averaging window has rolled over)."""

    def ok(ws: Sequence[WorkerLoad]) -> bool:
        got = {w.worker_id: getattr(w, attr) for w in ws if getattr(w, attr) is not None}
        return set(got) == set(expected) and all(abs(got[k] - v) < 1e-6 for k, v in expected.items())

    return ok


def _prefill(front: SyntheticFrontend, wid: str, wtype: str, queued: float, isl: float) -> None:
    front.set_worker(wid, wtype, active_prefill_tokens=queued, last_isl=isl, last_ttft_s=(0.1 * (queued + isl) + 100) / 1000)


def _decode(front: SyntheticFrontend, wid: str, wtype: str, blocks: float) -> None:
    front.set_worker(wid, wtype, active_decode_blocks=blocks, last_itl_s=(0.5 * blocks + 10) / 1000)


async def test_disaggregated_plan_with_both_modes(cluster: dict[str, Any]) -> None:
    front: SyntheticFrontend = cluster["frontends"][DISAGG]
    plan = _plan(cluster, DISAGG)
    quiet = {"p-0": 100.0, "p-1": 150.0, "p-2": 200.0}
    for (wid, q), isl in zip(quiet.items(), (3000.0, 3100.0, 3200.0)):
        _prefill(front, wid, "prefill", q, isl)
    _decode(front, "d-0", "decode", 10.0)
    await _workers_when(plan, _settled(quiet, "active_prefill_tokens"))
    # 300 requests of ISL 3000 in the throughput window: 30 req/s x 3000 tokens / 40000
    # tokens/s per prefill replica (flat profile) -> a floor of 3 prefill replicas. The
    # counters must have been scraped at 0 first, or increase() cannot see the jump.
    wait_for_value(cluster["server"], f'dynamo_frontend_requests_total{{dynamo_namespace="{NS[DISAGG]}"}} == 0')
    for _ in range(300):
        front.observe_request(3000, 150, 0.2, 0.02, 3.0)
    async with PromClient(plan.spec.metrics.prometheus) as client:
        deadline = time.monotonic() + 20
        while True:
            # increase() extrapolates to the window's end: with few samples after the jump
            # it reads more than 300. Any count in (266.7, 400] still means 3 prefill
            # replicas (ceil(N / 10 s x 3000 / 40000)); decide at exactly that evaluation
            # time (an instant query at a fixed time is repeatable).
            at = time.time()
            try:
                if 299 <= (await read_traffic(client, plan, at=at)).requests <= 400:
                    break
            except MetricsUnavailable:
                pass  # fewer than two samples of the counter in the window yet
            assert time.monotonic() < deadline, "Prometheus never counted the requests"
            await asyncio.sleep(0.25)

    async with running_scaler(cluster["plans"]) as (server, keda):
        loop = loop_of(server, DISAGG)
        d = await loop.tick_throughput(at)
        assert loop.state.throughput_floor == {"prefill": 3, "decode": 1}
        assert d.replicas("prefill") == 3

        # The throughput tick fed no worker points (load ticks own that signal): the first
        # load tick has 3 points, fewer than minObservations, and holds at the floor.
        d = await loop.tick_load()
        assert (d.replicas("prefill"), d.pools["prefill"].reasons[0]) == (3, Reason.LOAD_INSUFFICIENT_DATA)
        # quiet workers: load alone would remove a prefill replica; the floor keeps 3
        d = await loop.tick_load()
        p = d.pools["prefill"]
        assert (p.replicas, p.reasons) == (3, (Reason.LOAD_DOWN, Reason.THROUGHPUT_FLOOR))
        inputs = d.load["prefill"]["ttft"]
        assert inputs.workers == 3 and inputs.slope == pytest.approx(0.1, rel=1e-6)
        assert inputs.capacity_per_worker == pytest.approx(4000 - 3100, rel=1e-6)
        [r] = await keda.poll(trigger(DISAGG, "prefill"))
        assert r.value == 3

        # every prefill worker above its 900-token capacity: one more, served over gRPC
        busy = {"p-0": 1500.0, "p-1": 1600.0, "p-2": 1700.0}
        for (wid, q), isl in zip(busy.items(), (3000.0, 3100.0, 3200.0)):
            _prefill(front, wid, "prefill", q, isl)
        await _workers_when(plan, _settled(busy, "active_prefill_tokens"))
        d = await loop.tick_load()
        assert d.replicas("prefill") == 4 and d.pools["prefill"].reasons[0] is Reason.LOAD_UP
        [r] = await keda.poll(trigger(DISAGG, "prefill"))
        assert r.value == 4
        [r] = await keda.poll(trigger(DISAGG, "decode"))
        assert r.value == 1

        # the fourth replica is not reporting yet: no stacked scale-up
        d = await loop.tick_load()
        assert d.replicas("prefill") == 4 and d.pools["prefill"].reasons[0] is Reason.LOAD_NOT_READY


async def test_aggregated_plan_on_load_alone(cluster: dict[str, Any]) -> None:
    front: SyntheticFrontend = cluster["frontends"][AGG]
    plan = _plan(cluster, AGG)
    # aggregated engines are labelled worker_type="decode"; they publish both signals
    quiet = {"w-0": 100.0, "w-1": 150.0, "w-2": 200.0}
    for (wid, q), isl, blocks in zip(quiet.items(), (3000.0, 3100.0, 3200.0), (10.0, 15.0, 20.0)):
        _prefill(front, wid, "decode", q, isl)
        _decode(front, wid, "decode", blocks)
    await _workers_when(plan, _settled(quiet, "active_prefill_tokens"))

    async with running_scaler(cluster["plans"]) as (server, keda):
        loop = loop_of(server, AGG)
        reasons = []
        for _ in range(3):
            d = await loop.tick_load()
            reasons.append((d.replicas("worker"), d.pools["worker"].reasons[0]))
        # 3 points per signal per tick: no verdict before 5; then both signals say down,
        # which must hold for 2 load ticks (scaleDownDelaySeconds 4 s at a 2 s interval)
        assert reasons == [
            (3, Reason.LOAD_INSUFFICIENT_DATA),
            (3, Reason.LOAD_DOWN_PENDING),
            (2, Reason.LOAD_DOWN),
        ]
        assert d.load["worker"]["ttft"].direction == -1 and d.load["worker"]["itl"].direction == -1
        [r] = await keda.poll(trigger(AGG, "worker"))
        assert r.value == 2

        # the removed worker still reports until its pod is gone: the scale-down is in flight
        d = await loop.tick_load()
        assert d.replicas("worker") == 2 and d.pools["worker"].reasons[0] is Reason.LOAD_NOT_READY
        front.remove_worker("w-2")
        await _workers_when(plan, lambda ws: {w.worker_id for w in ws} == {"w-0", "w-1"})

        # prefill backlog on both remaining workers, decode light: up (either signal suffices)
        busy = {"w-0": 1500.0, "w-1": 1600.0}
        for (wid, q), isl in zip(busy.items(), (3000.0, 3100.0)):
            _prefill(front, wid, "decode", q, isl)
        await _workers_when(plan, _settled(busy, "active_prefill_tokens"))
        d = await loop.tick_load()
        assert d.replicas("worker") == 3 and d.pools["worker"].reasons[0] is Reason.LOAD_UP
        assert d.load["worker"]["ttft"].direction == 1 and d.load["worker"]["itl"].direction == -1
        [r] = await keda.poll(trigger(AGG, "worker"))
        assert r.value == 3
