"""A plan with `source: vllm` (disaggregated) and one with `source: sglang` (aggregated),
served end to end: a real `dynplan serve` subprocess reads a real Prometheus scraping
synthetic engine pods fed live traffic, and KEDA's GetMetrics answers the replicas the
core's `decide` gives on the window the scaler read; a plan whose pool selector matches
no pod is UNAVAILABLE, never a zero."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Optional

import grpc
import pytest

from helpers import flat_profile, plan_dict, with_changes, write_plan
from keda_client import KedaClient, Trigger
from procs import ServeProcess
from prometheus import PromFactory, wait_for_value
from scaler.core.interpolation import perf_model
from scaler.core.observations import Observation
from scaler.core.plan import Plan
from scaler.core.planner import decide, new_state
from scaler.devtools.frontend_exporter import SyntheticEngines
from scaler.prom import PromClient, read_traffic
from scaler.sources import SOURCES, series_selector

T = 10
NS = "inference"


def plan_doc(name: str, source: str, mode: str, url: str, pools: dict[str, dict[str, str]]) -> dict[str, Any]:
    doc = plan_dict(name=name, mode=mode, interval_seconds=T, predictor="constant", correction=False)
    doc = with_changes(doc, {
        "metadata.namespace": NS,
        "spec.scaling.throughput.predictor.minPoints": 1,
        "spec.metrics": {"source": source, "selector": {"namespace": NS, "model_name": "llama"}, "scrapeIntervalSeconds": 1,
                         "useRecordingRules": True, "prometheus": {"url": url, "timeoutSeconds": 1, "retries": 0}},
    })
    for pool, sel in pools.items():
        doc["spec"]["pools"][pool]["selector"] = sel
    return doc


def feed(eng: SyntheticEngines, stop: threading.Event, disagg: bool) -> None:
    """~8 requests/s, each with known ISL/OSL/latencies, until `stop`."""
    while not stop.is_set():
        if disagg:
            eng.observe_disagg("llama-prefill-0", "llama-decode-0", isl=3000, osl=4, ttft_s=0.05, itl_s=0.005, duration_s=0.1)
        else:
            eng.observe("llama-0", isl=3000, osl=4, ttft_s=0.05, itl_s=0.005, duration_s=0.1)
        stop.wait(0.125)


CASES = {  # plan -> (source, mode, pods -> role, pool selectors)
    "eng-vllm": ("vllm", "disagg", {"llama-prefill-0": "prefill", "llama-decode-0": "decode"},
                 {"prefill": {"pod": "=~llama-prefill-.*"}, "decode": {"pod": "=~llama-decode-.*"}}),
    "eng-sglang": ("sglang", "agg", {"llama-0": "unified"}, {"worker": {"pod": "=~llama-.*"}}),
}


async def test_vllm_and_sglang_plans_served_end_to_end(prom_factory: PromFactory, tmp_path: Path) -> None:
    engines = {}
    for name, (source, mode, pods, _) in CASES.items():
        eng = engines[name] = SyntheticEngines(SOURCES[source], model="llama", namespace=NS)
        for pod, role in pods.items():
            eng.add_pod(pod, role)
            eng.set_load(pod, running=1, waiting=0, kv=0.25)
    stop = threading.Event()
    feeders = [threading.Thread(target=feed, args=(engines[n], stop, CASES[n][1] == "disagg"), daemon=True) for n in CASES]
    ports = [eng.serve() for eng in engines.values()]
    serve: Optional[ServeProcess] = None
    try:
        server = prom_factory(scrape_targets=[f"127.0.0.1:{p}" for p in ports])
        for source, _, pods, _ in CASES.values():
            counter = series_selector(SOURCES[source].requests_total, "{}")
            wait_for_value(server, f"count(count_over_time({counter}[1m]) >= 2) == {len(pods)}", timeout=20)
        for f in feeders:
            f.start()
        plans = tmp_path / "plans"
        plans.mkdir()
        docs = {name: plan_doc(name, source, mode, server.url, pools) for name, (source, mode, _, pools) in CASES.items()}
        for i, (name, doc) in enumerate(docs.items()):
            write_plan(plans, doc, profile=flat_profile() if i == 0 else None, filename=f"{name}.yaml")
        unmatched = {p: {"pod": f"=~nobody-{p}-.*"} for p in CASES["eng-vllm"][3]}
        write_plan(plans, plan_doc("nowhere", "vllm", "disagg", server.url, unmatched), filename="nowhere.yaml")
        serve = ServeProcess(["--plans", str(plans), "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        events = serve.events
        for name in CASES:
            def decided(evs: list[dict[str, Any]], name: str = name) -> bool:
                return any(e.get("event") == "decision" and e.get("kind") == "throughput" and e.get("windowEnd")
                           and e.get("plan") == name for e in evs)

            assert await asyncio.to_thread(serve.wait_for, decided, 40), (name, events[-5:])
        (listening,) = [e for e in events if e.get("event") == "listening"]
        address = f"127.0.0.1:{listening['port']}"
        async with grpc.aio.insecure_channel(address) as channel:
            keda = KedaClient(channel, address)
            for name, doc in docs.items():
                decision = [e for e in events if e.get("event") == "decision" and e.get("plan") == name and e.get("windowEnd")][-1]
                plan = Plan.model_validate(doc)
                async with PromClient(plan.spec.metrics.prometheus) as client:
                    window = await read_traffic(client, plan, at=decision["windowEnd"])
                assert window.requests > 0 and window.isl == pytest.approx(3000.0), name
                want = decide(plan, perf_model(flat_profile()), Observation(timestamp=decision["windowEnd"], traffic=window), new_state(plan))
                assert decision["replicas"] == {p: d.replicas for p, d in want.pools.items()}, name
                for pool in plan.pool_names:
                    (res,) = await _served(keda, Trigger(scaled_object=f"{name}-{pool}", namespace=NS, metadata={"plan": name, "pool": pool}))
                    # the answer is the latest decision: this one, or a later window's
                    assert res.value >= 1, (name, pool, res)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await keda.poll(Trigger(scaled_object="nowhere-decode", namespace=NS, metadata={"plan": "nowhere", "pool": "decode"}))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # the plan that matches nothing failed its reads and never published a decision
        nowhere = [e for e in events if e.get("plan") == "nowhere"]
        assert any(e.get("event") == "decision_failed" for e in nowhere), nowhere[:3]
        assert not any(e.get("event") == "decision" for e in nowhere)
    finally:
        stop.set()
        if serve is not None:
            serve.stop()
        for eng in engines.values():
            eng.stop()


async def _served(keda: KedaClient, ref: Trigger, within: float = 3.0) -> Any:
    """The poll once the serving process has the decision the decider logged (~50 ms later)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await keda.poll(ref)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
