"""End to end: a real Prometheus loads the rendered plain rule file, scrapes a synthetic Dynamo
frontend exporter (prometheus_client, same metric names and labels as Dynamo's frontend) and
produces every recorded series the scaler reads, with the right values, for the plan only."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from helpers import SYNTHETIC_PROFILE_DIR, plan_dict, with_changes, write_plan
from prometheus import wait_for_value
from scaler import sources
from scaler.planfile import load_plan
from scaler.render.pipeline import render_manifests

SELECTOR = {"dynamo_namespace": "inference-e2e", "model": "llama"}
DECOY = {"dynamo_namespace": "inference-other", "model": "llama"}
# Every request observed with these values: the recorded means must equal them.
PER_REQUEST = {"isl": 3000.0, "osl": 150.0, "ttft_ms": 0.25, "itl_ms": 0.0125, "request_duration_s": 2.0}
WORKER_GAUGES = {
    "active_prefill_tokens": 4096.0,
    "active_decode_blocks": 96.0,
    "last_ttft_ms": 0.125,
    "last_isl": 2048.0,
    "last_itl_ms": 0.015625,
}


class FrontendExporter:
    """A tiny Dynamo-frontend look-alike: requests arrive every 50 ms on two label sets
    (the plan's and a decoy the selector must exclude)."""

    def __init__(self) -> None:
        src = sources.SOURCES["dynamo"]
        self.registry = CollectorRegistry()
        labels = ["dynamo_namespace", "model"]
        strip = lambda name: name[: -len("_total")]  # noqa: E731 (prometheus_client appends _total)
        self.started = Counter(strip(src.requests_started), "requests started", labels, registry=self.registry)
        self.total = Counter(strip(src.requests_total), "requests completed", labels, registry=self.registry)
        self.histograms = {
            key: Histogram(getattr(src, sources.SERIES_BY_KEY[key].metric), key, labels, registry=self.registry)
            for key in PER_REQUEST
        }
        wl = labels + [src.worker_id_label, src.worker_type_label]
        self.gauges = {
            key: Gauge(getattr(src, sources.SERIES_BY_KEY[key].metric), key, wl, registry=self.registry)
            for key in WORKER_GAUGES
        }
        for key, value in WORKER_GAUGES.items():
            self.gauges[key].labels(**SELECTOR, worker_id="w-prefill", worker_type="prefill").set(value)
            self.gauges[key].labels(**SELECTOR, worker_id="w-decode", worker_type="decode").set(2 * value)
            self.gauges[key].labels(**DECOY, worker_id="w-prefill", worker_type="prefill").set(7 * value)
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self._stop = threading.Event()
        self._traffic = threading.Thread(target=self._run, daemon=True)
        self._traffic.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def _request(self, labels: dict[str, str], scale: float) -> None:
        self.started.labels(**labels).inc()
        self.total.labels(**labels).inc()
        for key, value in PER_REQUEST.items():
            self.histograms[key].labels(**labels).observe(value * scale)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._request(SELECTOR, 1.0)
            self._request(DECOY, 5.0)
            self._request(DECOY, 5.0)

    def close(self) -> None:
        self._stop.set()
        self._traffic.join(5)
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter() -> Iterator[FrontendExporter]:
    ex = FrontendExporter()
    try:
        yield ex
    finally:
        ex.close()


def test_prometheus_records_every_series_from_the_rendered_rule_file(tmp_path: Path, prom_factory, exporter) -> None:
    shutil.copytree(SYNTHETIC_PROFILE_DIR, tmp_path / "profile")
    doc = with_changes(
        plan_dict(name="e2e", interval_seconds=10, load=True),
        {
            "spec.scaling.load.intervalSeconds": 2,
            "spec.metrics.selector": SELECTOR,
            "spec.rules": {"evaluationIntervalSeconds": 1},
        },
    )
    out = tmp_path / "out"
    plan_file = write_plan(tmp_path, doc)
    render_manifests([str(plan_file)], str(out))
    rule_file = out / "inference.e2e.rules.yaml"
    groups = yaml.safe_load(rule_file.read_text())["groups"]
    records = [r["record"] for g in groups if not g["name"].endswith("-slo") for r in g["rules"]]  # not the SLO group's
    plan = load_plan(str(plan_file)).plan
    read = sources.plan_series(plan, "throughput") + sources.plan_series(plan, "worker")
    assert len(records) == len(read)  # exactly the series the scaler reads

    prom = prom_factory(scrape_targets=[exporter.target], rule_files=[rule_file])
    src = sources.SOURCES["dynamo"]
    for series in read:
        window = 10 if series.kind == "throughput" else 2
        # the 2-s load window at the plan's 1-s scrapes is read over 4 s (sources.query_range)
        rng = sources.plan_range(plan, series.kind)
        # Read back exactly as the scaler does.
        query = sources.recorded_query(src, series, "e2e", window, range_seconds=rng)
        if series.kind == "throughput" and series.op == "increase":
            result = wait_for_value(prom, query, lambda r: len(r) == 1 and float(r[0]["value"][1]) > 0, timeout=30)
            # 20 arrivals/s on the plan's frontend; the decoy's 40/s must not count.
            assert 5.0 <= float(result[0]["value"][1]) <= 21 * 10
        elif series.kind == "throughput":
            want = PER_REQUEST[series.key]
            result = wait_for_value(prom, query, lambda r: len(r) == 1 and r[0]["value"][1] not in ("NaN",), timeout=30)
            assert float(result[0]["value"][1]) == pytest.approx(want, rel=1e-9), series.key
            assert result[0]["metric"] == {"__name__": sources.record_name(src, series, window, rng), "dynplan_plan": "e2e",
                                           "dynplan_namespace": plan.namespace}
        else:
            want = WORKER_GAUGES[series.key]
            result = wait_for_value(prom, query, lambda r: len(r) == 2, timeout=30)
            values = {r["metric"]["worker_id"]: (r["metric"]["worker_type"], float(r["value"][1])) for r in result}
            assert values == {"w-prefill": ("prefill", want), "w-decode": ("decode", 2 * want)}, series.key
