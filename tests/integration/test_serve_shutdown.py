"""SIGTERM ends `dynplan serve` (exit 0) within --shutdown-timeout in every state: a
Prometheus that drips its answer, symlink loops in the plans directory (at start-up and
later), a FIFO where a profile file should be, 400 open streams and a big plan being
built (a worker thread that cannot be interrupted). Each case is a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import grpc
import numpy as np
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import flat_profile
from keda_client import KedaClient
from procs import closed_port
from service_harness import test_plan, trigger, write_plans

REPO = Path(__file__).resolve().parents[2]
BOUND = 3.0  # --shutdown-timeout of these tests
SLACK = 1.5  # interpreter teardown and process reaping on a busy 2-core machine


class DripServer:
    """An HTTP server that sends headers at once, then one byte every `gap` seconds:
    per-read socket timeouts never fire on it (the red-team report's M4)."""

    def __init__(self, gap: float = 0.5) -> None:
        outer = self
        self.requests = 0
        self._stop = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                while not outer._stop.wait(gap):
                    try:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    except OSError:
                        return

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class Serve:
    """`dynplan serve` on fixed loopback ports, its stderr collected."""

    def __init__(self, plans: Path) -> None:
        self.port = closed_port()
        self.address = f"127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scaler.cli", "serve", "--plans", str(plans), "--listen", self.address,
             "--metrics-listen", f"127.0.0.1:{closed_port()}", "--shutdown-timeout", str(BOUND), "--reload-seconds", "0.2"],
            cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def events(self, name: str) -> list[dict]:
        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                doc = json.loads(line)
                if doc.get("event") == name:
                    out.append(doc)
        return out

    async def live(self, timeout: float = 20.0) -> None:
        """Until liveness answers SERVING (before the plans are loaded)."""
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                assert self.proc.poll() is None, "".join(self.lines)
                try:
                    resp = await stub.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=1)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                assert time.monotonic() < deadline, "".join(self.lines)
                await asyncio.sleep(0.1)

    async def listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.events("listening"):
            assert self.proc.poll() is None and time.monotonic() < deadline, "".join(self.lines)
            await asyncio.sleep(0.05)

    def terminate(self) -> tuple[Optional[int], float]:
        """SIGTERM; (exit code or None if still running after BOUND + 10 s, seconds)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc: Optional[int] = self.proc.wait(BOUND + 10)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_sigterm_while_prometheus_drips(tmp_path: Path) -> None:
    drip = DripServer()
    write_plans(tmp_path, [test_plan("alpha", drip.url, "x", timeout_seconds=1.0)])
    serve = Serve(tmp_path)
    try:
        await serve.listening()
        deadline = time.monotonic() + 10
        while drip.requests == 0:  # the warm-up's queries are stuck in the drip
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        rc, seconds = serve.terminate()
        assert rc == 0 and seconds < BOUND + SLACK, (rc, seconds, "".join(serve.lines[-5:]))
        assert serve.events("shutting_down")
    finally:
        serve.kill()
        drip.close()


async def test_sigterm_during_start_up_with_symlink_loops_and_a_fifo(tmp_path: Path) -> None:
    """The start-up scan meets `ln -s . l1; ln -s . l2` (before: 2^40 paths, forever, and
    SIGTERM could not end it) and a profile file that is a FIFO without a writer."""
    doc = test_plan("alpha", f"http://127.0.0.1:{closed_port()}", "x")
    write_plans(tmp_path, [doc])
    os.symlink(".", tmp_path / "l1")
    os.symlink(".", tmp_path / "l2")
    target = next(p for p in sorted((tmp_path / "profile").rglob("*.json")))
    target.unlink()
    os.mkfifo(target)
    serve = Serve(tmp_path)
    try:
        await serve.live()
        await asyncio.sleep(0.5)
        rc, seconds = serve.terminate()
        assert rc == 0 and seconds < BOUND + SLACK, (rc, seconds, "".join(serve.lines[-5:]))
    finally:
        serve.kill()


def _big_plan(directory: Path, points: int) -> str:
    """A plan with an inline decode table of `points` scattered points (appendix C of the
    red-team report): seconds of parsing and model building."""
    from scaler.profile_io import write_profile_json

    write_profile_json(flat_profile(), directory / ".json-profile")
    prefill = json.loads((directory / ".json-profile" / "prefill_raw_data.json").read_text())
    rng = np.random.default_rng(1)
    kv = rng.uniform(0, 1, points).round(4)
    ctx = rng.uniform(100, 8000, points).round(1)
    doc = test_plan("big", f"http://127.0.0.1:{closed_port()}", "x")
    del doc["spec"]["profile"]
    doc["spec"]["profileData"] = {"prefill": prefill, "decode": {
        "x_kv_usage": kv.tolist(), "y_context_length": ctx.tolist(), "z_itl": (5 + 20 * kv + ctx / 1000).round(3).tolist(),
        "z_thpt_per_gpu": (1000 + 5000 * kv).round(1).tolist(), "max_kv_tokens": 900000}}
    return yaml.safe_dump(doc, sort_keys=False)


async def test_sigterm_with_symlink_loops_400_streams_and_a_big_plan_loading(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    write_plans(plans, [test_plan("alpha", f"http://127.0.0.1:{closed_port()}", "x")])
    os.symlink(".", plans / "l1")
    os.symlink(".", plans / "l2")
    big = _big_plan(tmp_path, 8000)  # the inline-profile bound is 8192 points; seconds to build
    serve = Serve(plans)
    try:
        await serve.listening()
        async with grpc.aio.insecure_channel(serve.address) as ch:
            keda = KedaClient(ch, serve.address)
            streams = [keda.stub.StreamIsActive(keda.ref(trigger("alpha", "prefill"))) for _ in range(400)]
            await asyncio.sleep(1.0)
            (plans / ".big.tmp").write_text(big)
            (plans / ".big.tmp").rename(plans / "big.yaml")
            await asyncio.sleep(1.0)  # the scan has picked it up: parsing or building
            rc, seconds = serve.terminate()
            for stream in streams:
                stream.cancel()
        assert rc == 0 and seconds < BOUND + SLACK, (rc, seconds, "".join(serve.lines[-5:]))
        assert not [line for line in serve.lines if "Traceback" in line]
    finally:
        serve.kill()


def test_a_stuck_worker_thread_cannot_hold_the_exit() -> None:
    """The last resort of the bound: a non-daemon thread that never returns (a read on a
    hung filesystem) would keep the interpreter alive for ever; the armed bound logs which
    thread it was, flushes and exits 0."""
    code = (
        "import threading, time\n"
        "from scaler.service.logs import configure_logging\n"
        "configure_logging('info')\n"
        "from scaler.service.exiting import ShutdownBound\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='stuck-read').start()\n"
        "ShutdownBound(0.5).start()\n"
        "print('armed', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "armed\n"
        t0 = time.monotonic()
        rc = proc.wait(10)
        seconds = time.monotonic() - t0
        stderr = proc.stderr.read() if proc.stderr is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0 and seconds < 0.5 + SLACK, (rc, seconds, stderr)
    [forced] = [json.loads(line) for line in stderr.splitlines() if '"shutdown_forced"' in line]
    assert forced["threads"] == ["stuck-read"] and forced["timeoutSeconds"] == 0.5


async def test_streams_end_at_shutdown_instead_of_holding_the_grace(tmp_path: Path) -> None:
    """Open streams never finish on their own, so the gRPC grace period (5 s) was always
    spent in full: 400 streams, SIGTERM to exit 5.3-5.5 s. They now end (OK) as the
    shutdown starts, and KEDA reconnects to a live replica."""
    from scaler.service.server import ScalerServer, ServeConfig

    write_plans(tmp_path, [test_plan("alpha", f"http://127.0.0.1:{closed_port()}", "x")])
    server = ScalerServer(ServeConfig(plans_dir=tmp_path, listen="127.0.0.1:0", metrics_listen=None), run_loops=False)
    port = await server.start()
    address = f"127.0.0.1:{port}"
    async with grpc.aio.insecure_channel(address) as ch:
        keda = KedaClient(ch, address)
        streams = [keda.stub.StreamIsActive(keda.ref(trigger("alpha", "prefill"))) for _ in range(50)]
        specs = keda.stub.StreamMetricSpec(keda.ref(trigger("alpha", "prefill")))
        assert (await specs.read()).metricSpecs[0].metricName == "dynplan-alpha-prefill"
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await server.stop(grace=5.0)
        assert time.monotonic() - t0 < 1.0
        codes = {await s.code() for s in [*streams, specs]}
        assert codes == {grpc.StatusCode.OK}, codes
