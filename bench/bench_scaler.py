"""`dynplan serve` under load: GetMetrics latency, decision time, memory, with 100 plans.

Run: .venv/bin/python -m bench.bench_scaler [--plans 100] [--callers 200] [--seconds 10]

The scaler runs in a child process (as in production), loaded with N plans on the example
H200 profile, each warmed up by replaying 32 windows through the real decision loop. Its
observations come from an in-memory reader (this measures the scaler, not Prometheus).
The parent then drives GetMetrics over real loopback gRPC from C concurrent callers spread
over every plan and pool, the way many ScaledObjects would.

Targets (2-core machine): GetMetrics p99 < 5 ms, decision < 20 ms per plan, RSS < 200 MB.
Not a test: numbers depend on the machine and its load; they are printed for a human.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from bench.grpc_client import PoolRef, ScalerClient, pct, rss_mb

ROOT = Path(__file__).resolve().parent.parent

PROFILE = ROOT / "examples" / "profiles" / "h200-llama3.1-8b-fp8-tp1"


def plan_doc(i: int) -> dict:
    from scaler.core.plan import POOL_NAMES_BY_MODE

    return {
        "apiVersion": "dynplan/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": f"plan-{i:03d}", "namespace": f"ns-{i % 10}"},
        "spec": {
            "mode": "disagg",
            "sla": {"ttftMs": 200, "itlMs": 20},
            "workload": {"isl": 3000, "osl": 150},
            "profile": str(PROFILE),
            "pools": {
                p: {"scaleTargetRef": {"name": f"w-{i}-{p}"}, "minReplicas": 1, "maxReplicas": 32} for p in POOL_NAMES_BY_MODE["disagg"]
            },
            "scaling": {"throughput": {"enabled": True, "intervalSeconds": 60, "predictor": {"type": "kalman"}}},
            "metrics": {"selector": {"dynamo_namespace": f"dyn-{i}"}, "prometheus": {"url": "http://127.0.0.1:1"}},
        },
    }


class SyntheticReader:
    """Deterministic traffic per plan (a sine-ish wave), no I/O."""

    def _window(self, plan, k: int):
        from scaler.core.observations import TrafficWindow

        seed = sum(map(ord, plan.name))
        rate = 5.0 + (seed % 17) + 4.0 * ((k * 7 + seed) % 11)
        return TrafficWindow(window_seconds=60.0, requests=rate * 60.0, isl=2500.0 + (k % 5) * 100, osl=150.0 + (k % 3) * 20,
                             ttft_ms=120.0, itl_ms=12.0, request_duration_s=3.0)

    async def traffic(self, plan, at):
        return self._window(plan, int(at // 60))

    async def workers(self, plan, at):
        return ()

    async def history(self, plan, end, intervals):
        return [self._window(plan, int(end // 60) - intervals + 1 + k) for k in range(intervals)]

    async def worker_history(self, plan, end, ticks):
        return []

    async def ready(self, plan, at, workers):
        return {}


async def child(plans_dir: Path) -> None:
    """The scaler process: load, warm up, report, then serve until stdin closes."""
    from scaler.service.server import ScalerServer, ServeConfig

    rss0 = rss_mb()
    server = ScalerServer(
        ServeConfig(plans_dir=plans_dir, listen="127.0.0.1:0", metrics_listen=None, staleness_factor=1e6),
        reader_factory=lambda loaded: SyntheticReader(),
        run_loops=False,
    )
    t0 = time.perf_counter()
    port = await server.start()
    load_s = time.perf_counter() - t0
    end = (time.time() // 60) * 60
    warm, ticks, cores = [], [], []
    for loop in server.registry.index.values():
        t = time.perf_counter()
        await loop.warm_up(end)
        warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        await loop.tick_throughput(end + 60)
        ticks.append(time.perf_counter() - t)
    # core-only time per decision, from the decision loop's own histogram
    for metric in server.metrics.registry.collect():
        if metric.name == "dynplan_decision_compute_seconds":
            for s in metric.samples:
                if s.name.endswith("_sum"):
                    cores.append(s.value)
    n_core = len(server.registry.index)  # one live tick per plan is timed (the replay is not)
    print(json.dumps({
        "port": port,
        "plans": len(server.registry.index),
        "load_s": load_s,
        "warmup_ms": [x * 1000 for x in warm],
        "tick_ms": [x * 1000 for x in ticks],
        "core_ms_mean": sum(cores) / n_core * 1000,
        "rss_before_mb": rss0,
        "rss_mb": rss_mb(),
    }), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(json.dumps({"rss_after_load_mb": rss_mb()}), flush=True)
    await server.stop(grace=0.5)


async def drive(port: int, plans: int, callers: int, seconds: float, channels: int, period: float = 0.0) -> list[float]:
    from scaler.core.plan import POOL_NAMES_BY_MODE

    refs = [PoolRef(f"ns-{i % 10}", f"plan-{i:03d}", pool) for i in range(plans) for pool in POOL_NAMES_BY_MODE["disagg"]]
    client = ScalerClient(f"127.0.0.1:{port}", refs, channels)
    await client.connect(timeout=5)
    try:
        run = await client.closed_loop(callers, seconds, period)
    finally:
        await client.close()
    assert not run.errors, f"GetMetrics failed: {dict(run.errors)}"
    return run.latencies


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plans", type=int, default=100)
    ap.add_argument("--callers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--period", type=float, default=1.0, help="seconds between one paced caller's calls")
    ap.add_argument("--channels", type=int, default=4, help="client connections (KEDA pools one per scaler address)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        asyncio.run(child(Path(args.child)))
        return 0
    import yaml

    with tempfile.TemporaryDirectory(prefix="dynplan-bench-") as tmp:
        d = Path(tmp)
        for i in range(args.plans):
            (d / f"plan-{i:03d}.yaml").write_text(yaml.safe_dump(plan_doc(i)))
        proc = subprocess.Popen([sys.executable, "-m", "bench.bench_scaler", "--child", str(d)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            info = json.loads(proc.stdout.readline())
            results = {}
            runs = (
                ("1 caller, back to back", 1, 0.0, 3.0),
                (f"{args.callers} callers, back to back (saturation)", args.callers, 0.0, args.seconds),
                (f"{args.callers} callers, each every {args.period:g} s", args.callers, args.period, args.seconds),
            )
            for label, callers, period, secs in runs:
                lat = asyncio.run(drive(info["port"], args.plans, callers, secs, args.channels, period))
                results[label] = (lat, secs)
            rss_end = rss_mb(str(proc.pid))
            proc.stdin.close()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"plans: {info['plans']} (loaded in {info['load_s']:.2f} s)")
    print(f"decision (one live tick incl. reader, per plan): mean {statistics.mean(info['tick_ms']):.2f} ms, "
          f"p99 {pct(info['tick_ms'], 0.99):.2f} ms, max {max(info['tick_ms']):.2f} ms (target < 20 ms)")
    print(f"decision core only (planner.decide): mean {info['core_ms_mean']:.2f} ms")
    print(f"warm-up (32 windows replayed, per plan): mean {statistics.mean(info['warmup_ms']):.1f} ms")
    for label, (lat, secs) in results.items():
        ms = [x * 1000 for x in lat]
        print(f"GetMetrics, {label}, {args.channels} connection(s): {len(ms)} calls, "
              f"{len(ms) / secs:.0f}/s, p50 {pct(ms, 0.5):.2f} ms, p99 {pct(ms, 0.99):.2f} ms")
    print(f"scaler RSS: {info['rss_mb']:.0f} MB with {info['plans']} plans warmed up "
          f"({info['rss_before_mb']:.0f} MB after imports), {rss_end:.0f} MB after the load run (target < 200 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
