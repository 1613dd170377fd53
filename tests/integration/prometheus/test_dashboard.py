"""The rendered Grafana dashboard against a real Prometheus: every panel's query, with its
Grafana variables substituted, parses and returns data.

The Prometheus holds what a production one would: the Dynamo frontend's series (backfilled
history), the plan's recording rules as `render manifests` wrote them (evaluated over that
history by promtool), kube-state-metrics' ready replicas, and the scaler's own /metrics:
a real in-process `dynplan serve` decides on that history (warm-up, then one tick), answers
KEDA's RPCs, and the samples of its /metrics are backfilled as a scrape every 5 s would
have stored them (counters growing, so that rate() has something to say)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from prometheus import PromServer, binaries
from scaler.devtools.backfill import OpenMetricsWriter
from scaler.render.checks import parse_documents
from scaler.render.dashboard import SIDECAR_LABEL, panel_queries
from scaler.render.pipeline import render_manifests
from service_harness import (
    MODEL,
    NAMESPACE,
    T,
    add_history,
    busy,
    history_end,
    loop_of,
    running_scaler,
    scrape,
    test_plan,
    trigger,
    write_plans,
)

PLAN = "llama-dash"
DYN_NS = "dash"
STEP = 5
WORKER_GAUGES = tuple(f"dynamo_frontend_worker_{m}" for m in (
    "active_prefill_tokens", "active_decode_blocks", "last_time_to_first_token_seconds", "last_input_sequence_tokens",
    "last_inter_token_latency_seconds"))
RATE_INTERVAL = "1m"  # what Grafana gives $__rate_interval at a 15-s scrape and a short range


def _scaler_history(text: str, start: float, end: float) -> str:
    """The scaler's /metrics samples as OpenMetrics history, scraped every STEP s up to
    `end`: one untyped family per sample name (buckets keep their `le`); cumulative samples
    (counters, buckets, sums, counts) grow linearly from 0 to their scraped value."""
    times = [start + i * STEP for i in range(int((end - start) // STEP) + 1)]
    series: dict[str, list[str]] = {}
    for family in text_string_to_metric_families(text):
        cumulative = family.type in ("counter", "histogram")
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            lines = series.setdefault(s.name, [])
            for i, t in enumerate(times):
                value = s.value * (i + 1) / len(times) if cumulative else s.value
                lines.append(f"{s.name}{{{labels}}} {value!r} {t:.0f}")
    out = []
    for name, lines in series.items():
        out += [f"# TYPE {name} unknown", *lines]
    return "\n".join(out + ["# EOF", ""])


def _add_blocks(server: PromServer, text: str) -> None:
    """Backfill OpenMetrics text into a running server's data dir and restart it."""
    _, promtool = binaries()
    om, out = server.dir / "scaler.om", server.dir / "scaler-blocks"
    om.write_text(text)
    proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    server.stop()
    for block in out.iterdir():
        if block.is_dir():
            shutil.move(str(block), server.data / block.name)
    server.start()


async def test_every_panel_query_returns_data(tmp_path: Path, prom_factory) -> None:
    end = history_end()
    windows = [busy(20.0)] * 80  # longer than a warm-up reads (up to 2 x 32 - 1 windows)
    history = OpenMetricsWriter()
    add_history(history, DYN_NS, windows, end, step=STEP)
    span = [end - len(windows) * T - 2 * STEP + i * STEP for i in range(len(windows) * T // STEP + 5)]
    for pool, ready in (("prefill", 2.0), ("decode", 3.0)):
        history.gauge("kube_deployment_status_replicas_ready", {"namespace": NAMESPACE, "deployment": f"llama-{pool}"},
                      [(t, ready) for t in span])
    # the frontend's per-worker gauges, which load-based scaling reads (one worker per pool)
    for worker, wtype, values in (("w1", "prefill", (1500.0, 0.0, 0.05, 3000.0, 0.0)), ("w2", "decode", (0.0, 400.0, 0.0, 0.0, 0.005))):
        labels = {"dynamo_namespace": DYN_NS, "model": MODEL, "worker_id": worker, "worker_type": wtype}
        for metric, value in zip(WORKER_GAUGES, values):
            history.gauge(metric, labels, [(t, value) for t in span])
    doc = test_plan(PLAN, "http://placeholder:1", DYN_NS)
    doc["spec"]["scaling"]["load"] = {"enabled": True, "intervalSeconds": STEP}
    doc["spec"]["budget"] = {"maxGpus": 12}
    doc["spec"]["metrics"]["scrapeIntervalSeconds"] = STEP
    plans = tmp_path / "plans"
    write_plans(plans, [doc])

    # the generator's own output: rules, dashboard JSON, the sidecar ConfigMap
    out = tmp_path / "rendered"
    rendering = render_manifests([str(p) for p in sorted(plans.glob("*.yaml"))], str(out))
    dash_json = (out / f"dynplan-{NAMESPACE}.{PLAN}.dashboard.json").read_text()
    [cm] = parse_documents((out / f"dynplan-dashboard-{NAMESPACE}.{PLAN}.configmap.yaml").read_text())
    assert cm["metadata"]["labels"][SIDECAR_LABEL] == "1"
    assert json.loads(cm["data"][f"dynplan-{NAMESPACE}.{PLAN}.dashboard.json"]) == json.loads(dash_json)
    assert f"dynplan-dashboard-{NAMESPACE}.{PLAN}.configmap.yaml" in yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert any(f.name == f"dynplan-{NAMESPACE}.{PLAN}.dashboard.json" for f in rendering.files)

    prom = prom_factory(history=history, scrape_interval="15s", evaluation_interval="15s")
    prom.backfill_rules(out / f"{NAMESPACE}.{PLAN}.rules.yaml", int(end - (len(windows) + 3) * T), int(end) + 1, eval_interval=f"{STEP}s")

    doc["spec"]["metrics"]["prometheus"]["url"] = prom.url
    write_plans(plans, [doc])
    async with running_scaler(plans) as (server, keda):
        loop = loop_of(server, PLAN)
        await loop.warm_up(end - T)
        await loop.tick_throughput(end)
        # one load tick on the history's last instant (the live loop reads the workers now)
        reader = loop.reader
        workers, ready = reader.workers, reader.ready
        reader.workers = lambda plan, at: workers(plan, float(end))  # type: ignore[method-assign]
        reader.ready = lambda plan, at, found: ready(plan, float(end), found)  # type: ignore[method-assign]
        await loop.tick_load()
        for pool in ("prefill", "decode"):
            await keda.poll(trigger(PLAN, pool))
        metrics_text = await scrape(server)
    _add_blocks(prom, _scaler_history(metrics_text, end - 10 * T, end))

    queries = panel_queries(dash_json)
    assert len(queries) >= 25
    empty = []
    for title, expr in queries:
        q = expr.replace("$__rate_interval", RATE_INTERVAL)
        assert "$" not in q, (title, q)
        result = prom.query(q, at=end)  # a parse or evaluation error fails inside query()
        if not [r for r in result if r["value"][1] not in ("NaN",)]:
            empty.append((title, q))
    assert not empty, "panels without data:\n" + "\n".join(f"{t}: {q}" for t, q in empty)

    # specific values: the decision, the ready replicas from kube-state-metrics, the GPUs and the SLA line
    by_title: dict[str, list[str]] = {}
    for title, expr in queries:
        by_title.setdefault(title, []).append(expr.replace("$__rate_interval", RATE_INTERVAL))
    ready = {r["metric"]["pool"]: float(r["value"][1]) for r in prom.query(by_title["Desired vs ready replicas"][2], at=end)}
    assert ready == {"prefill": 2.0, "decode": 3.0}
    desired = {r["metric"]["pool"]: float(r["value"][1]) for r in prom.query(by_title["Desired vs ready replicas"][0], at=end)}
    decision = loop.latest.decision
    assert desired == {p: float(d.replicas) for p, d in decision.pools.items()}
    [gpus] = prom.query(by_title["GPUs vs budget"][0], at=end)
    assert float(gpus["value"][1]) == sum(d.replicas for d in decision.pools.values())  # 1 GPU per replica
    [budget] = prom.query(by_title["GPUs vs budget"][2], at=end)
    assert float(budget["value"][1]) == 12.0
    [rate] = prom.query(by_title["Request rate: observed vs predicted"][2], at=end)
    assert abs(float(rate["value"][1]) - 20.0) < 1e-6  # the recorded request count per window / T
    # every request at TTFT 50 ms and ITL 5 ms, well within 200 / 20 ms: the highest percentile tested
    attained = [float(prom.query(q, at=end)[0]["value"][1]) for q in by_title["SLA attainment (attained percentile)"]]
    assert attained == [0.999, 0.999, 0.99]
    verdicts = {(r["metric"]["pool"], r["metric"]["signal"]) for r in prom.query(by_title["Load-scaling verdicts"][0], at=end)}
    assert verdicts == {("prefill", "ttft"), ("decode", "itl")}, verdicts  # one verdict per pool, on its own signal
