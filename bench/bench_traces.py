"""Cost of reading traces and writing synthetic history (the demo and simulator start with these).

Run: .venv/bin/python -m bench.bench_traces
Not a test: timings depend on the machine; this prints them for a human to read.
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from scaler.devtools.backfill import frontend_history, requests_from_trace
from scaler.traces import read_trace

TRACE = ROOT / "examples" / "traces" / "azure-llm-2023-code.csv"


def best_of(fn, n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    reqs = read_trace(TRACE)
    print(f"read_trace {TRACE.name} ({len(reqs)} requests): {best_of(lambda: read_trace(TRACE)) * 1000:.1f} ms")
    done = requests_from_trace(reqs, start=1_700_000_000.0)
    end = 1_700_000_000.0 + reqs[-1].t + 60

    def history() -> None:
        frontend_history(done, start=1_700_000_000.0, end=end, step=15.0, labels={"model": "m"}).text()

    text = frontend_history(done, start=1_700_000_000.0, end=end, step=15.0, labels={"model": "m"}).text()
    print(f"frontend_history of that trace, 15 s scrapes ({text.count(chr(10))} lines): {best_of(history, 3) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
