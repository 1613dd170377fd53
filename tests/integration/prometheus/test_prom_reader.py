"""The Prometheus layer against a real Prometheus: exact windows from backfilled history
(raw PromQL and recording rules), idle, missing data, escaping, failures, history, live
scraping of the synthetic exporter."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import pytest
from urllib3.exceptions import InsecureRequestWarning

from fake_http import FakeHTTPServer
from procs import closed_port, pids_alive
from prometheus import PromFactory, PromServer, binaries, wait_for_value
from rules import check_rules, recording_rules, rule_eval_offset
from scaler.core.observations import WorkerLoad
from scaler.core.plan import Plan, PrometheusAccess
from scaler.devtools.backfill import CompletedRequest, OpenMetricsWriter, frontend_history
from scaler.devtools.frontend_exporter import SyntheticFrontend
from scaler.errors import MetricsUnavailable
from scaler.prom import (
    PromClient,
    read_traffic,
    read_traffic_detail,
    read_traffic_history,
    read_traffic_history_grid,
    read_workers,
)
from scaler.prom.credentials import Credential

T = 60  # throughput interval (s)
STEP = 15  # history scrape interval (s)
# A namespace value that breaks PromQL unless escaped.
NS = 'ns "quoted" \\ back'


def make_plan(
    name: str = "hist",
    *,
    selector: dict[str, str] | None = None,
    url: str = "http://127.0.0.1:9",
    recorded: bool = False,
    timeout: float = 2.0,
    retries: int = 1,
) -> Plan:
    return Plan.model_validate(
        {
            "apiVersion": "dynplan/v1alpha1",
            "kind": "Plan",
            "metadata": {"name": name, "namespace": "inference"},
            "spec": {
                "sla": {"ttftMs": 200, "itlMs": 20},
                "workload": {"isl": 3000, "osl": 150},
                "profile": "unused",
                "pools": {
                    "prefill": {"scaleTargetRef": {"name": "p"}},
                    "decode": {"scaleTargetRef": {"name": "d"}},
                },
                "scaling": {
                    "throughput": {"intervalSeconds": T, "sizing": "dynamo"},  # the attainment signals: test_prom_signals.py
                    "load": {"enabled": True, "intervalSeconds": 5},
                },
                "metrics": {
                    "selector": selector if selector is not None else {"dynamo_namespace": NS, "model": "llama"},
                    "useRecordingRules": recorded,
                    # declared 1 s: ranges = windows, as this test's windows were written for (the scrape-interval rule: test_sources_scrape30.py)
                    "scrapeIntervalSeconds": 1,
                    "prometheus": {"url": url, "timeoutSeconds": timeout, "retries": retries},
                },
            },
        }
    )


# Requests per window, as (offset in window s, isl, osl, ttft s, itl s, duration s).
# Expected values are computed by hand below (sum / count of each field).
WINDOWS: list[list[tuple[float, float, float, float, float, float]]] = [
    [(7, 100, 10, 0.1, 0.01, 1.0), (23, 200, 20, 0.2, 0.02, 2.0), (41, 300, 30, 0.3, 0.03, 3.0)],
    [],  # idle
    [(59, 5000, 7, 0.5, 0.05, 0.8)],
    [(1, 1000, 100, 0.25, 0.004, 4.0), (31, 3000, 300, 0.75, 0.008, 8.0)],
    [],
    [(10, 10, 1, 0.001, 0.001, 0.01), (20, 20, 1, 0.003, 0.001, 0.03), (30, 30, 1, 0.002, 0.001, 0.02), (40, 40, 1, 0.002, 0.001, 0.02)],
]
# (requests, isl, osl, ttft_ms, itl_ms, duration_s) by hand
EXPECTED = [
    (3, 200.0, 20.0, 200.0, 20.0, 2.0),
    (0, None, None, None, None, None),
    (1, 5000.0, 7.0, 500.0, 50.0, 0.8),
    (2, 2000.0, 200.0, 500.0, 6.0, 6.0),
    (0, None, None, None, None, None),
    (4, 25.0, 1.0, 2.0, 1.0, 0.02),
]


def assert_window(w: Any, expected: tuple) -> None:
    req, isl, osl, ttft, itl, dur = expected
    assert w.window_seconds == T
    assert w.requests == pytest.approx(req, abs=1e-9)
    for got, want in ((w.isl, isl), (w.osl, osl), (w.ttft_ms, ttft), (w.itl_ms, itl), (w.request_duration_s, dur)):
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, rel=1e-9)


@pytest.fixture(scope="module")
def history(module_prom_factory: PromFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One server with 6 windows of history (plus another namespace's traffic, which must
    not leak in) and the recorded series backfilled from the same rules."""
    d = tmp_path_factory.mktemp("rules")
    rules = recording_rules(make_plan(recorded=True), d / "traffic-rules.yml", kinds=("throughput",))
    check_rules(rules)
    near = int(time.time()) // 3600 * 3600 - 3 * 3600
    phase = rule_eval_offset(rules, STEP, near)
    # Scrapes and window ends sit on the rule evaluation grid, so both paths are exact.
    start = near + phase
    reqs, other = [], []
    for k, window in enumerate(WINDOWS):
        for off, isl, osl, ttft, itl, dur in window:
            reqs.append(CompletedRequest(start + k * T + off, isl, osl, ttft, itl, dur))
            other.append(CompletedRequest(start + k * T + off, 99999, 9999, 9.0, 9.0, 99.0))
    end = start + (len(WINDOWS) + 2) * T
    w = OpenMetricsWriter()
    frontend_history(reqs, start=start, end=end, step=STEP, labels={"model": "llama", "dynamo_namespace": NS}, writer=w)
    frontend_history(other, start=start, end=end, step=STEP, labels={"model": "llama", "dynamo_namespace": "other"}, writer=w)
    server = module_prom_factory(history=w)
    server.backfill_rules(rules, int(start), int(end) + 1, eval_interval=f"{STEP}s")
    return {"server": server, "start": start, "end": end}


def client_for(plan: Plan) -> PromClient:
    return PromClient(plan.spec.metrics.prometheus)


def at_server(plan_kwargs: dict[str, Any], server: PromServer) -> Plan:
    return make_plan(url=server.url, **plan_kwargs)


async def test_raw_windows_are_exact(history: dict[str, Any]) -> None:
    plan = at_server({}, history["server"])
    async with client_for(plan) as client:
        for k, expected in enumerate(EXPECTED):
            reading = await read_traffic_detail(client, plan, at=history["start"] + (k + 1) * T)
            assert_window(reading.window, expected)
            assert set(reading.paths.values()) <= {"raw"}
            # the quote and backslash reached Prometheus escaped
            assert 'dynamo_namespace="ns \\"quoted\\" \\\\ back"' in reading.queries["requests"]


async def test_recorded_windows_give_the_same_numbers(history: dict[str, Any]) -> None:
    plan = at_server({"recorded": True}, history["server"])
    async with client_for(plan) as client:
        for k, expected in enumerate(EXPECTED):
            reading = await read_traffic_detail(client, plan, at=history["start"] + (k + 1) * T)
            assert reading.paths == {key: "recorded" for key in reading.paths}, (k, reading.paths)
            assert_window(reading.window, expected)


async def test_missing_recorded_series_falls_back_to_raw(history: dict[str, Any]) -> None:
    # No rules were recorded for this plan name: every series is read raw, same numbers.
    plan = at_server({"recorded": True}, history["server"]).model_copy(
        update={"metadata": make_plan("norules").metadata}
    )
    async with client_for(plan) as client:
        reading = await read_traffic_detail(client, plan, at=history["start"] + 1 * T)
    assert set(reading.paths.values()) == {"raw"}
    assert_window(reading.window, EXPECTED[0])


async def test_idle_window_is_zero_requests_and_no_means(history: dict[str, Any]) -> None:
    plan = at_server({}, history["server"])
    async with client_for(plan) as client:
        w = await read_traffic(client, plan, at=history["start"] + 2 * T)
    assert w.requests == 0 and w.idle
    assert (w.isl, w.osl, w.ttft_ms, w.itl_ms, w.request_duration_s) == (None,) * 5


@pytest.mark.parametrize("recorded", [False, True])
async def test_no_data_for_selector_is_unavailable_not_idle(history: dict[str, Any], recorded: bool) -> None:
    plan = at_server({"selector": {"dynamo_namespace": "nobody"}, "recorded": recorded}, history["server"])
    plan = plan.model_copy(update={"metadata": make_plan("nobody").metadata})
    async with client_for(plan) as client:
        with pytest.raises(MetricsUnavailable, match=r'no request counter .*dynamo_namespace="nobody".*is the frontend scraped'):
            await read_traffic(client, plan, at=history["start"] + 1 * T)


async def test_history_windows_on_the_documented_grid(history: dict[str, Any]) -> None:
    plan = at_server({}, history["server"])
    end = history["start"] + len(WINDOWS) * T
    async with client_for(plan) as client:
        windows = await read_traffic_history(client, plan, end=end, intervals=len(WINDOWS))
        assert len(windows) == len(WINDOWS)
        for w, expected in zip(windows, EXPECTED):
            assert_window(w, expected)
        # two more windows before the data starts: reported as gaps, dropped from the run
        grid = await read_traffic_history_grid(client, plan, end=end, intervals=len(WINDOWS) + 2)
        assert [t for t, _ in grid] == [end - (len(WINDOWS) + 1 - i) * T for i in range(len(WINDOWS) + 2)]
        assert grid[0][1] is None and grid[1][1] is None
        assert len(await read_traffic_history(client, plan, end=end, intervals=len(WINDOWS) + 2)) == len(WINDOWS)
    recorded = at_server({"recorded": True}, history["server"])
    async with client_for(recorded) as client:
        windows = await read_traffic_history(client, recorded, end=end, intervals=len(WINDOWS))
    assert [w.requests for w in windows] == [e[0] for e in EXPECTED]


async def test_client_parses_nan_and_reports_bad_queries(history: dict[str, Any]) -> None:
    server = history["server"]
    async with PromClient(PrometheusAccess(url=server.url, timeout_seconds=2, retries=2)) as client:
        (sample,) = await client.instant("vector(0) / 0")
        assert math.isnan(sample.value)
        with pytest.raises(MetricsUnavailable, match=r"'sum\(' failed: HTTP 400: .*parse error"):
            await client.instant("sum(")
        (series,) = await client.range("vector(1)", 1000.0, 1030.0, 15.0)
        assert series.points == ((1000.0, 1.0), (1015.0, 1.0), (1030.0, 1.0))
    # sync helper for the CLI
    with PromClient(PrometheusAccess(url=server.url)) as client:
        assert client.instant_sync("vector(3)")[0].value == 3.0


async def test_prometheus_down_fails_fast() -> None:
    access = PrometheusAccess(url=f"http://127.0.0.1:{closed_port()}", timeout_seconds=0.5, retries=2)
    plan = make_plan(url=access.url, timeout=0.5, retries=2)
    t0 = time.monotonic()
    async with PromClient(access) as client:
        with pytest.raises(MetricsUnavailable, match=r"failed: cannot connect to .*Connection refused"):
            await read_traffic(client, plan)
    assert time.monotonic() - t0 < 0.5 * 3 + 1.0


async def test_prometheus_slow_times_out_within_budget() -> None:
    with FakeHTTPServer(delay=5.0) as slow:
        access = PrometheusAccess(url=slow.url, timeout_seconds=0.4, retries=1)
        t0 = time.monotonic()
        async with PromClient(access) as client:
            with pytest.raises(MetricsUnavailable, match=r"'vector\(1\)' failed: timed out after 0.4s"):
                await client.instant("vector(1)")
        elapsed = time.monotonic() - t0
        assert elapsed < 0.4 * 2 + 1.0
        assert len(slow.requests) == 2  # one retry
        assert slow.requests[0]["params"]["timeout"] == "0.4s"


async def test_bearer_token_is_reread_and_basic_auth(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    with FakeHTTPServer() as fake:
        access = PrometheusAccess(url=fake.url, credentials="prom")
        bearer = Credential(url_prefixes=(fake.url,), bearer_token_file=str(token))
        async with PromClient(access, credential=bearer) as client:
            assert await client.instant("up") == []
            token.write_text("second")
            await client.instant("up")
            token.unlink()
            with pytest.raises(MetricsUnavailable, match="cannot read bearer token file"):
                await client.instant("up")
        assert [r["headers"]["Authorization"] for r in fake.requests] == ["Bearer first", "Bearer second"]
        pw = tmp_path / "pw"
        pw.write_text("s3cret")
        basic = Credential.model_validate(
            {"urlPrefixes": [fake.url], "basicAuth": {"username": "u", "passwordFile": str(pw)}}
        )
        with PromClient(access, credential=basic) as client:
            client.instant_sync("up")
        assert fake.requests[-1]["headers"]["Authorization"] == "Basic dTpzM2NyZXQ="


async def test_malformed_answer_is_unavailable() -> None:
    with FakeHTTPServer(body=b"<html>not json</html>") as fake:
        async with PromClient(PrometheusAccess(url=fake.url, retries=3)) as client:
            with pytest.raises(MetricsUnavailable, match="malformed response"):
                await client.instant("up")
        assert len(fake.requests) == 1  # not retried


async def test_http_errors_are_reported_by_their_status() -> None:
    """The status comes from the HTTP response and the reason from its body, as text (a
    proxy's error page is not JSON): 5xx are retried, 4xx are not; range queries too."""
    cases = [
        (502, b"upstream connect error or disconnect/reset before headers", 3),
        (503, '{"status":"error","errorType":"unavailable","error":"query queue full: überlastet"}'.encode(), 3),
        (429, b"Too Many Requests\n", 1),
        (500, "interner Fehler: überlastet".encode(), 3),  # text/plain, no charset: UTF-8
    ]
    for status, body, attempts in cases:
        reason = body.decode().strip()
        if body.startswith(b"{"):
            reason = "query queue full: überlastet"
        with FakeHTTPServer(status=status, body=body) as fake:
            async with PromClient(PrometheusAccess(url=fake.url, retries=2)) as client:
                with pytest.raises(MetricsUnavailable) as info:
                    await client.instant("up")
                assert str(info.value) == f"Prometheus query 'up' failed: HTTP {status}: {reason}"
                assert len(fake.requests) == attempts
                with pytest.raises(MetricsUnavailable, match=f"'up' failed: HTTP {status}: "):
                    await client.range("up", 1000.0, 1030.0, 15.0)
                assert len(fake.requests) == 2 * attempts
                assert fake.requests[-1]["path"] == "/api/v1/query_range"


async def test_live_scrape_read_workers_raw_and_recorded(prom_factory: PromFactory, tmp_path: Path) -> None:
    frontend = SyntheticFrontend(model="llama", dynamo_namespace=NS)
    port = frontend.serve()
    try:
        frontend.set_worker("p-0", "prefill", active_prefill_tokens=1200, last_ttft_s=0.15, last_isl=3000)
        frontend.set_worker("d-0", "decode", active_decode_blocks=40, last_itl_s=0.012)
        frontend.set_worker("d-1", "decode", active_decode_blocks=60, last_itl_s=0.018)
        frontend.set_worker("e-0", "encode", active_prefill_tokens=5)  # not a pool of this plan
        frontend.set_worker("gone", "decode", active_decode_blocks=1)
        frontend.remove_worker("gone")
        recorded_plan = make_plan(recorded=True)
        rules = recording_rules(recorded_plan, tmp_path / "rules.yml")
        server = prom_factory(scrape_targets=[f"127.0.0.1:{port}"], rule_files=[rules])
        wait_for_value(server, 'count(dynplan_plan_worker_id_worker_type:dynamo_frontend_worker_active_decode_blocks:avg_over_time5s) == 2', timeout=25)
        expected = (
            WorkerLoad("d-0", "decode", active_decode_blocks=40, last_itl_ms=12.0),
            WorkerLoad("d-1", "decode", active_decode_blocks=60, last_itl_ms=18.0),
            WorkerLoad("p-0", "prefill", active_prefill_tokens=1200, last_ttft_ms=150.0, last_isl=3000),
        )
        for plan in (make_plan(url=server.url), make_plan(url=server.url, recorded=True)):
            async with client_for(plan) as client:
                workers = await read_workers(client, plan)
            assert [(w.worker_id, w.pool) for w in workers] == [(e.worker_id, e.pool) for e in expected]
            for got, want in zip(workers, expected):
                for f in ("active_prefill_tokens", "active_decode_blocks", "last_ttft_ms", "last_isl", "last_itl_ms"):
                    g, e = getattr(got, f), getattr(want, f)
                    assert (g is None and e is None) or g == pytest.approx(e, rel=1e-9), (got, f)
        # live traffic: one request observed by the exporter shows up as a non-negative count
        frontend.observe_request(100, 10, 0.2, 0.01, 0.3)
        wait_for_value(server, "sum(dynamo_frontend_requests_total) == 1", timeout=10)
        async with client_for(make_plan(url=server.url)) as client:
            w = await read_traffic(client, make_plan(url=server.url))
        assert w.requests >= 0.99 and w.isl == pytest.approx(100.0)
    finally:
        frontend.stop()


async def test_concurrency_is_limited() -> None:
    with FakeHTTPServer(delay=0.2) as fake:
        async with PromClient(PrometheusAccess(url=fake.url), max_concurrency=2) as client:
            results = await asyncio.gather(*(client.instant(f"vector({i})") for i in range(6)))
        assert results == [[]] * 6
        assert len(fake.requests) == 6
        assert fake.max_inflight == 2


TLS = Path(__file__).resolve().parents[2] / "fixtures" / "prom-tls"


async def test_tls_with_ca_file_against_real_prometheus(prom_factory: PromFactory) -> None:
    server = prom_factory(tls=(TLS / "server.crt", TLS / "server.key"))
    assert server.url.startswith("https://")
    access = PrometheusAccess(url=server.url, credentials="tls")
    ca = Credential(url_prefixes=(server.url,), ca_file=str(TLS / "ca.crt"))
    async with PromClient(access, credential=ca) as client:
        assert (await client.instant("vector(7)"))[0].value == 7.0
    # verification is on by default: an unknown CA fails (and is not a number)
    async with PromClient(PrometheusAccess(url=server.url, retries=0)) as client:
        with pytest.raises(MetricsUnavailable, match="certificate verify failed"):
            await client.instant("vector(7)")
    skip = Credential(url_prefixes=(server.url,), insecure_skip_verify=True)
    async with PromClient(access, credential=skip) as client:
        with pytest.warns(InsecureRequestWarning):
            assert (await client.instant("vector(8)"))[0].value == 8.0


def test_factory_stops_every_server(tmp_path: Path) -> None:
    factory = PromFactory(tmp_path)
    pids = [factory().proc.pid, factory().proc.pid]
    assert pids_alive(pids) == pids
    factory.close()
    assert pids_alive(pids) == []


def test_missing_binaries_fail_not_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="prometheus and promtool not found on PATH.*make prometheus"):
        binaries()
