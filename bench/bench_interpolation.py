"""Microseconds per lookup of the interpolators, on the example profile.

Run: .venv/bin/python -m bench.bench_interpolation
Not a test: timings depend on the machine; this prints them for a human to read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

from scaler.core.interpolation import perf_model
from scaler.core.profile import profile_from_raw

PROFILE_DIR = ROOT / "examples" / "profiles" / "h200-llama3.1-8b-fp8-tp1"


def _time_us(fn: Callable[[int], object], n: int) -> float:
    """Best of 5 runs of n calls, in microseconds per call (best run = least disturbed)."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main() -> None:
    raw_prefill = json.loads((PROFILE_DIR / "prefill_raw_data.json").read_text())
    raw_decode = json.loads((PROFILE_DIR / "decode_raw_data.json").read_text())
    profile = profile_from_raw(raw_prefill, raw_decode, str(PROFILE_DIR))
    t0 = time.perf_counter()
    model = perf_model(profile)
    build_ms = (time.perf_counter() - t0) * 1e3
    p, d = model.prefill, model.decode
    n = 20000
    cases: dict[str, Callable[[int], object]] = {
        "prefill.ttft_ms": lambda i: p.ttft_ms(100.0 + i % 15000),
        "prefill.thpt_per_gpu": lambda i: p.thpt_per_gpu(100.0 + i % 15000),
        "decode.itl_ms": lambda i: d.itl_ms((i % 100) / 100.0, 350.0 + i % 13000),
        "decode.thpt_per_gpu": lambda i: d.thpt_per_gpu((i % 100) / 100.0, 350.0 + i % 13000),
        "decode.itl_at_concurrency": lambda i: d.itl_at_concurrency(1.0 + i % 200, 350.0 + i % 13000),
        "decode.best_throughput": lambda i: d.best_throughput(5.0 + i % 20, 350.0 + i % 13000),
        "perf_model (cached)": lambda i: perf_model(profile),
    }
    print(f"build (first perf_model call): {build_ms:.1f} ms")
    for name, fn in cases.items():
        print(f"{name:28s} {_time_us(fn, n):7.2f} us/lookup")


if __name__ == "__main__":
    main()
