"""The simulator's workload: `Arrivals` (request arrival times and token counts) built from
trace requests, and scaled up by replication.

Two ways to make a trace heavier (say which one a result used):
- `--rate-scale X` (scaler.traces): divide every arrival time by X. X times the rate, the
  same requests, a trace X times shorter: bursts get X times sharper and shorter.
- `--replicate K` (here): K copies of every request, each copy after the first shifted by
  a seeded uniform jitter in [0, jitter). K times the rate over the same span, so a one-hour
  trace still gives the planner an hour of decisions. A short jitter (the default, 1 s)
  keeps the trace's bursts K times as high; a long one smooths them, like independent users.

(Not scaler.core.plan.Arrivals, the plan's ISL/OSL priors.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from scaler.traces import Request

REPLICATE_JITTER_SECONDS = 1.0


@dataclass(frozen=True)
class Arrivals:
    """Requests sorted by arrival: time (s from the start), input and output tokens."""

    t: np.ndarray
    isl: np.ndarray
    osl: np.ndarray

    def __post_init__(self) -> None:
        # own copies: freezing them must not freeze the caller's arrays
        t = np.array(self.t, dtype=np.float64)
        isl = np.array(self.isl, dtype=np.int64)
        osl = np.array(self.osl, dtype=np.int64)
        if not (len(t) == len(isl) == len(osl)):
            raise ValueError("t, isl and osl must have the same length")
        if len(t) and (not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0)):
            raise ValueError("arrival times must be finite and sorted")
        if np.any(isl < 1) or np.any(osl < 1):
            raise ValueError("ISL and OSL must be >= 1")
        for name, arr in (("t", t), ("isl", isl), ("osl", osl)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def span_seconds(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self.t) else 0.0


def arrivals_from_requests(requests: Sequence[Request]) -> Arrivals:
    """Arrivals from trace requests: sorted, starting at 0, token counts of 0 taken as 1 (a
    request reads and makes at least one token)."""
    n = len(requests)
    t = np.fromiter((r.t for r in requests), dtype=np.float64, count=n)
    isl = np.maximum(np.fromiter((r.isl for r in requests), dtype=np.int64, count=n), 1)
    osl = np.maximum(np.fromiter((r.osl for r in requests), dtype=np.int64, count=n), 1)
    order = np.argsort(t, kind="stable")
    t, isl, osl = t[order], isl[order], osl[order]
    if len(t):
        t = t - t[0]
    return Arrivals(t=t, isl=isl, osl=osl)


def build_workload(
    requests: Sequence[Request],
    replicate: int = 1,
    seed: int = 0,
    jitter_seconds: float = REPLICATE_JITTER_SECONDS,
) -> Arrivals:
    """Arrivals from trace requests, optionally replicated (`replicate` copies of each, the
    copies after the first shifted by a seeded uniform jitter in [0, jitter_seconds)).

    Token counts of 0 in a trace are taken as 1: every request reads at least one token
    and makes at least one (its first, from prefill).
    """
    if replicate < 1:
        raise ValueError("replicate must be >= 1")
    if not jitter_seconds >= 0:
        raise ValueError("jitter_seconds must be >= 0")
    base = arrivals_from_requests(requests)
    t, isl, osl = base.t, base.isl, base.osl
    if replicate > 1:
        rng = np.random.default_rng(seed)
        n = len(t)
        jitter = rng.uniform(0.0, jitter_seconds, size=(replicate - 1) * n)
        t = np.concatenate([t, np.tile(t, replicate - 1) + jitter])
        isl = np.tile(isl, replicate)
        osl = np.tile(osl, replicate)
        order = np.argsort(t, kind="stable")
        t, isl, osl = t[order], isl[order], osl[order]
    return Arrivals(t=t, isl=isl, osl=osl)
