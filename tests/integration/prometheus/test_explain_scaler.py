"""`explain` when it matters: a real `dynplan serve` subprocess reading a real Prometheus.

- `/decisions/<namespace>/<plan>` on the metrics listener answers exactly what GetMetrics
  and IsActive answer over gRPC at the same time (and the same UNAVAILABLE text);
- `dynplan explain --scaler HOST:PORT --plan NS/NAME` prints that decision;
- `explain --prometheus-url` reads a port-forward instead of the plan's URL, with the
  plan's credential only where its urlPrefixes allow;
- a query that returns nothing is named once, with the plan's selector.

The history is backfilled up to ten minutes ahead of now, so the scaler's first decision
(its warm-up at start) reads known traffic at once: 50 req/s -> prefill 4, decode 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from click.testing import CliRunner

from keda_client import KedaClient
from procs import ServeProcess, closed_port
from scaler.cli import main
from scaler.core.replay import grid_end
from scaler.devtools.backfill import OpenMetricsWriter
from scaler.proto import externalscaler_pb2 as pb
from service_harness import IDLE, NAMESPACE, T, add_history, busy, test_plan, trigger, write_plans

REPO = Path(__file__).resolve().parents[3]
PLAN = "llama-8b"
WANT = {"prefill": 4, "decode": 3}


@pytest.fixture(scope="module")
def prom(module_prom_factory: Any) -> Any:
    w = OpenMetricsWriter()
    end = grid_end(time.time() + 600, T)
    add_history(w, "inference-llama-8b", [busy(50)] * 80, end)
    add_history(w, "idle-ns", [IDLE] * 80, end)  # counters at 0: every mean is NaN
    return module_prom_factory(history=w)


@pytest.fixture(scope="module")
def plans(prom: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plans")
    write_plans(d, [
        test_plan(PLAN, prom.url, "inference-llama-8b"),
        test_plan("nowhere", prom.url, "nobody-here"),  # selects no series: never a decision
    ])
    return d


@pytest.fixture(scope="module")
def scaler(plans: Path) -> Iterator[dict[str, Any]]:
    """The subprocess, once it has decided for PLAN and failed for "nowhere": its gRPC and
    metrics addresses."""
    serve = ServeProcess(["--plans", str(plans), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
    events = serve.events

    def ready(evs: list[dict[str, Any]]) -> bool:
        # once PLAN has decided and "nowhere" has failed a read (its message names it)
        seen = {(e.get("event"), e.get("plan")) for e in evs}
        return {("decision", PLAN), ("decision_failed", "nowhere")} <= seen

    try:
        assert serve.wait_for(ready, 30), (serve.proc.poll(), events[-5:])
        (listening,) = serve.named("listening")
        _served(f"127.0.0.1:{listening['port']}")
        yield {"grpc": f"127.0.0.1:{listening['port']}", "metrics": f"127.0.0.1:{listening['metricsPort']}", "events": events}
    finally:
        serve.stop()


def _served(address: str, within: float = 5.0) -> None:
    """Until the serving process answers PLAN: the decider hands a decision over within
    about 50 ms of logging it (scaler.service.decider)."""
    from scaler.proto import externalscaler_pb2_grpc as pb_grpc

    deadline = time.monotonic() + within
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        ref = pb.ScaledObjectRef(name=f"{PLAN}-decode", namespace=NAMESPACE, scalerMetadata={"plan": PLAN, "pool": "decode"})
        while True:
            try:
                stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=f"dynplan-{PLAN}-decode"), timeout=3)
                return
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the decision logged was never served"
                time.sleep(0.05)


def get(address: str, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as r:
            assert r.headers["Content-Type"] == "application/json"
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


async def test_decisions_document_answers_what_get_metrics_answers(scaler: dict[str, Any]) -> None:
    async with grpc.aio.insecure_channel(scaler["grpc"]) as channel:
        keda = KedaClient(channel, scaler["grpc"])
        status, doc = get(scaler["metrics"], f"/decisions/{NAMESPACE}/{PLAN}")
        answers, active = {}, {}
        for pool in WANT:
            ref = keda.ref(trigger(PLAN, pool))
            got = await keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=f"dynplan-{PLAN}-{pool}"))
            answers[pool] = got.metricValues[0].metricValueFloat
            active[pool] = (await keda.stub.IsActive(ref)).result
        assert status == 200 and doc["kind"] == "dynplan.io/decision"
        assert doc["serving"] == {"code": "OK", "message": None, "replicas": WANT, "active": {"prefill": True, "decode": True}}
        assert {p: float(r) for p, r in doc["serving"]["replicas"].items()} == answers
        assert doc["serving"]["active"] == active
        assert {p: v["replicas"] for p, v in doc["decision"]["pools"].items()} == WANT
        assert doc["decision"]["throughput"]["observedRate"] == 50.0
        assert (doc["plan"], doc["namespace"], doc["windowSeconds"]) == (PLAN, NAMESPACE, T)
        assert doc["windowEnd"] == doc["decision"]["timestamp"] and doc["windowEnd"] % T == 0
        assert 0 <= doc["ageSeconds"] <= doc["stalenessBoundSeconds"] == 3 * T

        # A plan with no decision: UNAVAILABLE over gRPC, the same code and text here.
        ref = keda.ref(trigger("nowhere", "decode"))
        for _ in range(3):  # the text names the latest failed tick: retry if one lands in between
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="dynplan-nowhere-decode"))
            status, none = get(scaler["metrics"], f"/decisions/{NAMESPACE}/nowhere")
            if none["serving"]["message"] == err.value.details():
                break
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert status == 200 and none["serving"]["code"] == "UNAVAILABLE" and none["decision"] is None
        assert none["serving"]["message"] == err.value.details()
        assert none["serving"]["message"].endswith(f"; last error: {none['lastError']}")

    status, index = get(scaler["metrics"], "/decisions")
    assert status == 200
    assert [(p["namespace"], p["plan"], p["code"]) for p in index["plans"]] == [
        (NAMESPACE, PLAN, "OK"), (NAMESPACE, "nowhere", "UNAVAILABLE")]
    for path in (f"/decisions/{NAMESPACE}/ghost", "/decisions/a/b/c", "/decisions/%2e%2e/x", "/decisions/Upper/x"):
        status, body = get(scaler["metrics"], path)
        assert status == 404 and set(body) == {"error"}, path
    assert get(scaler["metrics"], f"/decisions/{NAMESPACE}/ghost")[1] == {"error": f"no plan 'ghost' in namespace '{NAMESPACE}'"}


def test_explain_scaler_prints_the_served_decision(scaler: dict[str, Any]) -> None:
    # A real CLI process once; the error cases in-process (same code, no start-up cost).
    out = subprocess.run(
        [sys.executable, "-m", "scaler.cli", "explain", "--scaler", scaler["metrics"], "--plan", f"{NAMESPACE}/{PLAN}"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"plan {NAMESPACE}/{PLAN}  (scaler {scaler['metrics']}, reading Prometheus {lines[0].split()[-1]}"
    assert lines[1].startswith("serving: GetMetrics answers prefill 4, decode 3; decision made 20")
    assert "reason: scale" in lines
    assert any(line.split()[:2] == ["prefill", "4"] for line in lines)
    assert any(line.split()[:2] == ["decode", "3"] for line in lines)
    assert any(line.startswith("rate (req/s)") and line.split()[-2] == "50.00" for line in lines)
    assert out.stderr == ""

    runner = CliRunner()
    as_json = runner.invoke(main, ["explain", "--scaler", scaler["metrics"], "--plan", f"{NAMESPACE}/{PLAN}", "-o", "json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert doc["serving"]["replicas"] == WANT and doc["kind"] == "dynplan.io/decision"

    cases = [
        (["--plan", f"{NAMESPACE}/ghost"], 2, f"error: the scaler at {scaler['metrics']} has no plan 'ghost' in namespace '{NAMESPACE}' (--plan)"),
        (["--plan", "nope"], 2, "error: --plan: 'nope' is not NAMESPACE/NAME (DNS-1123 labels)"),
        (["--plan", f"{NAMESPACE}/{PLAN}", "--at", "1767225600"], 2, "error: --at: does not apply with --scaler (the scaler decides from its own reads)"),
        (["--plan", f"{NAMESPACE}/nowhere"], 3, "error: plan inference/nowhere has no decision yet (waiting for Prometheus); last error: "),
    ]
    for args, code, message in cases:
        result = runner.invoke(main, ["explain", "--scaler", scaler["metrics"], *args])
        assert result.exit_code == code, (args, result.output)
        assert result.output.startswith(message), (args, result.output)
        assert len(result.output.splitlines()) == 1, result.output
    port = closed_port()
    result = runner.invoke(main, ["explain", "--scaler", f"127.0.0.1:{port}", "--plan", f"{NAMESPACE}/{PLAN}"])
    assert (result.exit_code, result.output) == (
        3, f"error: cannot read the scaler at 127.0.0.1:{port} (--scaler): Connect call failed ('127.0.0.1', {port})\n")
    # The gRPC port is not the metrics listener: said so, not a traceback.
    result = runner.invoke(main, ["explain", "--scaler", scaler["grpc"], "--plan", f"{NAMESPACE}/{PLAN}"])
    assert result.exit_code == 3 and len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith(f"error: cannot read the scaler at {scaler['grpc']} (--scaler): "), result.output


def test_explain_prometheus_url_reads_the_forwarded_address(scaler: dict[str, Any], prom: Any, tmp_path: Path) -> None:
    _, served = get(scaler["metrics"], f"/decisions/{NAMESPACE}/{PLAN}")
    unreachable = f"http://127.0.0.1:{closed_port()}"
    doc = test_plan(PLAN, unreachable, "inference-llama-8b")
    write_plans(tmp_path, [doc])
    plan_file = str(tmp_path / f"{PLAN}-{NAMESPACE}.yaml")
    runner = CliRunner()
    at = str(served["windowEnd"] + 3)  # the scaler's window (settle delay 2.5 s)
    result = runner.invoke(main, ["explain", "-f", plan_file, "--prometheus-url", prom.url, "--at", at, "-o", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["prometheus"] == prom.url and out["windowEnd"] == served["windowEnd"]
    assert out["decision"]["pools"] == served["decision"]["pools"]
    assert out["decision"]["throughput"] == served["decision"]["throughput"]
    # the backfill has no per-worker series: named (each once), every traffic series answered
    assert sorted(d["series"] for d in out["noData"]) == [
        "worker active_decode_blocks", "worker active_prefill_tokens", "worker last_isl", "worker last_itl_ms",
        "worker last_ttft_ms"]
    assert {d["selector"] for d in out["noData"]} == {'{dynamo_namespace="inference-llama-8b"}'}
    # Without the override: the plan's own (unreachable) URL.
    assert runner.invoke(main, ["explain", "-f", plan_file, "--at", at]).exit_code == 3

    # A plan naming a credential: sent only under its urlPrefixes.
    doc["spec"]["metrics"]["prometheus"]["credentials"] = "prom"
    write_plans(tmp_path, [doc])
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    creds = tmp_path / "credentials.yaml"
    creds.write_text(f"credentials:\n  prom: {{urlPrefixes: ['{unreachable}'], bearerTokenFile: {token}}}\n")
    refused = runner.invoke(main, ["explain", "-f", plan_file, "--prometheus-url", prom.url, "--credentials", str(creds), "--at", at])
    assert refused.exit_code == 2
    assert refused.output == (
        f"error: --prometheus-url: the plan's credentials 'prom' may only be sent to {unreachable}, not {prom.url}: add the "
        "forwarded address to that entry's urlPrefixes in your copy of the credentials file, or leave out --credentials "
        "to read it without them\n"
    )
    creds.write_text(f"credentials:\n  prom: {{urlPrefixes: ['{unreachable}', '{prom.url}'], bearerTokenFile: {token}}}\n")
    allowed = runner.invoke(main, ["explain", "-f", plan_file, "--prometheus-url", prom.url, "--credentials", str(creds), "--at", at, "-o", "json"])
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.output)["decision"]["pools"] == served["decision"]["pools"]
    bare = CliRunner().invoke(main, ["explain", "-f", plan_file, "--prometheus-url", prom.url, "--at", at, "-o", "json"])
    assert bare.exit_code == 0, bare.output
    assert bare.stderr == f"note: the plan names credentials 'prom'; without --credentials, {prom.url} is read without them\n"
    assert json.loads(bare.stdout)["decision"]["pools"] == served["decision"]["pools"]
    # A URL the plan field would refuse is refused here too, naming the option.
    bad = runner.invoke(main, ["explain", "-f", plan_file, "--prometheus-url", "http://user:pw@127.0.0.1:9090"])
    assert bad.exit_code == 2 and bad.output.startswith("error: --prometheus-url: 'http://user:pw@127.0.0.1:9090' must not carry a user or password")


def test_a_query_that_returns_nothing_is_named_once_with_the_selector(prom: Any, tmp_path: Path) -> None:
    write_plans(tmp_path, [test_plan("nowhere", prom.url, "nobody-here")])
    result = CliRunner().invoke(main, ["explain", "-f", str(tmp_path / f"nowhere-{NAMESPACE}.yaml")])
    assert result.exit_code == 3 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: plan inference/nowhere: Prometheus returned no history up to ")
    assert lines[1] == 'no data for 11 queries (selector {dynamo_namespace="nobody-here"}):'
    requests = [line for line in lines if line.startswith("  requests: ")]
    assert len(requests) == 1, lines  # read as one range query over 32 windows: named once
    assert 'dynamo_frontend_requests_started_total{dynamo_namespace="nobody-here"}' in requests[0]
    assert len(lines) == len(set(lines)) == 13  # the error, the header, 11 distinct queries; no log noise


async def test_a_stale_decision_is_shown_but_not_served(plans: Path) -> None:
    # In process, with a staleness bound of 10 ms: the decision is too old at once.
    import asyncio

    from service_harness import loop_of, rpc_error, running_scaler

    async with running_scaler(plans, staleness_factor=0.001) as (server, keda):
        await loop_of(server, PLAN).warm_up()
        await asyncio.sleep(0.05)
        address = f"127.0.0.1:{server.metrics_port}"
        ref = keda.ref(trigger(PLAN, "prefill"))
        err = await rpc_error(keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=f"dynplan-{PLAN}-prefill")))
        status, doc = await asyncio.to_thread(get, address, f"/decisions/{NAMESPACE}/{PLAN}")
        assert err.code() == grpc.StatusCode.UNAVAILABLE and "above the staleness bound" in err.details()
        assert status == 200 and doc["serving"]["code"] == "UNAVAILABLE" and doc["serving"]["replicas"] is None
        stale = f"plan {NAMESPACE}/{PLAN}: the latest good decision is "  # then its age, which moves on
        assert doc["serving"]["message"].startswith(stale) and err.details().startswith(stale)
        assert {p: v["replicas"] for p, v in doc["decision"]["pools"].items()} == WANT  # still shown
        result = await asyncio.to_thread(CliRunner().invoke, main, ["explain", "--scaler", address, "--plan", f"{NAMESPACE}/{PLAN}"])
        assert result.exit_code == 3
        assert result.stdout.splitlines()[1].startswith(f"serving: UNAVAILABLE: {stale}")
        assert "reason: scale" in result.stdout
        assert result.stderr.startswith(f"error: {stale}") and len(result.stderr.splitlines()) == 1


def test_an_idle_windows_nan_is_an_answer_not_missing_data(prom: Any, tmp_path: Path) -> None:
    write_plans(tmp_path, [test_plan("idle", prom.url, "idle-ns")])
    result = CliRunner().invoke(main, ["explain", "-f", str(tmp_path / f"idle-{NAMESPACE}.yaml"), "-o", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["decision"]["reason"] == "idle" and out["decision"]["throughput"]["observedIsl"] is None
    # only the per-worker series (not in the backfill) are missing; the means answered NaN
    assert {d["series"].split()[0] for d in out["noData"]} == {"worker"}
