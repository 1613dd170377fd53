"""The synthetic Dynamo frontend (scaler.devtools.frontend_exporter, .fake_frontend): names,
labels and buckets, exact values, replay under load, the command line, and agreement with the
OpenMetrics history writer."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaler.devtools.backfill import CompletedRequest, frontend_backlog, frontend_history
from scaler.devtools.fake_frontend import LoadModel, Replay
from scaler.devtools.frontend_exporter import BUCKETS, SyntheticFrontend
from scaler.sources import SOURCES, log_buckets
from scaler.traces import Request

SRC = SOURCES["dynamo"]
REPO = Path(__file__).resolve().parents[2]
BASE = {"model": "llama", "dynamo_namespace": "inference-llama"}


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def value(samples: list, name: str, **labels: str) -> float:
    hits = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


def test_buckets_follow_dynamos_rule() -> None:
    # 0, then count-1 log-spaced values ending at max, 2 significant figures
    assert BUCKETS["request_duration_seconds"] == (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 130.0, 260.0, 510.0)
    assert BUCKETS["itl_seconds"][:4] == (0.0, 0.0019, 0.0035, 0.0067) and BUCKETS["itl_seconds"][-1] == 2.0
    assert len(BUCKETS["ttft_seconds"]) == 18 and BUCKETS["ttft_seconds"][-1] == 480.0
    assert BUCKETS["input_tokens"][-1] == 130000.0 and len(BUCKETS["input_tokens"]) == 12
    assert BUCKETS["output_tokens"][-1] == 32000.0 and len(BUCKETS["output_tokens"]) == 10
    assert log_buckets(1, 100, 3) == (0.0, 10.0, 100.0)


def test_exported_names_labels_buckets_and_exact_values() -> None:
    fe = SyntheticFrontend(model="llama", dynamo_namespace="inference-llama")
    port = fe.serve()
    try:
        before = scrape(port)
        # every frontend series exists before the first request (idle reads as 0)
        assert value(before["dynamo_frontend_requests_started"], SRC.requests_started, **BASE) == 0
        fe.observe_request(1000, 50, 0.25, 0.02, 1.25)
        fe.observe_request(3000, 150, 0.75, 0.04, 6.75)
        fe.request_started()
        fe.set_worker("7", "prefill", active_prefill_tokens=1500, last_ttft_s=0.2, last_isl=3000)
        fe.set_worker("8", "decode", active_decode_blocks=42, last_itl_s=0.015)
        fe.set_worker("9", "decode", active_decode_blocks=1)
        fe.remove_worker("9")
        fams = scrape(port)
    finally:
        fe.stop()
    assert value(fams["dynamo_frontend_requests_started"], SRC.requests_started, **BASE) == 3
    assert value(fams["dynamo_frontend_requests"], SRC.requests_total, **BASE) == 2
    for attr, total in (
        ("input_tokens", 4000), ("output_tokens", 200), ("ttft_seconds", 1.0),
        ("itl_seconds", 0.06), ("request_duration_seconds", 8.0),
    ):
        name = getattr(SRC, attr)
        samples = fams[name]
        assert value(samples, name + "_count", **BASE) == 2
        assert value(samples, name + "_sum", **BASE) == pytest.approx(total)
        les = [s.labels["le"] for s in samples if s.name == name + "_bucket"]
        assert les == [str(b) for b in BUCKETS[attr]] + ["+Inf"]
    # ISL 1000 lands in le=1800 (not 870), 3000 in le=3600
    isl = fams[SRC.input_tokens]
    assert value(isl, SRC.input_tokens + "_bucket", le="870.0") == 0
    assert value(isl, SRC.input_tokens + "_bucket", le="1800.0") == 1
    assert value(isl, SRC.input_tokens + "_bucket", le="3600.0") == 2
    w = {"worker_id": "7", "worker_type": "prefill", "dp_rank": "0", **BASE}
    assert value(fams[SRC.worker_active_prefill_tokens], SRC.worker_active_prefill_tokens, **w) == 1500
    assert value(fams[SRC.worker_last_ttft_seconds], SRC.worker_last_ttft_seconds, **w) == 0.2
    assert value(fams[SRC.worker_last_isl], SRC.worker_last_isl, **w) == 3000
    d = {"worker_id": "8", "worker_type": "decode"}
    assert value(fams[SRC.worker_active_decode_blocks], SRC.worker_active_decode_blocks, **d) == 42
    assert value(fams[SRC.worker_last_itl_seconds], SRC.worker_last_itl_seconds, **d) == 0.015
    # removed worker: gone from every gauge
    assert not [s for fam in fams.values() for s in fam if s.labels.get("worker_id") == "9"]


def test_stop_closes_the_port() -> None:
    fe = SyntheticFrontend()
    port = fe.serve()
    scrape(port)
    fe.stop()
    fe.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)


def _replay(requests: list[Request]) -> SyntheticFrontend:
    fe = SyntheticFrontend(model="llama", dynamo_namespace="inference-llama")
    replay = Replay(fe, requests, speed=1.0, model=LoadModel(prefill_workers=2, decode_workers=2)).start()
    assert replay.done.wait(10), "replay did not finish"
    replay.stop()
    assert replay.completed == len(requests)
    return fe


def _mean(fe: SyntheticFrontend, name: str) -> float:
    r = fe.registry
    return r.get_sample_value(name + "_sum", BASE) / r.get_sample_value(name + "_count", BASE)


def test_replay_latencies_respond_to_load() -> None:
    light = _replay([Request(i * 0.05, 1000, 5) for i in range(20)])
    heavy = _replay([Request(i * 0.001, 1000, 5) for i in range(20)])
    # light: no queueing, TTFT = 0.015 + 1000/40000; one sequence per decode worker
    assert _mean(light, SRC.ttft_seconds) == pytest.approx(0.04)
    assert _mean(light, SRC.itl_seconds) == pytest.approx(0.008 + 0.0002)
    # heavy: 20 requests in 20 ms against 2 workers of 40 ms each queue up
    assert _mean(heavy, SRC.ttft_seconds) > 5 * 0.04
    assert _mean(heavy, SRC.itl_seconds) >= 0.008 + 0.0002
    for fe in (light, heavy):
        r = fe.registry
        assert r.get_sample_value(SRC.requests_started, BASE) == 20
        assert r.get_sample_value(SRC.requests_total, BASE) == 20
        assert r.get_sample_value(SRC.input_tokens + "_sum", BASE) == 20000
        assert set(fe.workers()) == {"prefill-0", "prefill-1", "decode-0", "decode-1"}
        w = {**BASE, "worker_id": "prefill-0", "dp_rank": "0", "worker_type": "prefill"}
        assert r.get_sample_value(SRC.worker_active_prefill_tokens, w) == 0  # all done
        assert r.get_sample_value(SRC.worker_last_isl, w) == 1000


def test_history_writer_matches_the_live_exporter_series() -> None:
    """Backfilled history (requests and backlog gauges) and live scraping produce the same
    series (names, labels, le)."""
    fe = SyntheticFrontend(model="llama", dynamo_namespace="inference-llama")
    fe.observe_request(1000, 50, 0.25, 0.02, 1.25)
    from prometheus_client.exposition import generate_latest

    live = {
        (s.name, tuple(sorted(s.labels.items())))
        for fam in text_string_to_metric_families(generate_latest(fe.registry).decode())
        for s in fam.samples
        if not s.name.endswith("_created") and "worker" not in s.name
    }
    writer = frontend_history(
        [CompletedRequest(1000.0, 1000, 50, 0.25, 0.02, 1.25)], start=990.0, end=1005.0, step=15.0, labels=BASE
    )
    text = frontend_backlog([], start=990.0, end=1005.0, step=15.0, labels=BASE, writer=writer).text()
    assert text.endswith("# EOF\n")
    hist = set()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _value, ts = line.rsplit(" ", 2)
        assert ts in ("990.000", "1005.000")
        name, _, rest = series.partition("{")
        labels = tuple(sorted(tuple(kv.split("=", 1)) for kv in rest.rstrip("}").split(",")))
        hist.add((name, tuple((k, v.strip('"')) for k, v in labels)))
    assert hist == live
    assert f'{SRC.requests_started}{{dynamo_namespace="inference-llama",model="llama"}} 1 1005.000' in text
    assert f'{SRC.requests_started}{{dynamo_namespace="inference-llama",model="llama"}} 0 990.000' in text


def test_command_line_prints_port_serves_and_stops_on_sigterm() -> None:
    trace = REPO / "tests" / "fixtures" / "traces" / "azure-llm-2023-code-head2000.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaler.devtools.fake_frontend", "--trace", str(trace), "--speed", "2000", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        port = int(proc.stdout.readline().strip())
        deadline = time.monotonic() + 15
        started = 0.0
        while time.monotonic() < deadline:
            fams = scrape(port)
            started = value(fams["dynamo_frontend_requests_started"], SRC.requests_started)
            if started == 2000:
                break
            time.sleep(0.1)
        assert started == 2000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_command_line_bad_trace_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nnot-a-time,1,1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "scaler.devtools.fake_frontend", "--trace", str(bad)],
        capture_output=True, text=True, cwd=REPO, timeout=30,
    )
    assert proc.returncode == 2
    assert f"{bad}: line 2: TIMESTAMP" in proc.stderr


def test_requests_from_windows_reproduce_counts_and_means() -> None:
    from scaler.core.observations import TrafficWindow
    from scaler.devtools.backfill import requests_from_windows

    windows = [
        TrafficWindow(60, 4, isl=1500, osl=120, ttft_ms=180, itl_ms=12, request_duration_s=1.6),
        TrafficWindow(60, 0),
        TrafficWindow(60, 2, isl=10, osl=1, ttft_ms=5, itl_ms=1, request_duration_s=0.01),
    ]
    reqs = requests_from_windows(windows, start=1000.0)
    assert [sum(1 for r in reqs if 1000 + 60 * k < r.t <= 1000 + 60 * (k + 1)) for k in range(3)] == [4, 0, 2]
    first = [r for r in reqs if r.t <= 1060]
    assert {(r.isl, r.osl, r.ttft_s, r.itl_s, r.duration_s) for r in first} == {(1500, 120, 0.18, 0.012, 1.6)}
    with pytest.raises(ValueError, match="missing mean"):
        requests_from_windows([TrafficWindow(60, 3)], start=0.0)


def test_openmetrics_writer_gauges_escaping_and_order_checks(tmp_path: Path) -> None:
    from scaler.devtools.backfill import OpenMetricsWriter

    w = OpenMetricsWriter()
    w.gauge("g", {"worker_id": 'a"b\\c'}, [(10.0, 1.5), (25.0, 2.0)], help="a gauge")
    w.counter("c_total", {}, [(10.0, 3)])
    assert w.text() == (
        "# TYPE g gauge\n# HELP g a gauge\n"
        'g{worker_id="a\\"b\\\\c"} 1.5 10.000\n'
        'g{worker_id="a\\"b\\\\c"} 2 25.000\n'
        "# TYPE c counter\nc_total 3 10.000\n# EOF\n"
    )
    with pytest.raises(ValueError, match="timestamps must increase"):
        w.gauge("g", {"worker_id": 'a"b\\c'}, [(25.0, 1.0)])
    with pytest.raises(ValueError, match="must end in _total"):
        w.counter("c", {}, [])
    out = w.write(tmp_path / "h.om")
    assert out.read_text().endswith("# EOF\n") and not list(tmp_path.glob(".om-*"))


def test_replay_pool_size_changes_the_exported_workers() -> None:
    fe = SyntheticFrontend()
    replay = Replay(fe, [Request(0.0, 100, 2), Request(30.0, 100, 2)], speed=1.0).start()
    try:
        deadline = time.monotonic() + 5
        while fe.workers() != {"prefill-0": "prefill", "prefill-1": "prefill", "decode-0": "decode", "decode-1": "decode"}:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        replay.set_pool_size("decode", 3)
        replay.set_pool_size("prefill", 1)
        assert fe.workers() == {"prefill-0": "prefill", "decode-0": "decode", "decode-1": "decode", "decode-2": "decode"}
        with pytest.raises(ValueError):
            replay.set_pool_size("decode", 0)
    finally:
        replay.stop()
    # stopped mid-trace: the thread has ended, the request due at t=30 s never ran
    assert replay.done.is_set() and replay.completed <= 1
