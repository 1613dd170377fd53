"""`dynplan serve`'s two processes (scaler.service.front, scaler.service.decider), for real:
the decider killed is started again while the serving process keeps answering the
decisions it had (readiness NOT_SERVING meanwhile; a decider that cannot start says why and
is tried again later), the RPCs the serving process answers
are counted on the decider's /metrics, and a serving process killed takes its decider with it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keda_client import KedaClient
from procs import closed_port
from scaler.devtools.backfill import OpenMetricsWriter
from service_harness import add_history, busy, history_end, test_plan, trigger, write_plans

pytestmark = pytest.mark.slow  # about 15 s: two decider start-ups


class _Log:
    """The process's JSON log lines, read as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._proc = proc
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.text.append(line)
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    async def wait(self, event: str, count: int = 1, within: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            found = [e for e in self.events if e.get("event") == event]
            if len(found) >= count:
                return found[count - 1]
            assert time.monotonic() < deadline, f"no {event!r} event in {within} s:\n" + "".join(self.text[-40:])
            await asyncio.sleep(0.05)


async def _readiness(channel: grpc.aio.Channel) -> int:
    resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="readiness"), timeout=3)
    return int(resp.status)


async def _until(predicate: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie child of the killed process counts as gone once reaped by init; check its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


async def test_the_decider_killed_is_restarted_and_the_answers_it_sent_are_served(tmp_path: Path, prom_factory: Any) -> None:
    w = OpenMetricsWriter()
    add_history(w, "ns-alpha", [busy(6.0 + k % 5) for k in range(60)], history_end())
    prom = prom_factory(history=w)
    plans = tmp_path / "plans"
    write_plans(plans, [test_plan("alpha", prom.url, "ns-alpha")])
    port, mport = closed_port(), closed_port()
    # settle 150 s: the window read lies inside the backfilled history; staleness x100 so the
    # kept answer stays servable however long the restart takes on a loaded machine
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaler.cli", "serve", "--plans", str(plans), "--listen", f"127.0.0.1:{port}",
         "--metrics-listen", f"127.0.0.1:{mport}", "--settle-seconds", "150", "--staleness-factor", "100",
         "--shutdown-timeout", "3", "--log-format", "json"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = _Log(proc)
    try:
        listening = await log.wait("listening")
        assert listening["port"] == port and listening["metricsPort"] == mport and listening["plans"] == 1
        decider = listening["deciderPid"]
        assert decider != proc.pid
        # the kernel runs the RPCs first when both want the CPU
        assert os.getpriority(os.PRIO_PROCESS, decider) - os.getpriority(os.PRIO_PROCESS, proc.pid) == 10
        address = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(address) as channel:
            keda = KedaClient(channel, address)

            async def answer() -> Any:
                try:
                    [r] = await keda.poll(trigger("alpha", "decode"))
                    return r
                except grpc.aio.AioRpcError:
                    return None

            before = await _until(answer, 30, "no decision served")
            assert await _readiness(channel) == health_pb2.HealthCheckResponse.SERVING
            for _ in range(20):
                await keda.poll(trigger("alpha", "prefill"))
            # the serving process's counts reach the decider's /metrics within a second or two
            pattern = re.compile(r'^dynplan_grpc_requests_total\{code="OK",method="GetMetrics"\} (\S+)$', re.M)

            async def counted() -> bool:
                m = pattern.search(await asyncio.to_thread(_scrape, mport))
                return m is not None and float(m.group(1)) >= 21

            await _until(counted, 10, "GetMetrics calls not counted on /metrics")

            os.kill(decider, signal.SIGKILL)
            exited = await log.wait("decider_exited", within=10)
            assert exited["exitCode"] == -signal.SIGKILL
            # something else takes the metrics port meanwhile: the next decider cannot start,
            # says why, and the one after it (2 s later) starts once the port is free
            squatter = socket.socket()
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", mport))
            squatter.listen()
            try:
                # meanwhile: not ready, and the decision received before is still the answer
                assert await _readiness(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
                kept = await answer()
                assert kept is not None and (kept.raw_int, kept.active) == (before.raw_int, before.active)
                failed = await log.wait("decider_start_failed", within=20)
                assert failed["errors"] == [f"--metrics-listen: cannot listen on 127.0.0.1:{mport} (Address already in use)"]
                assert (await log.wait("decider_exited", count=2, within=10))["restartInSeconds"] == 2.0
            finally:
                squatter.close()
            started = await log.wait("decider_started", count=2, within=10)
            assert started["restarts"] == 2 and started["deciderPid"] != decider

            async def ready_again() -> bool:
                return await _readiness(channel) == health_pb2.HealthCheckResponse.SERVING

            await _until(ready_again, 40, "not ready again after the decider's restart")
            again = await answer()
            assert again is not None and again.raw_int == before.raw_int  # same history, same decision
            assert "dynplan_plans_loaded 1.0" in await asyncio.to_thread(_scrape, mport)  # the new decider's /metrics

            async def restarts_counted() -> bool:
                return "dynplan_decider_restarts 2.0" in await asyncio.to_thread(_scrape, mport)

            await _until(restarts_counted, 5, "the restarts are not on /metrics")
        # the serving process killed: its decider sees the pipe close and exits
        new_decider = started["deciderPid"]
        proc.kill()
        proc.wait(5)
        await _until(lambda: asyncio.sleep(0, _gone(new_decider)), 10, "the decider outlived its serving process")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
