"""PromClient against a misbehaving Prometheus (tests/support/fake_http.py): a body that
drips one byte a second or never comes fails within the client's deadline, its thread is
freed, the next query against a healthy server answers at once, close() never blocks and no
query thread keeps the process alive; redirects are not followed; no secret ends up in an
error's text."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fake_http import FakeHTTPServer
from helpers import REPO
from scaler.core.plan import PrometheusAccess
from scaler.errors import MetricsUnavailable
from scaler.prom import client as client_module
from scaler.prom.client import PromClient
from scaler.prom.credentials import Credential

REQUESTS = "sum(increase(dynamo_frontend_requests_total[60s]))"
SLACK = 0.4  # scheduling on a busy 2-core CI machine


@pytest.mark.parametrize("mode", ["drip", "hang"])
async def test_slow_answers_fail_within_the_deadline_and_free_the_thread(mode: str) -> None:
    with FakeHTTPServer(mode=mode, drip_seconds=60) as fake:
        access = PrometheusAccess(url=fake.url, timeout_seconds=0.5, retries=1)
        async with PromClient(access, max_concurrency=2) as client:
            assert client.deadline_seconds == pytest.approx(1.05)
            t0 = time.monotonic()
            results = await asyncio.gather(
                *(client.instant(REQUESTS) for _ in range(4)), return_exceptions=True
            )
            elapsed = time.monotonic() - t0
            assert all(isinstance(r, MetricsUnavailable) for r in results), results
            assert str(results[0]) == f"Prometheus query {REQUESTS!r} failed: timed out after 0.5s"
            # 4 queries through 2 slots: two rounds of one deadline each (the drip would last 60 s)
            assert 2 * 1.0 <= elapsed < 2 * client.deadline_seconds + SLACK
            assert client.active == 0
            assert len(fake.requests) == 8  # 4 queries x (1 + 1 retry)
            fake.mode = "prometheus"
            t0 = time.monotonic()
            (sample,) = await client.instant(REQUESTS)
            assert sample.value == 50.0
            assert time.monotonic() - t0 < 0.3


async def test_close_cuts_off_a_dripping_answer_without_blocking() -> None:
    with FakeHTTPServer(mode="drip", drip_seconds=60) as fake:
        client = PromClient(PrometheusAccess(url=fake.url, timeout_seconds=30, retries=5))
        task = asyncio.ensure_future(client.instant(REQUESTS))
        while not fake.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # reading the body now
        t0 = time.monotonic()
        client.close()
        assert time.monotonic() - t0 < 0.05
        with pytest.raises(MetricsUnavailable, match="failed: client closed; connection to http://127.0.0.1:[0-9]+ broken"):
            await asyncio.wait_for(task, 2.0)
        for _ in range(50):  # the thread ends with it (no retry after close)
            if client.active == 0:
                break
            await asyncio.sleep(0.01)
        assert client.active == 0
        assert len(fake.requests) == 1
        with pytest.raises(MetricsUnavailable, match="not sent: client closed"):
            await client.instant(REQUESTS)


def test_a_stuck_query_does_not_keep_the_process_alive() -> None:
    """The interpreter joined ThreadPoolExecutor threads at exit: `dynplan serve` stayed up
    after SIGTERM for as long as a dripping answer lasted."""
    with FakeHTTPServer(mode="drip", drip_seconds=60) as fake:
        script = textwrap.dedent(f"""
            import threading, time
            from scaler.core.plan import PrometheusAccess
            from scaler.prom.client import PromClient
            client = PromClient(PrometheusAccess(url={fake.url!r}, timeout_seconds=30, retries=0))
            threading.Thread(target=lambda: client._executor.submit(client.instant_sync, "up"), daemon=True).start()
            time.sleep(0.5)
            print(time.monotonic(), flush=True)  # CLOCK_MONOTONIC: the same clock as the test's
        """)
        proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=40)
        exited = time.monotonic()
        assert proc.returncode == 0, proc.stderr
        assert len(fake.requests) == 1
        # from the end of the script to the process gone: not the 30 s budget nor the 60 s drip
        assert exited - float(proc.stdout) < 1.5


async def test_redirects_are_not_followed() -> None:
    with FakeHTTPServer(status=302, body=b"") as fake:
        async with PromClient(PrometheusAccess(url=fake.url, retries=2)) as client:
            with pytest.raises(MetricsUnavailable, match=r"failed: HTTP 302: redirect not followed"):
                await client.instant("up")
        assert len(fake.requests) == 1


async def test_garbage_and_oversized_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHTTPServer(mode="garbage") as fake:
        async with PromClient(PrometheusAccess(url=fake.url, retries=2)) as client:
            with pytest.raises(MetricsUnavailable, match=r"'up' failed: malformed response \(not JSON\)$"):
                await client.instant("up")
            monkeypatch.setattr(client_module, "MAX_BODY_BYTES", 8)
            fake.mode = "prometheus"
            with pytest.raises(MetricsUnavailable, match=r"malformed response \(answer larger than 0 MiB\)"):
                await client.instant("up")


def _token(tmp_path: Path, text: str) -> str:
    path = tmp_path / "token"
    path.write_text(text)
    return str(path)


async def test_a_multi_line_token_is_named_not_sent_nor_quoted(tmp_path: Path) -> None:
    """H2: http.client's `Invalid header value b'Bearer <token>'` was the error text."""
    with FakeHTTPServer() as fake:
        path = _token(tmp_path, "tok-SECRET-line1\ntok-SECRET-line2\n")
        cred = Credential(url_prefixes=(fake.url,), bearer_token_file=path)
        async with PromClient(PrometheusAccess(url=fake.url, credentials="t"), credential=cred) as client:
            with pytest.raises(MetricsUnavailable) as info:
                await client.instant("up")
        assert str(info.value) == (
            f"Prometheus query 'up' not sent: bearer token file {path} contains a newline (it must hold one line)"
        )
        assert fake.requests == []


@pytest.mark.parametrize("auth", ["bearer", "basic"])
async def test_secrets_echoed_by_a_server_are_redacted(tmp_path: Path, auth: str) -> None:
    with FakeHTTPServer(mode="echo", status=502) as fake:
        path = _token(tmp_path, "pw-SECRET-7f3a\n")
        if auth == "bearer":
            cred = Credential(url_prefixes=(fake.url,), bearer_token_file=path)
        else:
            cred = Credential.model_validate({"urlPrefixes": [fake.url], "basicAuth": {"username": "u", "passwordFile": path}})
        async with PromClient(PrometheusAccess(url=fake.url, credentials="t", retries=0), credential=cred) as client:
            with pytest.raises(MetricsUnavailable) as info:
                await client.instant("up")
        text = str(info.value)
        assert text.startswith("Prometheus query 'up' failed: HTTP 502: bad gateway; request headers: ")
        assert "<redacted>" in text
        assert "SECRET" not in text and "cHctU0VDUkVU" not in text  # nor its base64 (u:pw-SECRET...)
        assert fake.requests[0]["headers"]["Authorization"] != ""


def test_a_credential_is_never_sent_outside_its_prefixes() -> None:
    cred = Credential(url_prefixes=("http://prom.monitoring:9090",), bearer_token_file="/t")
    with pytest.raises(ValueError, match="may not be sent to this URL"):
        PromClient(PrometheusAccess(url="http://elsewhere:9090", credentials="t"), credential=cred)
    with pytest.raises(ValueError, match="names credentials 't'"):
        PromClient(PrometheusAccess(url="http://prom.monitoring:9090", credentials="t"))
