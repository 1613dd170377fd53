"""/decisions over HTTP: read only, under /metrics' limits, and secret-free even when the
Prometheus in front of a plan echoes the credential back in its errors."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from fake_http import FakeHTTPServer
from procs import closed_port
from scaler.prom.credentials import load_credentials
from service_harness import NAMESPACE, loop_of, raw_http, running_scaler, scrape, test_plan, write_plans

TOKEN = "tok-9f2c1d-never-shown"


async def test_decisions_keep_the_metrics_listeners_limits(tmp_path: Path) -> None:
    write_plans(tmp_path, [test_plan("alpha", f"http://127.0.0.1:{closed_port()}", "x")])
    async with running_scaler(tmp_path, metrics_read_timeout=1.0, metrics_max_connections=16) as (server, _keda):
        port = server.metrics_port
        assert port is not None
        head, _, body = (await raw_http(port, b"GET /decisions/inference/alpha HTTP/1.1\r\nHost: x\r\n\r\n")).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Type: application/json" in head
        doc = json.loads(body)
        assert doc["serving"]["code"] == "UNAVAILABLE" and doc["decision"] is None
        assert doc["serving"]["message"].startswith("plan inference/alpha has no decision yet")
        # HEAD: the headers only; other methods refused; a request head over 16 KiB closed unanswered
        head_only = await raw_http(port, b"HEAD /decisions HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head_only.startswith(b"HTTP/1.1 200 OK") and head_only.endswith(b"\r\n\r\n")
        assert (await raw_http(port, b"POST /decisions HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert await raw_http(port, b"GET /decisions/" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n") == b""
        # idle connections over the cap are evicted; /decisions still answers at once
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(100)]
        try:
            await asyncio.sleep(0.2)
            assert sum(r.at_eof() for r, _ in conns) == 100 - 16
            t0 = time.monotonic()
            assert (await raw_http(port, b"GET /decisions HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
            assert time.monotonic() - t0 < 1.0
        finally:
            for _, w in conns:
                w.close()
        # the 404 for another path still points at /metrics, and /metrics is unchanged
        assert b"the metrics are at /metrics" in await raw_http(port, b"GET /other HTTP/1.1\r\n\r\n")
        assert "dynplan_plans_loaded 1.0" in await scrape(server)


async def test_no_secret_in_decisions(tmp_path: Path) -> None:
    with FakeHTTPServer(mode="echo", status=502) as fake:
        token = tmp_path / "token"
        token.write_text(TOKEN + "\n")
        creds = tmp_path / "credentials.yaml"
        creds.write_text(f"credentials:\n  bearer: {{urlPrefixes: ['{fake.url}'], bearerTokenFile: {token}}}\n")
        doc = test_plan("p-bearer", fake.url, "x")
        doc["spec"]["metrics"]["prometheus"]["credentials"] = "bearer"
        plans = tmp_path / "plans"
        write_plans(plans, [doc])
        async with running_scaler(plans, credentials=load_credentials(creds)) as (server, _keda):
            try:
                await loop_of(server, "p-bearer").warm_up()
            except Exception:  # noqa: BLE001 - the echoing proxy fails every read: that is the point
                pass
            assert any(TOKEN in str(r) for r in fake.requests)  # the token was sent...
            for path in (f"/decisions/{NAMESPACE}/p-bearer", "/decisions"):
                body = await scrape(server, path)
                assert TOKEN not in body and "tok-9f2c1d" not in body, body  # ...and never shown
            served = json.loads(await scrape(server, f"/decisions/{NAMESPACE}/p-bearer"))
            assert served["lastError"] and "502" in served["lastError"]
            assert served["serving"]["message"].endswith(served["lastError"])
