"""What a simulation run produced: replica lifetimes, replica-count samples, the controller's
decisions, and per-request times (scaler.sim.report turns them into numbers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping, Optional

import numpy as np

from scaler.sim.workload import Arrivals


@dataclass(frozen=True)
class ReplicaLife:
    """One replica, from the request for it to its end (it costs GPUs all that time)."""

    pool: str
    requested_at: float
    ready_at: Optional[float]  # None: removed before it became ready
    ended_at: float


@dataclass(frozen=True)
class PoolSample:
    """Replica counts of one pool right after a change at time t."""

    t: float
    pool: str
    desired: int   # replicas the controller wants (starting + ready, not draining)
    ready: int     # serving
    billed: int    # costing GPUs: starting + ready + draining


@dataclass(frozen=True)
class DecisionRecord:
    """One controller call that returned targets."""

    t: float
    kind: str  # "throughput" | "load" | "poll"
    targets: Mapping[str, int]
    changed: bool


@dataclass
class SimResult:
    """What one run produced; scaler.sim.report turns it into numbers."""

    policy: str
    workload: Arrivals
    prefill_end: np.ndarray  # s, first token
    finish: np.ndarray       # s, last token
    ttft_ms: np.ndarray
    itl_ms: np.ndarray       # NaN for single-token requests (no inter-token gap)
    end_time: float
    replicas: list[ReplicaLife]
    samples: list[PoolSample]
    decisions: list[DecisionRecord] = field(default_factory=list)
    gpus_per_replica: Mapping[str, int] = field(default_factory=dict)
    # a probe run stopped by its StopRule (the per-request arrays are then incomplete)
    stopped: bool = False

    @property
    def scale_events(self) -> int:
        """Pool target changes applied (one per pool whose target moved)."""
        return sum(1 for _ in self._changes())

    def _changes(self) -> Iterator[PoolSample]:
        last: dict[str, int] = {}
        for s in self.samples:
            prev = last.get(s.pool)
            if prev is not None and s.desired != prev:
                yield s
            last[s.pool] = s.desired

    def peak_gpus(self) -> int:
        """The most GPUs billed at once: the peak over time of the sum over pools of billed
        replicas times GPUs per replica. Counts are taken after the last sample at each time
        (samples at one time are one instant: a replica added and removed then costs nothing)."""
        billed: dict[str, int] = {}
        peak = 0
        samples = self.samples
        for i, s in enumerate(samples):
            billed[s.pool] = s.billed
            if i + 1 == len(samples) or samples[i + 1].t != s.t:
                peak = max(peak, sum(n * self.gpus_per_replica[p] for p, n in billed.items()))
        return peak

    def gpu_hours(self, pool: Optional[str] = None) -> float:
        return sum(
            (r.ended_at - r.requested_at) * self.gpus_per_replica[r.pool]
            for r in self.replicas
            if pool is None or r.pool == pool
        ) / 3600.0
