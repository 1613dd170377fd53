"""The throughput path's view of a run: what the recording rules would report over a window.

The engine reports each first token and each completion as it happens; at a throughput tick
it reads `window(t, seconds, backlog)` and calls `reset()`. Arrivals are looked up by time, so
they need no counting; neither does the window's peak rate (`peak_rate`), which is computed
from them the way `max_over_time(rate(requests[1m])[window:30s])` reads Prometheus' history.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Optional, Sequence

import numpy as np

from scaler.core.observations import PEAK_STEP_SECONDS, PEAK_WINDOW_SECONDS, TrafficWindow


class WindowStats:
    """What the recording rules would report over one throughput window: per-request sums
    since the last `reset` (completions and first tokens), arrivals looked up by time."""

    __slots__ = ("_arrivals", "_isl_cum", "first_tokens", "ttft_ms_sum", "completed_requests", "osl_sum",
                 "duration_sum", "decode_seconds", "decode_tokens", "_ttft_bound_ms", "ttft_over", "_bin")

    def __init__(
        self, arrivals: Sequence[float], isl: np.ndarray, ttft_bound_ms: Optional[float] = None,
        dispersion_bin_seconds: float = PEAK_STEP_SECONDS,
    ) -> None:
        self._arrivals = arrivals
        # the index of dispersion's bin (sources.dispersion_bin: the plan's scrape interval)
        self._bin = dispersion_bin_seconds
        # the TTFT histogram's bucket bound at the SLA (None: no such bucket, no ttft_miss)
        self._ttft_bound_ms = ttft_bound_ms
        self._isl_cum = np.concatenate([[0.0], np.cumsum(isl, dtype=np.float64)])
        self.reset()

    def reset(self) -> None:
        self.first_tokens = 0
        self.ttft_ms_sum = 0.0
        self.ttft_over = 0
        self.completed_requests = 0
        self.osl_sum = 0.0
        self.duration_sum = 0.0
        self.decode_seconds = 0.0
        self.decode_tokens = 0

    def first_token(self, ttft_ms: float) -> None:
        self.first_tokens += 1
        self.ttft_ms_sum += ttft_ms
        if self._ttft_bound_ms is not None and ttft_ms > self._ttft_bound_ms:
            self.ttft_over += 1

    def completed(self, osl: int, duration: float, decode_seconds: float) -> None:
        """A request finished after `duration` s; `decode_seconds` from first to last token."""
        self.completed_requests += 1
        self.osl_sum += osl
        self.duration_sum += duration
        if osl > 1:
            self.decode_seconds += decode_seconds
            self.decode_tokens += osl - 1

    def window(self, t: float, seconds: float, backlog: Optional[float] = None) -> TrafficWindow:
        """The window ending at t. Arrivals and their mean ISL count at arrival (over the last
        `seconds`), and so does the peak rate (`peak_rate`); OSL, duration and ITL at
        completion; TTFT and the fraction of TTFTs above the SLA bound (`ttft_miss`, as the
        histogram's bucket at the bound gives it) at the first token (since the last reset). ITL is token-weighted (a
        histogram of every token gap), as the frontend's inter-token-latency histogram is.
        `backlog`: requests waiting for prefill at t (the engine counts them)."""
        lo = bisect_left(self._arrivals, t - seconds)
        hi = bisect_left(self._arrivals, t)
        count = hi - lo
        done = self.completed_requests
        return TrafficWindow(
            window_seconds=seconds,
            requests=float(count),
            isl=(self._isl_cum[hi] - self._isl_cum[lo]) / count if count else None,
            osl=self.osl_sum / done if done else None,
            ttft_ms=self.ttft_ms_sum / self.first_tokens if self.first_tokens else None,
            itl_ms=1000.0 * self.decode_seconds / self.decode_tokens if self.decode_tokens else None,
            request_duration_s=self.duration_sum / done if done else None,
            peak_rate=peak_rate(self._arrivals, t, seconds),
            arrival_dispersion=arrival_dispersion(self._arrivals, t, seconds, self._bin),
            backlog=backlog,
            ttft_miss=self.ttft_over / self.first_tokens if self.first_tokens and self._ttft_bound_ms is not None else None,
        )


def peak_rate(arrivals: Sequence[float], t: float, seconds: float) -> float:
    """The highest arrival rate (requests/s) over PEAK_WINDOW_SECONDS sub-windows of the window
    [t - seconds, t), ending at t, t - PEAK_STEP_SECONDS, ... while they fit inside it; a window
    no longer than one sub-window is its own (its mean rate). Sub-windows are half-open
    [e - 60, e), as the window's arrivals are."""
    if seconds <= PEAK_WINDOW_SECONDS + 1e-9:
        return (bisect_left(arrivals, t) - bisect_left(arrivals, t - seconds)) / seconds
    start = t - seconds
    best = 0
    end = t
    while end - PEAK_WINDOW_SECONDS >= start - 1e-9:
        best = max(best, bisect_left(arrivals, end) - bisect_left(arrivals, end - PEAK_WINDOW_SECONDS))
        end -= PEAK_STEP_SECONDS
    return best / PEAK_WINDOW_SECONDS


def arrival_dispersion(
    arrivals: Sequence[float], t: float, seconds: float, bin_seconds: float = PEAK_STEP_SECONDS
) -> Optional[float]:
    """Index of dispersion of the arrival counts in `bin_seconds` bins of [t - seconds, t),
    by Allan's estimator: half the mean squared difference of neighbouring bins over the mean
    count, so that a trend over minutes (peak_rate's business) does not count as clumping.
    1 for Poisson arrivals. None with fewer than two bins or no arrivals."""
    steps = int(seconds // bin_seconds + 1e-9)
    if steps < 2:
        return None
    edges = [t - (steps - k) * bin_seconds for k in range(steps + 1)]
    counts = np.diff(np.asarray([bisect_left(arrivals, e) for e in edges], dtype=np.float64))
    mean = float(counts.mean())
    if mean <= 0:
        return None
    return float(np.mean(np.diff(counts) ** 2)) / (2.0 * mean)


def first_window(
    arrivals: Sequence[float], isl: np.ndarray, osl: np.ndarray, seconds: float, bin_seconds: float = PEAK_STEP_SECONDS
) -> TrafficWindow:
    """The window [0, seconds) as a deployment already serving that traffic would have reported
    it, from its arrivals alone: their count, mean ISL and mean OSL (the OSL their completions
    would show), the peak rate, no backlog, and no latency means (none measured yet)."""
    hi = bisect_left(arrivals, seconds)
    return TrafficWindow(
        window_seconds=seconds,
        requests=float(hi),
        isl=float(np.mean(isl[:hi])) if hi else None,
        osl=float(np.mean(osl[:hi])) if hi else None,
        peak_rate=peak_rate(arrivals, seconds, seconds),
        arrival_dispersion=arrival_dispersion(arrivals, seconds, seconds, bin_seconds),
        backlog=0.0,
    )
