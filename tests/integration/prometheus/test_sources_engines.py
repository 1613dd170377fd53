"""The engine sources (vLLM, SGLang) against a real Prometheus: exact windows and per-pod
loads from backfilled engine series, the recorded series equal to the raw PromQL at the
same instants, a selector that matches nothing unavailable (never 0), vLLM's renamed KV
gauge, and the core's decision on what the reader gives equal to its decision on the
known traffic.

History: a disaggregated deployment, two prefill and two decode pods (plus a decoy pod
each selector must exclude), scraped every 15 s; windows of 60 s on a 15-s grid aligned
with the rule backfill. Each request is finished on a prefill pod (one output token, TTFT)
and on a decode pod (the whole request), as llm-d's P/D sidecar and SGLang's PD router do.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from helpers import linear_profile, plan_dict, with_changes
from prometheus import PromFactory, PromServer, wait_for_value
from rules import check_rules
from scaler.core.interpolation import perf_model
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import decide, new_state
from scaler.devtools.backfill import CompletedRequest, engine_history
from scaler.devtools.frontend_exporter import SyntheticEngines
from scaler.errors import MetricsUnavailable
from scaler.prom import PromClient, read_traffic_detail, read_workers
from scaler.render.rules import rule_groups
from scaler.sources import SOURCES

T = 60
L = 30  # load interval: two 15-s scrapes, so read over four (60 s: sources.query_range)
STEP = 15
NS = "inference"
PODS = {"llama-prefill-0": "prefill", "llama-prefill-1": "prefill", "llama-decode-0": "decode", "llama-decode-1": "decode"}
POOL_SELECTORS = {"prefill": {"pod": "=~llama-prefill-.*"}, "decode": {"pod": "=~llama-decode-.*"}}
# Requests per window: (offset s, isl, osl, ttft s, itl s, duration s); dyadic values.
WINDOWS: list[list[tuple[float, float, float, float, float, float]]] = [
    [(5, 1024, 5, 0.25, 0.015625, 1.0), (20, 2048, 9, 0.5, 0.03125, 2.0), (40, 512, 3, 0.125, 0.0078125, 0.5)],
    [],  # idle
    [(10, 4096, 17, 1.0, 0.0625, 4.0), (50, 1024, 1, 0.25, 0.0, 0.25)],
]
# The TTFT bucket each source's plan counts misses above (one of its engine's bounds).
TTFT_BUCKET_MS = {"vllm": 250.0, "sglang": 200.0}
# Load levels per pod, constant: (running, waiting, kv)
LOAD = {"llama-prefill-0": (2, 3, 0.25), "llama-prefill-1": (1, 1, 0.125), "llama-decode-0": (8, 0, 0.5), "llama-decode-1": (4, 2, 0.75)}


def expected_window(
    reqs: list[tuple[float, float, float, float, float, float]], backlog: float, bucket_ms: Optional[float] = None
) -> TrafficWindow:
    """By hand: decode pods give count, ISL, OSL, duration and the token-weighted ITL (one
    observation per token after the first); prefill pods the TTFT of every request, and the
    fraction of them above `bucket_ms`."""
    n = len(reqs)
    if n == 0:
        return TrafficWindow(window_seconds=T, requests=0.0, peak_rate=0.0, backlog=backlog)
    gaps = sum(o - 1 for _, _, o, _, _, _ in reqs)
    # engines count requests as they finish: the burst signals see completions (two 30-s bins)
    first, second = sum(1 for r in reqs if r[0] <= 30), sum(1 for r in reqs if r[0] > 30)
    return TrafficWindow(
        window_seconds=T,
        requests=float(n),
        isl=sum(r[1] for r in reqs) / n,
        osl=sum(r[2] for r in reqs) / n,
        ttft_ms=1000.0 * sum(r[3] for r in reqs) / n,
        itl_ms=1000.0 * sum(r[4] * (r[2] - 1) for r in reqs) / gaps if gaps else None,
        request_duration_s=sum(r[5] for r in reqs) / n,
        peak_rate=n / T,
        arrival_dispersion=(second - first) ** 2 / (second + first),
        backlog=backlog,
        ttft_miss=None if bucket_ms is None else sum(1 for r in reqs if r[3] * 1000.0 > bucket_ms) / n,
    )


def make_plan(source: str, url: str, *, recorded: bool = False, name: str = "eng", selector: Optional[dict] = None, mode: str = "disagg") -> Plan:
    doc = plan_dict(name=name, mode=mode, interval_seconds=T, load=True, sizing="attainment")
    doc = with_changes(doc, {
        "spec.scaling.load.intervalSeconds": L,
        "spec.metrics": {
            "source": source,
            "selector": selector if selector is not None else {"namespace": NS, "model_name": "llama"},
            "useRecordingRules": recorded,
            "scrapeIntervalSeconds": STEP,
            "prometheus": {"url": url},
        },
    })
    doc["spec"]["rules"] = {"ttftBucketMs": TTFT_BUCKET_MS[source]}
    if source == "vllm" and mode == "disagg":
        for pool, sel in POOL_SELECTORS.items():
            doc["spec"]["pools"][pool]["selector"] = sel
    elif source == "vllm":
        doc["spec"]["pools"]["worker"]["selector"] = {"pod": "=~llama-.*"}
    return Plan.model_validate(doc)


def write_rules(plan: Plan, path: Path) -> Path:
    groups = [
        {"name": g.name, "interval": g.interval, "rules": [{"record": r.record, "expr": r.expr, "labels": dict(r.labels)} for r in g.rules]}
        for g in rule_groups(plan)
    ]
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@pytest.fixture(scope="module", params=["vllm", "sglang"])
def history(request: pytest.FixtureRequest, module_prom_factory: PromFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = request.param
    d = tmp_path_factory.mktemp(f"rules-{source}")
    rules = write_rules(make_plan(source, "http://127.0.0.1:9", recorded=True), d / "rules.yml")
    check_rules(rules)
    near = int(time.time()) // 3600 * 3600 - 3 * 3600
    start = float(near)  # scrapes on the window ends; rules are compared at their own instants
    pods = dict(PODS)
    # a decoy each selector must exclude: another deployment's pod (vLLM's regexes), or the
    # same engine_type in another namespace (SGLang's defaults)
    decoy_pod, decoy_ns = ("other-decode-0", NS) if source == "vllm" else ("llama-decode-9", "other")
    reqs: list[tuple[str, CompletedRequest]] = []
    for k, window in enumerate(WINDOWS):
        for i, (off, isl, osl, ttft, itl, dur) in enumerate(window):
            t = start + k * T + off
            reqs.append((f"llama-prefill-{i % 2}", CompletedRequest(t, isl, 1, ttft, 0.0, ttft)))
            reqs.append((f"llama-decode-{i % 2}", CompletedRequest(t, isl, osl, ttft, itl, dur)))
    end = start + (len(WINDOWS) + 1) * T
    load = [(pod, start, *lvl) for pod, lvl in LOAD.items()]
    src = SOURCES[source]
    # vLLM version drift: one decode pod is an older vLLM with only gpu_cache_usage_perc
    kv = {"llama-decode-1": "vllm:gpu_cache_usage_perc"} if source == "vllm" else None
    w = engine_history(reqs, pods=pods, start=start, end=end, step=STEP, source=src, model="llama", namespace=NS, load=load, kv_metric=kv)
    decoy = [(decoy_pod, CompletedRequest(start + k * T + 30, 99999, 999, 9.0, 9.0, 99.0)) for k in range(len(WINDOWS))]
    engine_history(decoy, pods={decoy_pod: "decode"}, start=start, end=end, step=STEP, source=src, model="llama",
                   namespace=decoy_ns, load=[(decoy_pod, start, 99, 99, 0.99)], writer=w)
    server = module_prom_factory(history=w)
    server.backfill_rules(rules, int(start), int(end) + 1, eval_interval=f"{STEP}s")
    return {"source": source, "server": server, "start": start, "end": end}


def assert_same_window(got: TrafficWindow, want: TrafficWindow) -> None:
    for f in ("window_seconds", "requests", "isl", "osl", "ttft_ms", "itl_ms", "request_duration_s", "peak_rate", "arrival_dispersion", "backlog",
              "ttft_miss"):
        g, e = getattr(got, f), getattr(want, f)
        assert (g is None and e is None) or g == pytest.approx(e, rel=1e-9), (f, got, want)


async def test_raw_windows_are_exact_and_the_decision_is_the_cores(history: dict[str, Any]) -> None:
    plan = make_plan(history["source"], history["server"].url)
    backlog = float(LOAD["llama-prefill-0"][1] + LOAD["llama-prefill-1"][1])  # prefill pods' waiting, ranks once
    model = perf_model(linear_profile())
    async with PromClient(plan.spec.metrics.prometheus) as client:
        for k, reqs in enumerate(WINDOWS):
            reading = await read_traffic_detail(client, plan, at=history["start"] + (k + 1) * T)
            want = expected_window(reqs, backlog, TTFT_BUCKET_MS[history["source"]])
            assert_same_window(reading.window, want)
            assert "raw" in set(reading.paths.values()) and "recorded" not in set(reading.paths.values())
            got_d = decide(plan, model, Observation(timestamp=0.0, traffic=reading.window), new_state(plan))
            want_d = decide(plan, model, Observation(timestamp=0.0, traffic=want), new_state(plan))
            assert got_d.to_dict() == want_d.to_dict()


async def test_per_pod_loads_are_exact_with_either_kv_gauge(history: dict[str, Any]) -> None:
    plan = make_plan(history["source"], history["server"].url)
    at = history["start"] + T  # the 60-s range of window 0: offsets 5, 40 (pod 0) and 20 (pod 1)
    async with PromClient(plan.spec.metrics.prometheus) as client:
        workers = {w.worker_id: w for w in await read_workers(client, plan, at=at)}
    assert sorted(workers) == sorted(PODS)  # the decoy is not a worker of this plan
    for pod, (running, waiting, kv) in LOAD.items():
        w = workers[pod]
        assert w.pool == PODS[pod]
        assert w.active_decode_blocks == pytest.approx(kv, rel=1e-9), pod
    # [t-60, t]: pod 0 of each pool finished ISL 1024 and 512 (TTFT 250, 125 ms), pod 1 ISL 2048
    pre0, dec0 = workers["llama-prefill-0"], workers["llama-decode-0"]
    assert pre0.last_isl == pytest.approx(768.0) and pre0.last_ttft_ms == pytest.approx(187.5)
    assert pre0.active_prefill_tokens == pytest.approx(LOAD["llama-prefill-0"][1] * 768.0)
    assert dec0.last_itl_ms == pytest.approx(1000 * (4 * 0.015625 + 2 * 0.0078125) / 6)  # per token gap
    assert workers["llama-prefill-1"].last_ttft_ms == pytest.approx(500.0)
    # at t + 60 (the idle window) nothing finished in the range: no latency, loads still read
    async with PromClient(plan.spec.metrics.prometheus) as client:
        idle = {w.worker_id: w for w in await read_workers(client, plan, at=at + T)}
    assert sorted(idle) == sorted(PODS) and idle["llama-prefill-1"].last_ttft_ms is None


async def test_recorded_series_equal_the_raw_promql_at_the_same_instants(history: dict[str, Any]) -> None:
    raw_plan = make_plan(history["source"], history["server"].url)
    rec_plan = make_plan(history["source"], history["server"].url, recorded=True)
    server: PromServer = history["server"]
    # the instants the rule backfill evaluated at: its samples of the request count
    series = server.query('{__name__=~"dynplan_plan:.*:increase.*", dynplan_plan="eng"}[10m]', at=history["start"] + 3 * T)
    assert series, "the rule backfill recorded nothing"
    instants = [float(t) for t, _ in series[0]["values"]][-8:]
    async with PromClient(raw_plan.spec.metrics.prometheus) as client:
        for at in instants:
            rec, raw = await read_traffic_detail(client, rec_plan, at=at), await read_traffic_detail(client, raw_plan, at=at)
            assert set(rec.paths.values()) <= {"recorded", "none"} and "recorded" in rec.paths.values(), rec.paths
            assert_same_window(rec.window, raw.window)
        # the worker group is evaluated at its own phase: compare at its instants
        kv = server.query('{__name__=~"dynplan_plan_pod:.*:avg_over_time60s", dynplan_plan="eng"}[10m]', at=history["start"] + 3 * T)
        assert len(kv) == len(PODS) and {s["metric"]["dynplan_pool"] for s in kv} == {"prefill", "decode"}
        for at in [float(t) for t, _ in kv[0]["values"]][-8:]:
            rw, ww = await read_workers(client, rec_plan, at=at), await read_workers(client, raw_plan, at=at)
            assert rw == ww and len(rw) == len(PODS)


@pytest.mark.parametrize("recorded", [False, True])
async def test_a_selector_that_matches_nothing_is_unavailable_not_zero(history: dict[str, Any], recorded: bool) -> None:
    plan = make_plan(history["source"], history["server"].url, recorded=recorded, selector={"namespace": "nobody"}, name="nobody")
    async with PromClient(plan.spec.metrics.prometheus) as client:
        with pytest.raises(MetricsUnavailable, match="no request counter .* is the decode pool's engines scraped"):
            await read_traffic_detail(client, plan, at=history["start"] + T)
        assert await read_workers(client, plan, at=history["start"] + T) == ()


async def test_aggregated_reads_every_pod_of_the_one_pool(history: dict[str, Any]) -> None:
    plan = make_plan(history["source"], history["server"].url, mode="agg")
    async with PromClient(plan.spec.metrics.prometheus) as client:
        reading = await read_traffic_detail(client, plan, at=history["start"] + T)
    # aggregated, prefill and decode pods are all "the pool": each request counts twice
    # here because this history is disaggregated; the point is the selector and the pool
    assert reading.window.requests == 2 * len(WINDOWS[0])


async def test_live_scraped_engines_are_read_whichever_way_the_colon_is_stored(prom_factory: PromFactory) -> None:
    """prometheus_client's OpenMetrics output turns `vllm:x` into `vllm_x` in sample lines
    (client_python #1177): a Prometheus that negotiates OpenMetrics stores that name."""
    eng = SyntheticEngines(SOURCES["sglang"], model="llama", namespace=NS)
    for pod, role in (("llama-prefill-0", "prefill"), ("llama-decode-0", "decode")):
        eng.add_pod(pod, role)
        eng.set_load(pod, running=1, waiting=2, kv=4096)
    port = eng.serve()
    try:
        server = prom_factory(scrape_targets=[f"127.0.0.1:{port}"])
        wait_for_value(server, 'count_over_time({__name__=~"sglang[:_]num_requests_total",pod="llama-decode-0"}[1m]) >= 2', timeout=20)
        stored = {r["metric"]["__name__"] for r in server.query('{__name__=~"sglang[:_]num_requests_total"}')}
        eng.observe_disagg("llama-prefill-0", "llama-decode-0", isl=2048, osl=9, ttft_s=0.25, itl_s=0.015625, duration_s=1.0)
        wait_for_value(server, 'sum({__name__=~"sglang[:_]num_requests_total",pod="llama-decode-0"}) == 1', timeout=10)
        plan = make_plan("sglang", server.url)
        async with PromClient(plan.spec.metrics.prometheus) as client:
            reading = await read_traffic_detail(client, plan)
            workers = {w.worker_id: w for w in await read_workers(client, plan)}
    finally:
        eng.stop()
    assert stored <= {"sglang:num_requests_total", "sglang_num_requests_total"} and stored
    assert reading.window.requests >= 0.99 and reading.window.isl == pytest.approx(2048.0)
    assert reading.window.ttft_ms == pytest.approx(250.0) and reading.window.backlog == 2.0
    assert workers["llama-decode-0"].active_decode_blocks == pytest.approx(4096.0)


async def test_the_load_decision_on_the_read_workers_is_the_cores(history: dict[str, Any]) -> None:
    plan = make_plan(history["source"], history["server"].url)
    at = history["start"] + T
    async with PromClient(plan.spec.metrics.prometheus) as client:
        read = await read_workers(client, plan, at=at)
    # by hand: in [t-60, t] (the 30-s load window read over four 15-s scrapes) pod 0 of each
    # pool finished the requests at offsets 5 and 40 (ISL 1024, 512; TTFT 250, 125 ms; on
    # decode 4 and 2 token gaps of 15.625 and 7.8125 ms), pod 1 the one at 20 (ISL 2048,
    # TTFT 500 ms, 8 gaps of 31.25 ms)
    itl0 = 1000 * (4 * 0.015625 + 2 * 0.0078125) / 6
    want = tuple(sorted((
        WorkerLoad("llama-decode-0", "decode", active_prefill_tokens=0.0, active_decode_blocks=0.5, last_ttft_ms=187.5, last_isl=768.0, last_itl_ms=itl0),
        WorkerLoad("llama-decode-1", "decode", active_prefill_tokens=2 * 2048.0, active_decode_blocks=0.75, last_ttft_ms=500.0, last_isl=2048.0, last_itl_ms=31.25),
        WorkerLoad("llama-prefill-0", "prefill", active_prefill_tokens=3 * 768.0, active_decode_blocks=0.25, last_ttft_ms=187.5, last_isl=768.0),
        WorkerLoad("llama-prefill-1", "prefill", active_prefill_tokens=1 * 2048.0, active_decode_blocks=0.125, last_ttft_ms=500.0, last_isl=2048.0),
    ), key=lambda w: (w.pool, w.worker_id)))
    assert [w.worker_id for w in read] == [w.worker_id for w in want]
    for got, exp in zip(read, want):  # ITL means of 6 gaps are not dyadic: equal to 1e-12
        assert replace(got, last_itl_ms=None) == replace(exp, last_itl_ms=None), (got, exp)
        assert (got.last_itl_ms is None) == (exp.last_itl_ms is None) and (got.last_itl_ms or 0) == pytest.approx(exp.last_itl_ms or 0, rel=1e-12)
    model = perf_model(linear_profile())
    state = new_state(plan)
    got_d = decide(plan, model, Observation(timestamp=at, workers=read, ready_replicas={"prefill": 2, "decode": 2}), state)
    want_d = decide(plan, model, Observation(timestamp=at, workers=want, ready_replicas={"prefill": 2, "decode": 2}), new_state(plan))
    assert got_d.to_dict() == want_d.to_dict()
