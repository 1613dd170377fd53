"""Cost of the load path: one robust fit per window size, and one whole load tick.

Run: .venv/bin/python -m bench.bench_load
Not a test: timings depend on the machine; this prints them for a human to read.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

from scaler.core.observations import Observation, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import decide, new_state
from scaler.core.regression import SlidingRegression


def _time_us(fn: Callable[[], object], n: int) -> float:
    """Best of 5 runs of n calls, in microseconds per call."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def _plan(mode: str, window: int) -> Plan:
    pools = ("prefill", "decode") if mode == "disagg" else ("worker",)
    return Plan.model_validate(
        {
            "apiVersion": "dynplan/v1alpha1",
            "kind": "Plan",
            "metadata": {"name": "bench"},
            "spec": {
                "mode": mode,
                "sla": {"ttftMs": 500, "itlMs": 50},
                "workload": {"isl": 3000, "osl": 150},
                "pools": {p: {"scaleTargetRef": {"name": p}, "maxReplicas": 64} for p in pools},
                "scaling": {"throughput": {"enabled": False}, "load": {"enabled": True, "window": window}},
            },
        }
    )


def main() -> None:
    rng = random.Random(0)
    print("robust fit (Theil-Sen + MAD + least squares), us per fit:")
    for window in (50, 200, 1000, 10000):
        reg = SlidingRegression(window, 5)
        for _ in range(window):
            x = rng.uniform(1000, 6000)
            reg.add(x, 0.1 * x + 100 + rng.gauss(0, 5))
        n = 200 if window <= 1000 else 20
        print(f"  window {window:>6}: {_time_us(reg.fit, n):10.1f}")

    print("decide() load tick, us per tick (window 50, all workers reporting):")
    for mode, workers in (("disagg", 8), ("disagg", 64), ("agg", 32)):
        plan = _plan(mode, 50)
        state = new_state(plan)
        pools = plan.pool_names

        def tick() -> None:
            ws = []
            for pool in pools:
                for i in range(workers // len(pools)):
                    a = rng.uniform(100, 900)
                    ws.append(
                        WorkerLoad(
                            f"{pool}-{i}",
                            pool,
                            active_prefill_tokens=a,
                            active_decode_blocks=a / 10,
                            last_ttft_ms=0.1 * (a + 3000) + 100,
                            last_isl=3000,
                            last_itl_ms=0.5 * a / 10 + 10,
                        )
                    )
            ready = {p: workers // len(pools) for p in pools}
            decide(plan, None, Observation(workers=tuple(ws), ready_replicas=ready), state)

        print(f"  {mode:>6}, {workers:>3} workers: {_time_us(tick, 100):10.1f}")


if __name__ == "__main__":
    main()
