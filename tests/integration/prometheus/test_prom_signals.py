"""The attainment sizing's signals from a real Prometheus: peak rate, arrival dispersion,
backlog, the fraction of TTFTs over the SLA bucket and ready replicas, read raw and recorded, with known arrivals per 30 s; and the
scaler's decisions on them (the real PlanLoop and `explain`) equal the core's `decide`.

History: 30-s bins of known arrival counts, scraped every 15 s, windows of 180 s ending on
multiples of 180 s (so on Prometheus' 30-s subquery grid). Every request has the same
dyadic ISL/OSL/latencies and completes 0.5 s after it arrives, inside its bin, so every
window's means are exact and idle windows have none. The expected peak rate and dispersion
come from the simulator's own definitions (`scaler.sim.window`) on the same arrival times.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from helpers import linear_profile, plan_dict, with_changes, write_plan
from prometheus import PromFactory, PromServer, wait_for_value
from rules import check_rules, recording_rules, rule_eval_offset
from scaler.core.interpolation import perf_model
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.planner import decide, new_state
from scaler.devtools.backfill import CompletedRequest, OpenMetricsWriter, frontend_backlog, frontend_history
from scaler.devtools.frontend_exporter import SyntheticFrontend
from scaler.explain import explain_decision
from scaler.planfile import load_plan
from scaler.prom import PromClient, PromReader, read_ready, read_traffic_detail, read_traffic_history, read_workers
from scaler.prom.reader import throughput_queries
from scaler.service.loop import LoopSettings, PlanLoop
from scaler.sim.window import arrival_dispersion, peak_rate

T = 180
STEP = 15
BIN = 30
NAMESPACE = "inference"
# Arrivals per 30-s bin, one row per window: steady; a burst; idle; alternating; steady again.
BINS = [
    [5, 5, 5, 5, 5, 5],
    [4, 6, 30, 2, 5, 5],
    [0, 0, 0, 0, 0, 0],
    [10, 0, 10, 0, 10, 0],
    [7, 8, 6, 9, 7, 8],
]
# Requests waiting for a first token from each window's end on (stage gauge; the older
# queued gauge reads 10x, so a test can tell which one was read).
WAITING = [0, 7, 0, 12, 3]
READY_PREFILL = 3  # kube-state-metrics: ready replicas of Deployment llama-prefill
READY_BIG_DECODE = 4  # ... and of big-decode (more than the decode workers reporting)
DECODE_WORKERS = {"d-0": 40.0, "d-1": 60.0}  # per-worker gauge (active decode blocks)
ISL, OSL, TTFT_S, ITL_S, DURATION_S = 1024.0, 128.0, 0.125, 0.0078125, 0.5
# Selectors: all signals; only the older backlog gauge; no backlog gauge, no ready counts.
FULL, OLD_GAUGE, BARE = "ns-full", "ns-old", "ns-bare"
# The TTFT bucket the plans count misses above (one of the synthetic frontend's bounds, above
# TTFT_S: none of FULL's requests miss); SLOW: every 4th request's TTFT is SLOW_TTFT_S, over it.
BUCKET_MS, SLOW, SLOW_TTFT_S = 220.0, "ns-slow", 0.375


def arrival_times(start: float) -> list[float]:
    """Arrival times of BINS, window k starting at start + k*T; inside each bin (b, b + 30],
    0.9 s apart from b + 0.25 (never on a scrape or bin edge)."""
    out = []
    for k, row in enumerate(BINS):
        for i, n in enumerate(row):
            b = start + k * T + i * BIN
            out += [b + 0.25 + 0.9 * j for j in range(n)]
    return out


def expected_window(k: int, start: float, waiting: Optional[float]) -> TrafficWindow:
    """Window k as the scaler must read it, by hand and by the simulator's definitions."""
    arrivals = arrival_times(start)
    end = start + (k + 1) * T
    n = sum(BINS[k])
    means: dict[str, Any] = {}
    if n:
        means = dict(isl=ISL, osl=OSL, ttft_ms=TTFT_S * 1000.0, itl_ms=ITL_S * 1000.0, request_duration_s=DURATION_S,
                     ttft_miss=0.0)
    return TrafficWindow(
        window_seconds=float(T),
        requests=float(n),
        peak_rate=peak_rate(arrivals, end, T),
        arrival_dispersion=arrival_dispersion(arrivals, end, T),
        backlog=waiting,
        **means,
    )


def test_expected_windows_are_the_hand_computed_ones() -> None:
    """The simulator's definitions on BINS give what the bins say (the burst window by hand)."""
    w = expected_window(1, 0.0, None)
    # one-minute sub-windows end every 30 s: 10, 36, 32, 7, 10 arrivals -> 36/60
    assert w.peak_rate == 36 / 60
    # Allan: differences 2, 24, -28, 3, 0; mean of squares 1373/5 over twice the mean bin 52/6
    assert w.arrival_dispersion == pytest.approx((1373 / 5) / (2 * 52 / 6), rel=1e-12)
    assert expected_window(2, 0.0, None).arrival_dispersion is None  # idle: no dispersion
    assert expected_window(2, 0.0, None).peak_rate == 0.0
    assert expected_window(0, 0.0, None).arrival_dispersion == 0.0  # perfectly even bins


def make_doc(name: str, url: str, dynamo_namespace: str, *, recorded: bool = False) -> dict[str, Any]:
    doc = plan_dict(name=name, sizing="attainment", interval_seconds=T, predictor="constant")
    doc["spec"]["metrics"] = {
        "source": "dynamo",
        "selector": {"dynamo_namespace": dynamo_namespace, "model": "llama"},
        "prometheus": {"url": url, "timeoutSeconds": 5, "retries": 1},
        "useRecordingRules": recorded,
        "scrapeIntervalSeconds": 1,  # ranges = windows, as this test's windows were written for (the scrape-interval rule: test_sources_scrape30.py)
    }
    doc["spec"]["rules"] = {"ttftBucketMs": BUCKET_MS}
    return doc


def history(start: float, end: float) -> OpenMetricsWriter:
    """The frontend series of BINS for three selectors, the backlog gauges, the decode
    workers' gauges and kube-state-metrics' ready count of llama-prefill, from 2T before
    `start` (idle windows) to `end`."""
    w = OpenMetricsWriter()
    first = start - 2 * T
    reqs = [CompletedRequest(t + DURATION_S, ISL, OSL, TTFT_S, ITL_S, DURATION_S, started_t=t) for t in arrival_times(start)]
    levels = [(start + (k + 1) * T - 1, n) for k, n in enumerate(WAITING)]
    for ns in (FULL, OLD_GAUGE, BARE):
        labels = {"model": "llama", "dynamo_namespace": ns}
        frontend_history(reqs, start=first, end=end, step=STEP, labels=labels, writer=w)
        if ns == FULL:
            frontend_backlog(levels, start=first, end=end, step=STEP, labels=labels, gauges=[0], writer=w)
        if ns in (FULL, OLD_GAUGE):
            ten = [(t, 10 * n) for t, n in levels]
            frontend_backlog(ten, start=first, end=end, step=STEP, labels=labels, gauges=[1], writer=w)
    slow = [CompletedRequest(r.t, r.isl, r.osl, SLOW_TTFT_S if i % 4 == 3 else r.ttft_s, r.itl_s, r.duration_s, started_t=r.started_t)
            for i, r in enumerate(reqs)]
    frontend_history(slow, start=first, end=end, step=STEP, labels={"model": "llama", "dynamo_namespace": SLOW}, writer=w)
    times = [first + i * STEP for i in range(int((end - first) // STEP) + 1)]
    for wid, blocks in DECODE_WORKERS.items():
        labels = {"model": "llama", "dynamo_namespace": FULL, "worker_id": wid, "worker_type": "decode"}
        w.gauge("dynamo_frontend_worker_active_decode_blocks", labels, [(t, blocks) for t in times])
    for deployment, ready in (("llama-prefill", READY_PREFILL), ("big-decode", READY_BIG_DECODE)):
        ksm = {"namespace": NAMESPACE, "deployment": deployment, "job": "kube-state-metrics"}
        w.gauge("kube_deployment_status_replicas_ready", ksm, [(t, float(ready)) for t in times])
    return w


@pytest.fixture(scope="module")
def grid(module_prom_factory: PromFactory) -> dict[str, Any]:
    """History on the 30-s grid: window ends are multiples of 180 s, scrapes every 15 s."""
    start = float(int(time.time()) // 3600 * 3600 - 4 * 3600)
    end = start + (len(BINS) + 1) * T
    server = module_prom_factory(history=history(start, end))
    return {"server": server, "start": start, "ends": [start + (k + 1) * T for k in range(len(BINS))]}


def plan_at(server: PromServer, name: str, ns: str, *, recorded: bool = False) -> Any:
    return load_plan_doc(make_doc(name, server.url, ns, recorded=recorded))


def load_plan_doc(doc: dict[str, Any]) -> Any:
    from scaler.core.plan import Plan

    return Plan.model_validate(doc)


async def test_raw_signals_are_the_simulators_definitions(grid: dict[str, Any]) -> None:
    plan = plan_at(grid["server"], "full", FULL)
    async with PromClient(plan.spec.metrics.prometheus) as client:
        for k, end in enumerate(grid["ends"]):
            reading = await read_traffic_detail(client, plan, at=end)
            assert set(reading.paths.values()) == {"raw"}, reading.paths
            assert reading.window == expected_window(k, grid["start"], float(WAITING[k])), k


async def test_ttft_miss_is_the_fraction_over_the_sla_bucket(grid: dict[str, Any]) -> None:
    """1 - bucket{le=SLA} / count over the window: every 4th request over the bucket."""
    plan = plan_at(grid["server"], "slow", SLOW)
    arrivals = arrival_times(grid["start"])
    async with PromClient(plan.spec.metrics.prometheus) as client:
        for k, end in enumerate(grid["ends"]):
            reading = await read_traffic_detail(client, plan, at=end)
            assert reading.paths["ttft_miss"] == "raw"
            assert 'le="0.22"' in reading.queries["ttft_miss"]
            inside = [i for i, t in enumerate(arrivals) if end - T <= t < end]
            if not inside:
                assert reading.window.ttft_miss is None  # 0/0 on an idle window: no value
                continue
            over = sum(1 for i in inside if i % 4 == 3)
            assert reading.window.ttft_miss == pytest.approx(over / len(inside), abs=1e-12), k
            assert 0 < over < len(inside)


async def test_backlog_prefers_the_stage_gauge_then_the_queued_gauge_then_none(grid: dict[str, Any]) -> None:
    end = grid["ends"][1]
    server = grid["server"]
    got = {}
    for ns in (FULL, OLD_GAUGE, BARE):
        plan = plan_at(server, "p", ns)
        async with PromClient(plan.spec.metrics.prometheus) as client:
            reading = await read_traffic_detail(client, plan, at=end)
        got[ns] = (reading.window.backlog, reading.paths["backlog"])
        # the stage gauge has no model label: its selector drops the model matcher only
        assert f'dynamo_frontend_stage_requests{{dynamo_namespace="{ns}",stage=~"preprocess|route|dispatch"}}' in reading.queries["backlog"]
        assert f'dynamo_frontend_queued_requests{{dynamo_namespace="{ns}",model="llama"}}' in reading.queries["backlog"]
    assert got == {FULL: (7.0, "raw"), OLD_GAUGE: (70.0, "raw"), BARE: (None, "none")}


async def test_recorded_signals_equal_the_raw_fallback(module_prom_factory: PromFactory, tmp_path: Path) -> None:
    """Rules backfilled by promtool (evaluated at their own phase): at every evaluation, the
    recorded peak rate, dispersion and backlog are the raw expressions' values."""
    plan = load_plan_doc(make_doc("rec", "http://127.0.0.1:9", FULL, recorded=True))
    rules = recording_rules(plan, tmp_path / "rules.yml", kinds=("throughput",))
    check_rules(rules)
    near = int(time.time()) // 3600 * 3600 - 4 * 3600
    phase = rule_eval_offset(rules, STEP, near)
    start = near + phase
    end = start + (len(BINS) + 1) * T
    server = module_prom_factory(history=history(start, end))
    server.backfill_rules(rules, int(start - 2 * T), int(end) + 1, eval_interval=f"{STEP}s")
    recorded = load_plan_doc(make_doc("rec", server.url, FULL, recorded=True))
    raw = load_plan_doc(make_doc("rec", server.url, FULL, recorded=False))
    async with PromClient(recorded.spec.metrics.prometheus) as client:
        # window ends and, between them, evaluations off the 30-s grid of the subqueries
        for t in [start + (k + 1) * T for k in range(len(BINS))] + [start + 2 * T + 45, start + 4 * T + 105]:
            a = await read_traffic_detail(client, recorded, at=t)
            b = await read_traffic_detail(client, raw, at=t)
            assert a.paths == {key: "recorded" for key in a.paths}, a.paths
            assert set(b.paths.values()) == {"raw"}
            assert a.window == b.window, t
            assert a.window.peak_rate is not None and a.window.backlog is not None
    # the history grid (range queries) reads the same windows as instant queries
    async with PromClient(recorded.spec.metrics.prometheus) as client:
        last = start + len(BINS) * T
        windows = await read_traffic_history(client, recorded, end=last, intervals=len(BINS))
        singles = [(await read_traffic_detail(client, recorded, at=last - (len(BINS) - 1 - k) * T)).window for k in range(len(BINS))]
    assert windows == singles


async def test_ready_replicas_from_kube_state_metrics_then_workers_then_nothing(grid: dict[str, Any]) -> None:
    end = grid["ends"][3]
    server = grid["server"]
    plan = plan_at(server, "full", FULL)
    async with PromClient(plan.spec.metrics.prometheus) as client:
        workers = await read_workers(client, plan, at=end)
        assert workers == tuple(WorkerLoad(wid, "decode", active_decode_blocks=b) for wid, b in DECODE_WORKERS.items())
        reading = await read_ready(client, plan, end, workers)
        assert dict(reading.counts) == {"prefill": READY_PREFILL, "decode": len(DECODE_WORKERS)}
        assert dict(reading.sources) == {"prefill": "kube-state-metrics", "decode": "workers"}
        assert reading.queries["prefill"] == 'max(kube_deployment_status_replicas_ready{deployment="llama-prefill",namespace="inference"})'
        # no series anywhere: no entry (the core then uses its previous decision)
        other = load_plan_doc(with_changes(make_doc("bare", server.url, BARE), {
            "spec.pools.prefill.scaleTargetRef.name": "gone-prefill",
            "spec.pools.decode.scaleTargetRef.name": "gone-decode",
        }))
        nothing = await read_ready(client, other, end, await read_workers(client, other, at=end))
        assert dict(nothing.counts) == {} and set(nothing.sources.values()) == {"none"}
        # a scale target kube-state-metrics does not report (Dynamo's adapter): workers only
        adapter = load_plan_doc(with_changes(make_doc("dgd", server.url, FULL), {
            "spec.pools.prefill.scaleTargetRef": {"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeploymentScalingAdapter", "name": "llama-prefill"},
        }))
        via_workers = await read_ready(client, adapter, end, workers)
        assert "prefill" not in via_workers.queries and dict(via_workers.counts) == {"decode": 2}
        # sizing: dynamo reads no kube-state-metrics (and none of the attainment series)
        dynamo = load_plan_doc(with_changes(make_doc("dyn", server.url, FULL), {"spec.scaling.throughput.sizing": "dynamo"}))
        assert (await read_ready(client, dynamo, end, workers)).queries == {}
        assert set(throughput_queries(dynamo)) == {"requests", "isl", "osl", "ttft_ms", "itl_ms", "request_duration_s"}


async def test_missing_signals_are_none_and_warned_once(grid: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    server = grid["server"]
    plan = load_plan_doc(with_changes(make_doc("bare", server.url, BARE), {
        "spec.pools.prefill.scaleTargetRef.name": "gone-prefill",
        "spec.pools.decode.scaleTargetRef.name": "gone-decode",
    }))
    caplog.set_level(logging.INFO, logger="dynplan.prom")
    async with PromClient(plan.spec.metrics.prometheus) as client:
        reader = PromReader(client)
        for end in grid["ends"][:3]:
            window = await reader.traffic(plan, end)
            assert window.backlog is None and window.peak_rate is not None
            workers = await reader.workers(plan, end)
            assert await reader.ready(plan, end, workers) == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings  # backlog, and the ready count of each pool: once each
    (backlog,) = [m for m in warnings if "backlog" in m]
    assert f'sum(dynamo_frontend_queued_requests{{dynamo_namespace="{BARE}",model="llama"}})' in backlog
    assert "plan inference/bare: no series for backlog" in backlog
    (ready,) = [m for m in warnings if "ready_replicas.prefill" in m]
    assert 'kube_deployment_status_replicas_ready{deployment="gone-prefill",namespace="inference"}' in ready
    assert "previous decision" in ready


async def test_loop_and_explain_decide_like_the_core_on_the_same_windows(grid: dict[str, Any], tmp_path: Path) -> None:
    """Warm-up (replay) and a live tick of the real PlanLoop, and `dynplan explain`, on the
    backfilled burst and backlog: the decisions are the core's on the expected windows.
    The decode pool's ready count (kube-state-metrics: 4) is not the workers reporting (2):
    on the linear profile, the decode slowdown learned depends on it."""
    server, start, ends = grid["server"], grid["start"], grid["ends"]
    doc = with_changes(make_doc("full", server.url, FULL), {"spec.pools.decode.scaleTargetRef.name": "big-decode"})
    path = write_plan(tmp_path, doc, profile=linear_profile(), filename="full.yaml")
    loaded = load_plan(str(path))
    plan, model = loaded.plan, perf_model(linear_profile())
    windows = [expected_window(k, start, float(WAITING[k])) for k in range(len(BINS))]
    workers = tuple(WorkerLoad(wid, "decode", active_decode_blocks=b) for wid, b in DECODE_WORKERS.items())
    ready = {"prefill": READY_PREFILL, "decode": READY_BIG_DECODE}

    # the core, by hand: every window but the last without ready counts (history has none)
    def core(ws: list[TrafficWindow], last_end: float) -> list[Any]:
        state = new_state(plan)
        first = last_end - (len(ws) - 1) * T
        out = []
        for i, w in enumerate(ws):
            last = i == len(ws) - 1
            obs = Observation(timestamp=first + i * T, traffic=w, workers=workers if last else (),
                              ready_replicas=ready if last else {})
            out.append(decide(plan, model, obs, state))
        return [d.to_dict() for d in out]

    async with PromClient(plan.spec.metrics.prometheus) as client:
        loop = PlanLoop(loaded, PromReader(client), settings=LoopSettings(warmup_intervals=4), clock=lambda: ends[-1] + 60)
        warm = await loop.warm_up(ends[3])
        live = await loop.tick_throughput(ends[4])
    # the warm-up's decision has the ready counts on its own window; the live tick's state
    # learned that window without them (ready counts go into their window's decision only,
    # as on the fold), and its own window with them
    want = [core(windows[:4], ends[3])[-1], core(windows[:5], ends[4])[-1]]
    assert loop.replayed == 4
    assert [warm.to_dict(), live.to_dict()] == want
    # the burst and the backlog were used
    att = live.throughput.attainment
    assert att.backlog == WAITING[4] and att.burst_factor > 1.0 and att.dispersion > 1.0

    # explain (default warm-up: everything Prometheus has, two idle windows before the data)
    explained = await explain_decision(str(path), at=ends[4] + 20)
    idle = TrafficWindow(window_seconds=float(T), requests=0.0, peak_rate=0.0, backlog=0.0)
    assert explained.window_end == ends[4] and explained.replayed_windows == len(BINS) + 2
    assert explained.decision.to_dict() == core([idle, idle] + windows, ends[4])[-1]


async def test_live_backlog_from_the_fake_frontend(prom_factory: PromFactory) -> None:
    frontend = SyntheticFrontend(model="llama", dynamo_namespace=FULL)
    port = frontend.serve()
    try:
        frontend.add_waiting(5)
        frontend.add_waiting(-2)
        server = prom_factory(scrape_targets=[f"127.0.0.1:{port}"])
        wait_for_value(server, 'sum(dynamo_frontend_stage_requests{stage="dispatch"}) == 3', timeout=25)
        wait_for_value(server, "sum(dynamo_frontend_queued_requests) == 3", timeout=5)
        # two scrapes of the request counter: the window has a count (0)
        wait_for_value(server, "count_over_time(dynamo_frontend_requests_started_total[1m]) >= 2", timeout=10)
        plan = plan_at(server, "live", FULL)
        async with PromClient(plan.spec.metrics.prometheus) as client:
            reading = await read_traffic_detail(client, plan)
        assert reading.window.backlog == 3.0 and reading.paths["backlog"] == "raw"
    finally:
        frontend.stop()
