"""`dynplan serve` as a process and its Prometheus access: the operator's credentials and
allowed endpoints (a plan only names an entry), no secret in any log line, RPC message,
/metrics or `explain` output, and a dripping Prometheus that turns healthy gets a fresh
decision within one interval. Prometheus is tests/support/fake_http.py in "prometheus",
"echo" and "drip" modes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from click.testing import CliRunner

from fake_http import FakeHTTPServer
from helpers import REPO
from keda_client import KedaClient
from scaler.cli import main
from service_harness import T, rewrite_plan, running_scaler, test_plan, trigger, write_plans

pytestmark = pytest.mark.slow

TOKEN = "SECRET-TOKEN-7f3a9c"
PASSWORD = "SECRET-PW-41d2"
URL_PASSWORD = "SECRET-URLPW-9b1e"
BASIC_BLOB = base64.b64encode(f"dynplan:{PASSWORD}".encode()).decode()


class Serve:
    """A `dynplan serve` subprocess whose stderr lines are collected as they come."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scaler.cli", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--settle-seconds", "0.5", *args],
            cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if '"event": "listening"' in line:
                self._ready.set()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if f'"event": "{name}"' in line]

    def wait_for(self, predicate: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                doc = json.loads(line)
                if predicate(doc):
                    return doc
            time.sleep(0.05)
        raise AssertionError("no such log line in time:\n" + "".join(self.lines[-20:]))

    def listening(self) -> dict[str, Any]:
        assert self._ready.wait(30), "".join(self.lines)
        return self.events("listening")[0]


@contextlib.contextmanager
def serving(args: list[str]) -> Iterator[Serve]:
    serve = Serve(args)
    try:
        yield serve
    finally:
        serve.proc.terminate()
        try:
            serve.proc.wait(10)
        except subprocess.TimeoutExpired:
            serve.proc.kill()


def _secret_file(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _plan(name: str, url: str, credentials: str | None = None) -> dict[str, Any]:
    doc = test_plan(name, url, name, timeout_seconds=0.5, retries=0)
    if credentials is not None:
        doc["spec"]["metrics"]["prometheus"]["credentials"] = credentials
    return doc


def _assert_no_secret(where: str, text: str) -> None:
    for secret in (TOKEN, PASSWORD, URL_PASSWORD, BASIC_BLOB, "SECRET"):
        assert secret not in text, f"{secret} in {where}: ...{text[max(0, text.find(secret) - 200):text.find(secret) + 60]}..."


async def test_no_secret_in_logs_rpc_messages_metrics_or_explain(tmp_path: Path) -> None:
    """H2, M5: each secret kind (bearer token, basic-auth password, URL userinfo, a token
    rotated to two lines) against a proxy that echoes the request's headers in its error."""
    with FakeHTTPServer(mode="echo", status=502) as fake:
        token = _secret_file(tmp_path / "token", TOKEN + "\n")
        password = _secret_file(tmp_path / "password", PASSWORD + "\n")
        creds = tmp_path / "credentials.yaml"
        creds.write_text(
            "credentials:\n"
            f"  bearer: {{urlPrefixes: ['{fake.url}'], bearerTokenFile: {token}}}\n"
            f"  basic: {{urlPrefixes: ['{fake.url}'], basicAuth: {{username: dynplan, passwordFile: {password}}}}}\n"
        )
        userinfo_url = fake.url.replace("http://", f"http://admin:{URL_PASSWORD}@")
        plans = tmp_path / "plans"
        write_plans(plans, [_plan("p-bearer", fake.url, "bearer"), _plan("p-basic", fake.url, "basic"),
                            _plan("p-userinfo", userinfo_url)])
        with serving(["--plans", str(plans), "--credentials", str(creds), "--prometheus-allow", fake.url]) as serve:
            listening = serve.listening()
            assert listening["plans"] == 2  # p-userinfo is refused at load
            failed = serve.events("plan_load_failed")
            assert [f["file"].rsplit("/", 1)[-1] for f in failed] == ["p-userinfo-inference.yaml"]
            assert "spec.metrics.prometheus.url: must not carry a user or password" in failed[0]["errors"][0]
            for plan in ("p-bearer", "p-basic"):
                serve.wait_for(lambda d, plan=plan: d.get("event") == "decision_failed" and d["plan"] == plan, 20)
            # the token file is rotated to two lines: refused when read, named, never quoted
            Path(token).write_text(f"{TOKEN}-LINE1\n{TOKEN}-LINE2\n")
            serve.wait_for(lambda d: d.get("event") == "decision_failed" and "contains a newline" in d["error"], 20)
            address = f"127.0.0.1:{listening['port']}"
            messages = []
            async with grpc.aio.insecure_channel(address) as channel:
                client = KedaClient(channel, address)
                for plan in ("p-bearer", "p-basic"):
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await client.poll(trigger(plan, "decode"))
                    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                    messages.append(info.value.details() or "")
            with urllib.request.urlopen(f"http://127.0.0.1:{listening['metricsPort']}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            log = "".join(serve.lines)
        # the secrets did travel where they belong (so their absence elsewhere means something)
        sent = {r["headers"].get("Authorization") for r in fake.requests}
        assert f"Bearer {TOKEN}" in sent and f"Basic {BASIC_BLOB}" in sent
        assert "HTTP 502: bad gateway; request headers:" in log and "<redacted>" in log
        assert "not sent: bearer token file" in messages[0] or "<redacted>" in messages[0]
        _assert_no_secret("the log", log)
        _assert_no_secret("the RPC messages", "\n".join(messages))
        _assert_no_secret("/metrics", metrics)
        # explain, with the same credentials file
        Path(token).write_text(TOKEN + "\n")
        runner = CliRunner()
        for name in ("p-bearer-inference.yaml", "p-basic-inference.yaml", "p-userinfo-inference.yaml"):
            # in a thread: explain runs its own event loop
            result = await asyncio.to_thread(
                runner.invoke, main, ["explain", "-f", str(plans / name), "--credentials", str(creds)]
            )
            assert result.exit_code == (2 if "userinfo" in name else 3), result.output
            _assert_no_secret(f"explain {name}", result.output)
            if "userinfo" not in name:
                assert "HTTP 502: bad gateway; request headers: {" in result.output and "<redacted>" in result.output


def test_serve_refuses_a_bad_credentials_file_without_quoting_it(tmp_path: Path) -> None:
    token = _secret_file(tmp_path / "token", f"{TOKEN}-LINE1\n{TOKEN}-LINE2\n")
    creds = tmp_path / "credentials.yaml"
    creds.write_text(f"credentials:\n  t: {{urlPrefixes: ['http://prom:9090'], bearerTokenFile: {token}}}\n")
    runner = CliRunner()
    result = runner.invoke(main, ["serve", "--plans", str(tmp_path), "--credentials", str(creds)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {creds}: credentials.t.bearerTokenFile: bearer token file {token} contains a newline (it must hold one line)"
    )
    result = runner.invoke(main, ["serve", "--plans", str(tmp_path), "--prometheus-allow", f"http://u:{URL_PASSWORD}@prom:9090"])
    assert result.exit_code == 2 and "--prometheus-allow: 1: must not carry a user or password" in result.output
    _assert_no_secret("serve's error", result.output)


async def test_plans_outside_prometheus_allow_are_refused(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    write_plans(plans, [_plan("allowed", "http://127.0.0.1:1"), _plan("elsewhere", "http://collector.example:80")])
    async with running_scaler(plans, prometheus_allow=("http://127.0.0.1:1",)) as (server, _):
        assert sorted(server.registry.index) == [("inference", "allowed")]
        (failure,) = server.registry.failures.values()
        assert failure.message == (
            f"{plans / 'elsewhere-inference.yaml'}: spec.metrics.prometheus.url: http://collector.example:80 is not "
            "an allowed Prometheus endpoint; this scaler allows: http://127.0.0.1:1 (dynplan serve --prometheus-allow)"
        )
    async with running_scaler(plans) as (server, _):  # no allow list: anywhere
        assert len(server.registry.index) == 2


def test_a_dripping_prometheus_that_turns_healthy_decides_within_one_interval(tmp_path: Path) -> None:
    """M4: with per-read timeouts the dripping answers held every query thread (the
    red-team run saw the first fresh decision 135 s after Prometheus was healthy again;
    the same scenario with timeout 2 s at 83b30e5: 136 s)."""
    with FakeHTTPServer(mode="drip", drip_seconds=120) as fake:
        plans = tmp_path / "plans"
        doc = test_plan("drip", fake.url, "drip", timeout_seconds=0.5, retries=1)
        write_plans(plans, [doc])
        with serving(["--plans", str(plans), "--prometheus-concurrency", "4"]) as serve:
            serve.listening()
            (warning,) = serve.events("prometheus_unrestricted")  # no --prometheus-allow
            assert warning["level"] == "WARNING"
            # the warm-up and the ticks fail while it drips: every query thread reads a drip
            serve.wait_for(lambda d: d.get("event") == "decision_failed" and "timed out after 0.5s" in d["error"], 30)
            fake.mode = "prometheus"
            healthy = time.time()
            decision = serve.wait_for(lambda d: d.get("event") == "decision" and d["madeAt"] > healthy, T + 8)
            recovered = decision["madeAt"] - healthy
        print(f"first fresh decision {recovered:.1f}s after Prometheus turned healthy")
        assert recovered <= T + 0.5 + 2.0, recovered  # the next window on the grid, its settle, one read


async def test_clients_no_plan_uses_are_closed(tmp_path: Path) -> None:
    """Each distinct Prometheus access has its own client and query threads: a plan
    re-saved with another timeout (or URL) must not leave the old client behind."""
    plans = tmp_path / "plans"
    doc = _plan("churn", "http://127.0.0.1:1")
    write_plans(plans, [doc, _plan("steady", "http://127.0.0.1:2")])
    path = plans / "churn-inference.yaml"
    async with running_scaler(plans) as (server, _):
        first = dict(server._clients)
        assert len(first) == 2
        for timeout in (0.6, 0.7, 0.8, 0.9):
            doc["spec"]["metrics"]["prometheus"]["timeoutSeconds"] = timeout
            rewrite_plan(path, doc)
            assert await server.registry.scan()
        # the steady plan's client, the churned plan's latest and the one it replaced
        # (closed when the next new client is built); was all six
        assert sorted(json.loads(k)["timeout_seconds"] for k in server._clients) == [0.5, 0.8, 0.9]
        closed = [c for k, c in first.items() if k not in server._clients]
        assert [c._closed for c in closed] == [True]
