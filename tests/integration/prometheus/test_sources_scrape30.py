"""Reads at kube-prometheus-stack's default scrape interval, 30 s, against a real Prometheus.

History: a disaggregated engine deployment (two prefill, two decode pods) backfilled as
scraped every 30 s at a phase of 7 s (scrapes at :07 and :37; the load ticks at :02, :12, ...), with steady traffic: a request finishes every 2.5 s, alternately on each decode
pod (0.4 requests/s), constant per-pod loads. The plan says `scrapeIntervalSeconds: 30`,
a 10-s load interval and a 60-s throughput interval: both shorter than four scrapes, so
every range is 120 s (`sources.query_range`).

Over 18 load ticks 10 s apart: every pod is seen at every tick with its exact load and
latencies (the 10-s ranges used before this saw them at a third of the ticks, and never a
latency); the request count equals the known traffic; the recorded series equal the raw
PromQL; the rendered rules pass promtool and their generated tests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import linear_profile, plan_dict, with_changes, write_plan
from prometheus import PromFactory, PromServer
from rules import check_rules
from scaler.core.plan import Plan
from scaler.devtools.backfill import CompletedRequest, engine_history
from scaler.prom import PromClient, read_traffic_detail, read_workers
from scaler.render.pipeline import ROLE_RULES_TEST, render_manifests
from scaler.render.rules import rule_groups
from scaler.sources import SOURCES, plan_range

SCRAPE = 30
PHASE = 7
T, L = 60, 10
NS = "inference"
PODS = {"llama-prefill-0": "prefill", "llama-prefill-1": "prefill", "llama-decode-0": "decode", "llama-decode-1": "decode"}
POOL_SELECTORS = {"prefill": {"pod": "=~llama-prefill-.*"}, "decode": {"pod": "=~llama-decode-.*"}}
EVERY = 2.5  # s between finished requests (each one on a prefill and a decode pod)
RATE = 1 / EVERY
ISL, OSL, TTFT, ITL, DURATION = 1024.0, 9.0, 0.25, 0.015625, 1.0
LOAD = {"llama-prefill-0": (2, 3, 0.25), "llama-prefill-1": (1, 1, 0.125), "llama-decode-0": (8, 0, 0.5), "llama-decode-1": (4, 2, 0.75)}
HISTORY = 900  # s of history; ticks run in its last part
TICKS = 18
# The request count's tolerance: uniform arrivals make Prometheus's extrapolated increase
# exact here; 1 % leaves room for a Prometheus that rounds differently, nothing more.
RATE_TOLERANCE = 0.01


def doc(source: str, url: str, scrape: int, recorded: bool) -> dict[str, Any]:
    d = plan_dict(name="s30", mode="disagg", interval_seconds=T, load=True, sizing="attainment")
    d = with_changes(d, {
        "spec.scaling.load.intervalSeconds": L,
        "spec.metrics": {"source": source, "selector": {"namespace": NS, "model_name": "llama"}, "useRecordingRules": recorded,
                         "scrapeIntervalSeconds": scrape, "prometheus": {"url": url}},
    })
    if source == "vllm":
        for pool, sel in POOL_SELECTORS.items():
            d["spec"]["pools"][pool]["selector"] = sel
    return d


def make_plan(source: str, url: str, scrape: int = SCRAPE, recorded: bool = False) -> Plan:
    return Plan.model_validate(doc(source, url, scrape, recorded))


@pytest.fixture(scope="module", params=["vllm", "sglang"])
def history(request: pytest.FixtureRequest, module_prom_factory: PromFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = request.param
    start = float(int(time.time()) // 3600 * 3600 - 3 * 3600 + PHASE)
    end = start + HISTORY
    reqs: list[tuple[str, CompletedRequest]] = []
    for i in range(int(HISTORY / EVERY)):
        t = start + 1.25 + i * EVERY  # between scrapes
        reqs.append((f"llama-prefill-{i % 2}", CompletedRequest(t, ISL, 1, TTFT, 0.0, TTFT)))
        reqs.append((f"llama-decode-{i % 2}", CompletedRequest(t, ISL, OSL, TTFT, ITL, DURATION)))
    load = [(pod, start, *lvl) for pod, lvl in LOAD.items()]
    w = engine_history(reqs, pods=PODS, start=start, end=end, step=SCRAPE, source=SOURCES[source], model="llama", namespace=NS, load=load)
    server = module_prom_factory(history=w)
    rules = tmp_path_factory.mktemp(f"s30-{source}") / "rules.yml"
    groups = [{"name": g.name, "interval": g.interval, "rules": [{"record": r.record, "expr": r.expr, "labels": dict(r.labels)} for r in g.rules]}
              for g in rule_groups(make_plan(source, server.url, recorded=True))]
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    check_rules(rules)
    server.backfill_rules(rules, int(end - 300), int(end), eval_interval=f"{L}s")
    # load ticks 10 s apart at a phase of their own (5 s after the scrapes' 7 s, mod 10)
    ticks = [float(int(end) - 5 - L * k) for k in range(TICKS)][::-1]
    return {"source": source, "server": server, "ticks": ticks}


async def _worker_counts(plan: Plan, ticks: list[float]) -> list[int]:
    async with PromClient(plan.spec.metrics.prometheus) as client:
        return [len(await read_workers(client, plan, at=t)) for t in ticks]


async def test_every_pod_is_seen_at_every_tick_with_its_load(history: dict[str, Any]) -> None:
    plan = make_plan(history["source"], history["server"].url)
    assert plan_range(plan, "worker") == 120
    async with PromClient(plan.spec.metrics.prometheus) as client:
        for t in history["ticks"]:
            workers = {w.worker_id: w for w in await read_workers(client, plan, at=t)}
            assert sorted(workers) == sorted(PODS), t
            for pod, (_, waiting, kv) in LOAD.items():
                w = workers[pod]
                assert w.active_decode_blocks == pytest.approx(kv, rel=1e-9), (pod, t)
                assert w.last_ttft_ms == pytest.approx(TTFT * 1000, rel=1e-9) and w.last_isl == pytest.approx(ISL, rel=1e-9), (pod, t)
                assert w.active_prefill_tokens == pytest.approx(waiting * ISL, rel=1e-9), (pod, t)
                if PODS[pod] == "decode":
                    assert w.last_itl_ms == pytest.approx(ITL * 1000, rel=1e-9), (pod, t)


async def test_ranges_of_the_window_itself_flapped_at_30s_scrapes(history: dict[str, Any]) -> None:
    """What the scaler saw before ranges followed the scrape interval: a plan that says
    scrapes come every second reads 10-s ranges, which hold a 30-s scrape at a third of the
    ticks (and never two samples, so never a latency)."""
    url = history["server"].url
    before = await _worker_counts(make_plan(history["source"], url, scrape=1), history["ticks"])
    after = await _worker_counts(make_plan(history["source"], url), history["ticks"])
    assert after == [len(PODS)] * TICKS
    assert sorted(set(before)) == [0, len(PODS)] and before.count(len(PODS)) == TICKS // 3, before


async def test_request_count_equals_the_known_traffic_at_every_tick(history: dict[str, Any]) -> None:
    plan = make_plan(history["source"], history["server"].url)
    async with PromClient(plan.spec.metrics.prometheus) as client:
        for t in history["ticks"]:
            window = (await read_traffic_detail(client, plan, at=t)).window
            assert window.window_seconds == T
            assert window.requests == pytest.approx(RATE * T, rel=RATE_TOLERANCE), t
            assert window.isl == pytest.approx(ISL) and window.osl == pytest.approx(OSL), t
            assert window.ttft_ms == pytest.approx(TTFT * 1000) and window.itl_ms == pytest.approx(ITL * 1000), t
            # the peak minute is read (two scrapes per minute); the 30-s bins are not
            assert window.peak_rate == pytest.approx(RATE, rel=0.5) and window.arrival_dispersion is None, t


async def test_recorded_series_equal_the_raw_promql_at_30s_scrapes(history: dict[str, Any]) -> None:
    server: PromServer = history["server"]
    raw, rec = make_plan(history["source"], server.url), make_plan(history["source"], server.url, recorded=True)
    async with PromClient(raw.spec.metrics.prometheus) as client:
        for t in history["ticks"][-6:]:
            rw, ww = await read_workers(client, rec, at=t), await read_workers(client, raw, at=t)
            assert rw == ww and len(rw) == len(PODS), t
            rt, wt = await read_traffic_detail(client, rec, at=t), await read_traffic_detail(client, raw, at=t)
            assert "recorded" in set(rt.paths.values()) and set(wt.paths.values()) <= {"raw", "none"}, (rt.paths, wt.paths)
        # the instants the throughput group was evaluated at (every 30 s): equal there
        series = server.query('{__name__=~"dynplan_plan:.*:increase60s_over120s", dynplan_plan="s30"}[5m]', at=history["ticks"][-1])
        assert series, "the rule backfill recorded nothing"
        for at in [float(t) for t, _ in series[0]["values"]][-4:]:
            rt, wt = await read_traffic_detail(client, rec, at=at), await read_traffic_detail(client, raw, at=at)
            assert rt.window == wt.window, at


@pytest.mark.parametrize("source", ["vllm", "sglang"])
def test_rules_at_30s_scrapes_pass_promtool_and_their_generated_tests(source: str, tmp_path: Path) -> None:
    path = write_plan(tmp_path, doc(source, "http://127.0.0.1:9", SCRAPE, True), profile=linear_profile())
    r = render_manifests([str(path)], str(tmp_path / "out"), check=True)
    (test,) = [f for f in r.files if f.role == ROLE_RULES_TEST]
    cases = [c for c in yaml.safe_load(test.text)["tests"] if "promql_expr_test" in c]  # not the alerts' cases
    assert len(cases) == 2 and sum(len(c["promql_expr_test"]) for c in cases) >= 20
    assert "[120s]" in next(f.text for f in r.files if f.name.endswith(".rules.yaml"))


def test_a_180s_window_at_30s_scrapes_counts_its_dispersion_in_60s_bins_and_promtool_agrees(tmp_path: Path) -> None:
    """The generated promtool test expects the dispersion the simulator defines over 60-s bins
    (three in 180 s), and promtool, evaluating the rule's PromQL, finds exactly it."""
    d = with_changes(doc("vllm", "http://127.0.0.1:9", SCRAPE, True), {"spec.scaling.throughput.intervalSeconds": 180})
    path = write_plan(tmp_path, d, profile=linear_profile())
    r = render_manifests([str(path)], str(tmp_path / "out"), check=True)  # runs promtool test rules
    (test,) = [f for f in r.files if f.role == ROLE_RULES_TEST]
    exprs = [e for c in yaml.safe_load(test.text)["tests"] for e in c.get("promql_expr_test", [])]
    dispersion = [e for e in exprs if e["expr"].startswith("dynplan_plan:vllm:request_success:dispersion_increase60s_180s")]
    assert dispersion and any(e.get("exp_samples") for e in dispersion)
    assert not [e for e in exprs if "dispersion_increase30s" in e["expr"]]
