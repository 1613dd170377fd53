"""The benchmarks' KEDA-like client: GetMetrics over real gRPC channels, latency figures.

`ScalerClient` holds a few channels to one external scaler (KEDA pools one connection per
scaler address) and a GetMetricsRequest per (namespace, plan, pool), called round-robin so
every ScaledObject is asked equally. Two ways to load it:
- `closed_loop`: C callers, back to back (saturation) or each one call per `period`;
- `open_loop`: a fixed rate, each call sent on schedule whatever the earlier ones are doing
  (no coordinated omission: a slow answer does not slow the offered load).
Both return per-call latencies in seconds and count the calls that failed, by status code.

Also the process figures the benchmarks print: `rss_mb`, `cpu_seconds` (a process and its
descendants, from /proc) and `pct`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import grpc

from scaler.naming import metric_name
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def latency_summary(latencies: Sequence[float], seconds: float) -> dict[str, float]:
    """calls, calls/s, p50/p99/max in milliseconds."""
    ms = [x * 1000 for x in latencies]
    return {
        "calls": len(ms),
        "rps": len(ms) / seconds if seconds > 0 else float("nan"),
        "p50_ms": pct(ms, 0.5),
        "p99_ms": pct(ms, 0.99),
        "max_ms": max(ms) if ms else float("nan"),
    }


def rss_mb(pid: "int | str" = "self") -> float:
    """VmRSS of one process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it (from /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:  # exited meanwhile
            continue
    return out


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its descendants together, MB (shared pages counted in each)."""
    total = 0.0
    for p in descendants(pid):
        try:
            total += rss_mb(p)
        except OSError:
            pass
    return total


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and its descendants, MB: each shared page (a forked
    child's copy-on-write pages, the libraries) split between the processes sharing it, so
    the sum is what the tree costs the machine, unlike summed RSS."""
    total = 0.0
    for p in descendants(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024.0
                    break
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (and of children they waited for)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in descendants(pid):
        try:
            # fields after the command (which may hold spaces) start at state = field 3
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        total += (utime + stime + cutime + cstime) / tick
    return total


@dataclass(frozen=True)
class PoolRef:
    namespace: str
    plan: str
    pool: str


@dataclass
class Run:
    """One load run's answers: latencies (s) of the calls that succeeded, and the failures
    by status code."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)

    def extend(self, other: "Run") -> None:
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)


class ScalerClient:
    """Channels to one external scaler and a GetMetricsRequest per pool (see the module doc)."""

    def __init__(self, address: str, refs: Iterable[PoolRef], channels: int = 4, seed: int = 0) -> None:
        self.address = address
        self.channel_count = channels
        requests = []
        for ref in refs:
            so = pb.ScaledObjectRef(
                name=f"{ref.plan}-{ref.pool}", namespace=ref.namespace,
                scalerMetadata={"scalerAddress": address, "plan": ref.plan, "pool": ref.pool},
            )
            requests.append(pb.GetMetricsRequest(scaledObjectRef=so, metricName=metric_name(ref.plan, ref.pool)))
        random.Random(seed).shuffle(requests)  # round-robin over a shuffled order: no plan-ordered bursts
        self.requests = requests
        self._next = itertools.cycle(range(len(requests)))
        self._channels: list[grpc.aio.Channel] = []
        self.stubs: list[pb_grpc.ExternalScalerStub] = []

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the channels and wait until each is connected (asyncio.TimeoutError if not)."""
        if not self._channels:
            self._channels = [grpc.aio.insecure_channel(self.address) for _ in range(self.channel_count)]
            self.stubs = [pb_grpc.ExternalScalerStub(c) for c in self._channels]
        for c in self._channels:
            await asyncio.wait_for(c.channel_ready(), timeout)

    async def close(self) -> None:
        for c in self._channels:
            await c.close()
        self._channels, self.stubs = [], []

    async def call(self, k: int, run: Run, timeout: float = 5.0) -> None:
        """One GetMetrics (the next request round-robin) on channel k, recorded in `run`."""
        req = self.requests[next(self._next)]
        t = time.perf_counter()
        try:
            await self.stubs[k % len(self.stubs)].GetMetrics(req, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            run.errors[exc.code().name] += 1
            return
        run.latencies.append(time.perf_counter() - t)

    async def status(self, req: pb.GetMetricsRequest, timeout: float = 5.0) -> str:
        """The status code name of one GetMetrics ("OK" when answered)."""
        try:
            await self.stubs[0].GetMetrics(req, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        return "OK"

    async def closed_loop(self, callers: int, seconds: float, period: float = 0.0) -> Run:
        """`callers` callers for `seconds`: back to back (period 0) or each starting a call one
        `period` after its previous one started, phases spread over one period."""
        run = Run()
        stop_at = time.perf_counter() + seconds

        async def caller(k: int) -> None:
            if period:
                await asyncio.sleep(period * k / callers)
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                await self.call(k, run)
                if period:
                    await asyncio.sleep(max(0.0, t + period - time.perf_counter()))

        await asyncio.gather(*(caller(k) for k in range(callers)))
        return run

    async def open_loop(self, rate: float, seconds: float, run: Optional[Run] = None) -> Run:
        """`rate` calls per second for `seconds`, each sent at its scheduled time (late sends go
        out at once, together); waits for the calls in flight at the end."""
        run = Run() if run is None else run
        start = time.perf_counter()
        n = int(rate * seconds)
        pending: set[asyncio.Task] = set()
        for k in range(n):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(self.call(k, run))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        return run
