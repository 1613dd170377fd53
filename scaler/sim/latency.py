"""Per-request latencies in the order they were measured, for policies that read histograms.

A latency-driven policy (llm-d's SLO-aware KEDA guide, `llmd-slo`) reads quantiles of the
frontend's TTFT and ITL histograms over the last minute. The engine appends every request's
TTFT when its first token is made and its mean ITL when it completes (requests with an
inter-token gap only), in time order, so a quantile over (start, end] is a slice found by
bisection: no bucketing error and no per-sample bookkeeping.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Optional

import numpy as np

TTFT = "ttft"
ITL = "itl"


class LatencyLog:
    """TTFT (at the first token) and mean ITL (at completion) of every request, by time."""

    __slots__ = ("_t", "_v")

    def __init__(self) -> None:
        self._t: dict[str, list[float]] = {TTFT: [], ITL: []}
        self._v: dict[str, list[float]] = {TTFT: [], ITL: []}

    def add(self, metric: str, t: float, value_ms: float) -> None:
        """Record one measurement at t (times must not decrease: the engine's clock)."""
        self._t[metric].append(t)
        self._v[metric].append(value_ms)

    def count(self, metric: str, start: float, end: float) -> int:
        ts = self._t[metric]
        return bisect_right(ts, end) - bisect_right(ts, start)

    def quantile(self, metric: str, start: float, end: float, q: float) -> Optional[float]:
        """The q-quantile (0..1, linear interpolation) of the values measured in (start, end];
        None when there are none (a histogram with no observation: Prometheus gives NaN)."""
        ts = self._t[metric]
        lo, hi = bisect_right(ts, start), bisect_right(ts, end)
        if hi <= lo:
            return None
        return float(np.quantile(np.asarray(self._v[metric][lo:hi]), q))
