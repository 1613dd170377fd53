"""`dynplan doctor` as a subprocess against a real Prometheus scraping synthetic vLLM engine
pods: every series found (exit 0), a pool selector that matches nothing (missing, with the
selector hint; exit 2), a vLLM too old for the ITL histogram (the rename hint), an idle
window (empty, not missing), a TTFT bound that is none of vLLM's buckets (missing, naming
the bounds either side) and Prometheus unreachable (exit 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import start_wsgi_server

from helpers import linear_profile, plan_dict, with_changes, write_plan
from procs import closed_port
from prometheus import PromFactory, wait_for_value
from scaler.cli import main
from scaler.devtools.frontend_exporter import SyntheticEngines
from scaler.sources import SOURCES

POOLS = {"prefill": {"pod": "=~llama-prefill-.*"}, "decode": {"pod": "=~llama-decode-.*"}}
# plan_dict's 200-ms SLA is none of vLLM's TTFT bounds (... 0.1, 0.25, 0.5 ...): the plans
# count ttft_miss above 250 ms, as a user told by the doctor would
BOUND = {"spec.rules.ttftBucketMs": 250}


def plan_file(tmp_path: Path, url: str, *, pools: dict = POOLS, name: str = "plan.yaml", load: bool = True,
              changes: Optional[dict[str, Any]] = None) -> Path:
    doc = with_changes(plan_dict(name="doc", load=load, sizing="attainment", interval_seconds=60), {
        "spec.scaling.load.intervalSeconds": 5,
        "spec.metrics": {"source": "vllm", "selector": {"namespace": "inference"}, "scrapeIntervalSeconds": 1,
                         "prometheus": {"url": url, "timeoutSeconds": 2, "retries": 0}},
        **(BOUND if changes is None else changes),
    })
    for pool, sel in pools.items():
        doc["spec"]["pools"][pool]["selector"] = sel
    return write_plan(tmp_path, doc, profile=linear_profile(), filename=name)


def doctor(tmp_path: Path, url: str, *, pools: dict = POOLS, name: str = "plan.yaml", load: bool = True,
           changes: Optional[dict[str, Any]] = None, output: str = "json") -> tuple[int, Any, str]:
    """The doctor in this process (click's runner: exit code, stdout as JSON or text,
    stderr); the last test runs it as a subprocess."""
    path = plan_file(tmp_path, url, pools=pools, name=name, load=load, changes=changes)
    result = CliRunner().invoke(main, ["doctor", "-f", str(path), "-o", output])
    if output == "text":
        return result.exit_code, result.stdout, result.stderr
    body = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, body, result.stderr


def by_key(body: dict[str, Any]) -> dict[tuple[str, Any], dict[str, Any]]:
    return {(c["series"], c["pool"]): c for c in body["checks"]}


@pytest.fixture(scope="module")
def engines(module_prom_factory: PromFactory) -> Any:
    """Two current vLLM pods, and an old vLLM's decode pod with only the TPOT histogram."""
    eng = SyntheticEngines(SOURCES["vllm"], model="llama", namespace="inference")
    for pod, role in (("llama-prefill-0", "prefill"), ("llama-decode-0", "decode")):
        eng.add_pod(pod, role)
        eng.set_load(pod, running=2, waiting=1, kv=0.25)
    old = CollectorRegistry()
    tpot = Histogram("vllm:time_per_output_token_seconds", "old", ["pod", "namespace"], registry=old)
    tpot.labels(pod="old-decode-0", namespace="inference").observe(0.02)
    httpd, thread = start_wsgi_server(0, addr="127.0.0.1", registry=old)
    port = eng.serve()
    server = module_prom_factory(scrape_targets=[f"127.0.0.1:{port}", f"127.0.0.1:{httpd.server_port}"])
    # prometheus_client may store the colon as "_" (see sources.series_selector): either name
    wait_for_value(server, 'count(count_over_time({__name__=~"vllm[:_]num_requests_waiting"}[1m]) >= 3) == 2', timeout=20)
    wait_for_value(server, '{__name__=~"vllm[:_]time_per_output_token_seconds_count"}')
    try:
        yield eng, server
    finally:
        eng.stop()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_an_idle_window_is_empty_not_missing(engines: Any, tmp_path: Path) -> None:
    _, server = engines
    rc, body, _ = doctor(tmp_path, server.url, load=False)
    checks = by_key(body)
    assert rc == 0
    assert checks[("requests", "decode")]["status"] == "found" and checks[("requests", "decode")]["value"] == 0
    assert checks[("isl", "decode")]["status"] == "empty" and "no traffic" in checks[("isl", "decode")]["hint"]


def test_everything_found(engines: Any, tmp_path: Path) -> None:
    eng, server = engines
    for _ in range(3):
        eng.observe_disagg("llama-prefill-0", "llama-decode-0", isl=1000, osl=5, ttft_s=0.2, itl_s=0.02, duration_s=0.3)
    wait_for_value(server, 'increase({__name__=~"vllm[:_]request_success_total",pod="llama-decode-0"}[5s]) > 0', timeout=10)
    rc, body, err = doctor(tmp_path, server.url)
    checks = by_key(body)
    assert rc == 0, (err, body)
    assert checks[("requests", "decode")]["status"] == "found" and checks[("requests", "decode")]["value"] > 0
    assert checks[("isl", "decode")]["value"] == pytest.approx(1000.0)
    assert checks[("ttft_ms", "prefill")]["status"] == "found"
    assert checks[("active_decode_blocks", "decode")]["status"] == "found"
    # no kube-state-metrics here: said, with the fallback, but not an error
    assert checks[("ready_replicas", "prefill")]["status"] == "missing"


def test_a_pool_selector_that_matches_nothing_is_missing_with_a_hint(engines: Any, tmp_path: Path) -> None:
    _, server = engines
    rc, body, _ = doctor(tmp_path, server.url, pools={"prefill": POOLS["prefill"], "decode": {"pod": "=~llama-dec-.*"}}, name="wrong.yaml")
    checks = by_key(body)
    assert rc == 2
    miss = checks[("requests", "decode")]
    assert miss["status"] == "missing" and 'pod=~"llama-dec-.*"' in miss["selector"] and 'pod=~"llama-dec-.*"' in miss["query"]
    assert "exists, but no series matches" in miss["hint"] and "spec.pools.decode.selector" in miss["hint"]
    assert "llama-decode-0" in miss["hint"]  # an example series with its labels
    assert checks[("ttft_ms", "prefill")]["status"] != "missing"


def test_an_old_vllm_gets_the_rename_hint(engines: Any, tmp_path: Path) -> None:
    _, server = engines
    pools = {"prefill": POOLS["prefill"], "decode": {"pod": "=~old-decode-.*"}}
    rc, body, _ = doctor(tmp_path, server.url, pools=pools, load=False)
    itl = by_key(body)[("itl_ms", "decode")]
    assert rc == 2 and itl["status"] == "missing"
    assert "vllm:time_per_output_token_seconds is there" in itl["hint"] and "0.11" in itl["hint"]


def test_a_ttft_sla_that_is_no_bucket_is_missing_with_the_bounds_either_side(engines: Any, tmp_path: Path) -> None:
    _, server = engines
    rc, body, err = doctor(tmp_path, server.url, load=False, changes={"spec.sla.ttftMs": 300})
    checks = by_key(body)
    assert rc == 2, (err, body)
    miss = checks[("ttft_miss", "prefill")]
    assert miss["status"] == "missing" and miss["value"] is None
    assert 'le="0.3"' in miss["selector"] and 'pod=~"llama-prefill-.*"' in miss["selector"]
    assert miss["hint"] == (
        "vllm:time_to_first_token_seconds_bucket has no bucket at le=0.3 (spec.sla.ttftMs: 300 ms, spec.rules.ttftBucketMs "
        "unset), so ttft_miss never has a value: its nearest bounds are 0.25 and 0.5 s; set "
        "spec.rules.ttftBucketMs to one of them (250 or 500; the one below counts every request over the SLA, the safe "
        "side for the sizing, the one above makes the SLI that bound's; docs/plan-spec.md); meanwhile the sizing runs "
        "on the counted dispersion alone"
    )
    # the only missing series but the ready counts (which have a fallback)
    assert sorted(k for k, c in checks.items() if c["status"] == "missing") == [
        ("ready_replicas", "decode"), ("ready_replicas", "prefill"), ("ttft_miss", "prefill")]


@pytest.mark.parametrize("changes, bound", [
    ({"spec.sla.ttftMs": 300, "spec.rules.ttftBucketMs": 250}, 'le="0.25"'),  # the documented fix
    ({"spec.sla.ttftMs": 1000}, 'le=~"1|1\\\\.0"'),  # Python's client writes whole seconds as "1.0"
])
def test_a_ttft_bound_that_is_a_bucket_is_not_missing(engines: Any, tmp_path: Path, changes: dict[str, Any], bound: str) -> None:
    _, server = engines
    rc, body, err = doctor(tmp_path, server.url, load=False, changes=changes)
    check = by_key(body)[("ttft_miss", "prefill")]
    assert rc == 0, (err, body)
    assert check["status"] in ("found", "empty") and bound in check["query"], check


def test_a_bound_outside_the_buckets_names_the_one_neighbour(engines: Any, tmp_path: Path) -> None:
    _, server = engines
    rc, out, _ = doctor(tmp_path, server.url, load=False, output="text",
                        changes={"spec.sla.ttftMs": 0.5, "spec.rules.ttftBucketMs": 0.5})
    assert rc == 2
    assert "MISSING  ttft_miss [prefill]\n" in out and "3 missing" in out  # and the two ready counts
    assert ("hint: vllm:time_to_first_token_seconds_bucket has no bucket at le=0.0005 (spec.rules.ttftBucketMs: 0.5 ms), "
            "so ttft_miss never has a value: its nearest bound is 0.001 s; set spec.rules.ttftBucketMs to it (1; ") in out


def test_prometheus_unreachable_exits_3(tmp_path: Path) -> None:
    path = plan_file(tmp_path, f"http://127.0.0.1:{closed_port()}")
    proc = subprocess.run([sys.executable, "-m", "scaler.cli", "doctor", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and proc.stdout == ""
    err = proc.stderr
    assert err.startswith("error: Prometheus http://127.0.0.1:") and "unreachable" in err and "Traceback" not in err


def test_validate_with_prometheus_checks_every_plan(engines: Any, tmp_path: Path) -> None:
    _, server = engines
    good = plan_file(tmp_path, server.url, load=False)
    bad = plan_file(tmp_path, server.url, pools={"prefill": POOLS["prefill"], "decode": {"pod": "=~llama-dec-.*"}},
                    name="wrong.yaml", load=False)
    proc = subprocess.run([sys.executable, "-m", "scaler.cli", "validate", "--prometheus", str(good), str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.count("plan doc (source vllm") == 2 and "MISSING  requests [decode]" in proc.stdout
    assert proc.stdout.index("plan.yaml: ok") < proc.stdout.index("FOUND")
