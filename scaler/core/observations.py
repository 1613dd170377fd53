"""What the planner observes: values built by the edges (Prometheus, simulator), read by the core."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional


def finite_or_none(value: Optional[float]) -> Optional[float]:
    """NaN/Inf (Prometheus' 0/0 on an idle window) become None: 'no value', never a number."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# Sub-windows of TrafficWindow.peak_rate: one minute, sliding by half a minute (what
# max_over_time(rate(requests[1m])[window:30s]) gives over Prometheus' history); and the
# bins of TrafficWindow.arrival_dispersion: half a minute (increase(requests[30s]) every 30 s).
PEAK_WINDOW_SECONDS = 60.0
PEAK_STEP_SECONDS = 30.0


@dataclass(frozen=True)
class TrafficWindow:
    """Aggregates over one throughput interval, as the recording rules compute them.

    `requests` is the number of requests that arrived in the window: 0.0 is a real, idle
    observation; a failed or empty query never becomes a TrafficWindow at all. The means
    are None when the window had no completed request to average over.
    """

    window_seconds: float
    requests: float
    isl: Optional[float] = None
    osl: Optional[float] = None
    ttft_ms: Optional[float] = None
    itl_ms: Optional[float] = None
    request_duration_s: Optional[float] = None
    # the highest arrival rate (requests/s) over PEAK_WINDOW_SECONDS sub-windows inside the
    # window: how bursty the window was below the interval's resolution
    peak_rate: Optional[float] = None
    # index of dispersion of the arrival counts in PEAK_STEP_SECONDS bins inside the window, by
    # Allan's estimator (half the mean squared difference of neighbouring bins over the mean
    # count, so a trend over minutes does not count): 1 for Poisson arrivals, more for
    # clumped ones; it estimates the arrivals' squared coefficient of variation ca^2
    arrival_dispersion: Optional[float] = None
    # requests waiting for prefill when the window closed (queued, not yet started)
    backlog: Optional[float] = None
    # fraction of the window's first tokens whose TTFT was above the SLA (the TTFT
    # histogram's bucket at spec.rules.ttftBucketMs, default spec.sla.ttftMs: 1 - bucket /
    # count): the measured outcome the prefill tail is calibrated on
    ttft_miss: Optional[float] = None

    def __post_init__(self) -> None:
        if not (self.window_seconds > 0):
            raise ValueError("window_seconds must be positive")
        if not math.isfinite(self.requests) or self.requests < 0:
            raise ValueError(f"requests must be a finite number >= 0, got {self.requests}")
        for name in ("isl", "osl", "ttft_ms", "itl_ms", "request_duration_s", "peak_rate", "arrival_dispersion", "backlog",
                     "ttft_miss"):
            object.__setattr__(self, name, finite_or_none(getattr(self, name)))

    @property
    def rate(self) -> float:
        """Arrivals per second over the window."""
        return self.requests / self.window_seconds

    @property
    def idle(self) -> bool:
        return self.requests == 0


# Physical limits of one window's values. A value outside them is not traffic but a broken
# exporter, a counter glitch or a hostile series (a request count of 1e308 once stopped a
# plan for good); the edges skip such a window (`window_problem`) and the core, called
# directly, caps it (`within_limits`) so that `decide` never overflows. Each is far above
# any deployment one plan scales, and far below where float arithmetic on it overflows.
MAX_RATE = 1e6              # requests/s into one plan (the largest public services: ~1e5)
MAX_TOKENS = 1e8            # mean ISL or OSL (context windows today: ~1e6 tokens)
MAX_LATENCY_MS = 3.6e6      # mean TTFT or ITL: one hour
MAX_DURATION_S = 86400.0    # mean request duration: one day
MAX_DISPERSION = 1e6        # index of dispersion of arrival counts
# name, lower and upper bound (inclusive) of each optional mean
_LIMITS: tuple[tuple[str, float, float], ...] = (
    ("isl", 0.0, MAX_TOKENS),
    ("osl", 0.0, MAX_TOKENS),
    ("ttft_ms", 0.0, MAX_LATENCY_MS),
    ("itl_ms", 0.0, MAX_LATENCY_MS),
    ("request_duration_s", 0.0, MAX_DURATION_S),
    ("peak_rate", 0.0, MAX_RATE),
    ("arrival_dispersion", 0.0, MAX_DISPERSION),
    ("ttft_miss", 0.0, 1.0),
)


def window_problem(window: TrafficWindow) -> Optional[str]:
    """Why `window` is not usable traffic (a reason code for metrics and logs), or None.

    Codes: `absurd_requests` (rate above MAX_RATE), `absurd_backlog` (more waiting than
    MAX_RATE could bring in one window), `negative_<field>` and `absurd_<field>` for a mean
    below 0 or above its limit. Non-finite means are already None ("no value")."""
    if window.rate > MAX_RATE:
        return "absurd_requests"
    if window.backlog is not None and not 0 <= window.backlog <= MAX_RATE * window.window_seconds:
        return "negative_backlog" if window.backlog < 0 else "absurd_backlog"
    for name, lo, hi in _LIMITS:
        v = getattr(window, name)
        if v is not None and v < lo:
            return f"negative_{name}"
        if v is not None and v > hi:
            return f"absurd_{name}"
    return None


def within_limits(window: TrafficWindow) -> TrafficWindow:
    """`window` capped into the physical limits: the rate at MAX_RATE, a mean outside its
    range dropped (None, no value). What the core decides on, so that no input overflows."""
    if window_problem(window) is None:
        return window
    changes: dict[str, Any] = {
        name: None for name, lo, hi in _LIMITS if getattr(window, name) is not None and not lo <= getattr(window, name) <= hi
    }
    cap = MAX_RATE * window.window_seconds
    if window.backlog is not None and not 0 <= window.backlog <= cap:
        changes["backlog"] = None
    changes["requests"] = min(window.requests, cap)
    return replace(window, **changes)


@dataclass(frozen=True)
class WorkerLoad:
    """One worker's live load, sampled over the load interval (load-based scaling)."""

    worker_id: str
    pool: str
    active_prefill_tokens: Optional[float] = None
    active_decode_blocks: Optional[float] = None
    last_ttft_ms: Optional[float] = None
    last_isl: Optional[float] = None
    last_itl_ms: Optional[float] = None

    def __post_init__(self) -> None:
        for name in (
            "active_prefill_tokens",
            "active_decode_blocks",
            "last_ttft_ms",
            "last_isl",
            "last_itl_ms",
        ):
            object.__setattr__(self, name, finite_or_none(getattr(self, name)))


@dataclass(frozen=True)
class Observation:
    """Everything one planner tick sees.

    `traffic` drives a throughput tick, `workers` a load tick; either may be absent.
    `ready_replicas` counts workers per pool that are up (reporting); it feeds Little's law
    for the decode correction factor and the load path's "previous scale-up not ready" guard.
    `timestamp` is the caller's clock (seconds), carried into the Decision for logs only.
    """

    timestamp: float = 0.0
    traffic: Optional[TrafficWindow] = None
    workers: tuple[WorkerLoad, ...] = ()
    ready_replicas: Mapping[str, int] = field(default_factory=dict)
