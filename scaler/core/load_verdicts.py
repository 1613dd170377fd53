"""Load-based scaling, one signal's verdict on one pool: up, hold or down, and why.

Pure. A verdict compares the workers' current loads with the per-worker target the fitted
capacity gives at the SLA (scaler.core.regression); docs/load-scaling.md explains the rules:

- Prefill (TTFT against active prefill tokens + ISL): the target of *queued* tokens per
  worker is x_sla - average ISL; before or despite the fit, every worker with a whole
  request queued and its TTFT over the SLA means up (`queue_overloaded`).
- Decode (ITL against active KV blocks): the target is x_sla.
- The +-1 rule (`threshold_direction`): up when every worker is above the target; down only
  when the load of all workers spread over N-1 stays under target x sensitivity and every
  worker is under the boundary target x (N-1)/N x sensitivity (the consolidation check).
- Aggregated workers (`combine_aggregated`): up if either signal says up, down only if both
  say down.

What a pool then does with its verdict is scaler.core.load_rules; the tick that feeds them,
scaler.core.load_scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from scaler.core.decision import LoadPoolInputs, Reason
from scaler.core.regression import Capacity, SlidingRegression

UP, HOLD, DOWN = 1, 0, -1


@dataclass(frozen=True)
class Verdict:
    """One signal's opinion on one pool: direction, why, and what it used."""

    direction: int
    reason: Reason
    inputs: LoadPoolInputs
    bad_fit: bool = False
    warning: Optional[str] = None


def threshold_direction(
    loads: Sequence[float], target: float, sensitivity: float, replicas: Optional[int] = None
) -> tuple[int, Reason]:
    """The +-1 rule on per-worker loads against a per-worker target (pure, no regression).

    Up when every worker is above `target`. Down (N > 1) when the total load spread over
    N-1 workers stays under target x sensitivity/100 and every worker is under
    target x (N-1)/N x sensitivity/100. A hold that a naive rule (average load under
    target x sensitivity) would have turned into a scale-down is reported as
    LOAD_REFUSED_CONSOLIDATION.

    N is `replicas` (the ready count) when given, else the number of loads. More loads
    than replicas (a worker still reporting while it leaves) all count: their load has
    to go somewhere, which only makes both rules more cautious.
    """
    n = len(loads) if replicas is None else replicas
    if n <= 0 or not loads:
        return HOLD, Reason.LOAD_INSUFFICIENT_DATA
    if all(v > target for v in loads):
        return UP, Reason.LOAD_UP
    if n > 1:
        ceiling = target * sensitivity / 100.0
        boundary = target * (n - 1) / n * sensitivity / 100.0
        total = float(sum(loads))
        if total / (n - 1) < ceiling and all(v < boundary for v in loads):
            return DOWN, Reason.LOAD_DOWN
        if total / n < ceiling:
            return HOLD, Reason.LOAD_REFUSED_CONSOLIDATION
    return HOLD, Reason.LOAD_HOLD


def _verdict(
    capacity: Optional[Capacity],
    reg: SlidingRegression,
    loads: Sequence[float],
    target_of: Callable[[float], tuple[float, Optional[str]]],
    sensitivity: float,
    what: str,
    replicas: Optional[int],
    violated: bool,
) -> Verdict:
    n = len(loads) if replicas is None else replicas
    peak = max(loads) if loads else None
    if violated:
        # Observed evidence beats the fit: every worker has a whole request queued and its
        # latest TTFT misses the SLA. Under sustained overload the fit is the least reliable
        # (queueing delay lands on low-load points and can make the SLA look unachievable),
        # which is exactly when holding would hurt most.
        fit = capacity.fit if capacity is not None else None
        return Verdict(
            UP,
            Reason.LOAD_SLA_VIOLATED,
            LoadPoolInputs(
                n,
                None if fit is None else fit.slope,
                None if fit is None else fit.intercept,
                len(reg),
                None if capacity is None else target_of(capacity.x_sla)[0],
                peak,
                Reason.LOAD_SLA_VIOLATED,
                UP,
            ),
            bad_fit=capacity is not None and capacity.fallback,
            warning=f"{what}: every worker has a request's worth of work queued and misses the SLA",
        )
    if capacity is None:
        return Verdict(
            HOLD,
            Reason.LOAD_INSUFFICIENT_DATA,
            LoadPoolInputs(n, None, None, len(reg), None, peak, Reason.LOAD_INSUFFICIENT_DATA, HOLD),
        )
    fit = capacity.fit
    target, unachievable = target_of(capacity.x_sla)
    if unachievable is not None:
        return Verdict(
            HOLD,
            Reason.SLA_INFEASIBLE,
            LoadPoolInputs(n, fit.slope, fit.intercept, fit.observations, target, peak, Reason.SLA_INFEASIBLE, HOLD),
            bad_fit=capacity.fallback,
            warning=f"{what}: {unachievable}",
        )
    direction, reason = threshold_direction(loads, target, sensitivity, replicas)
    recorded = Reason.LOAD_BAD_FIT if capacity.fallback else reason
    warning = None
    if capacity.fallback:
        warning = (
            f"{what}: latency does not rise with load in the window (slope {fit.slope:.4g}); "
            f"capacity {capacity.x_sla:.4g} taken from observed points"
        )
    return Verdict(
        direction,
        reason,
        LoadPoolInputs(n, fit.slope, fit.intercept, fit.observations, target, peak, recorded, direction),
        bad_fit=capacity.fallback,
        warning=warning,
    )


def queue_overloaded(
    queued: Sequence[float], ttfts: Sequence[Optional[float]], avg_isl: Optional[float], ttft_sla_ms: float
) -> bool:
    """Every worker has at least one whole request (avg ISL tokens) queued and its latest
    TTFT misses the SLA: more replicas would shorten those queues, whatever the fit says.

    Requiring a full request's worth of backlog keeps a genuinely unachievable SLA (long
    prompts too slow even on an idle worker) from growing the pool on light load. A ready
    worker that reports nothing (padded load 0, TTFT None) means no.
    """
    if not queued or avg_isl is None or len(ttfts) < len(queued):
        return False
    return all(q >= avg_isl for q in queued) and all(y is not None and y > ttft_sla_ms for y in ttfts)


def prefill_verdict(
    reg: SlidingRegression,
    loads: Sequence[float],
    avg_isl: Optional[float],
    ttft_sla_ms: float,
    sensitivity: float,
    replicas: Optional[int] = None,
    latencies: Sequence[Optional[float]] = (),
) -> Verdict:
    """Prefill: target queued tokens per worker = x_sla - average ISL; <= 0 means the SLA
    cannot be met at the current ISL even on an idle worker: no decision."""
    capacity = reg.capacity_at(ttft_sla_ms) if avg_isl is not None else None
    # Without an ISL there is no capacity and no overload evidence: target_of never runs.
    isl = 0.0 if avg_isl is None else float(avg_isl)

    def target_of(x_sla: float) -> tuple[float, Optional[str]]:
        target = x_sla - isl
        if target <= 0:
            return target, f"SLA unachievable at current ISL ({avg_isl:.0f} tokens, capacity {x_sla:.0f} tokens)"
        return target, None

    violated = queue_overloaded(loads, latencies, avg_isl, ttft_sla_ms)
    return _verdict(capacity, reg, loads, target_of, sensitivity, "prefill", replicas, violated)


def decode_verdict(
    reg: SlidingRegression,
    loads: Sequence[float],
    itl_sla_ms: float,
    sensitivity: float,
    replicas: Optional[int] = None,
) -> Verdict:
    """Decode: target active KV blocks per worker = x_sla; 0 means unachievable: no decision.

    No observed-latency override here: ITL is measured while decoding, so queueing does not
    distort the fit the way it distorts TTFT, and an ITL above the SLA at any load must not
    grow the pool without end."""
    capacity = reg.capacity_at(itl_sla_ms)

    def target_of(x_sla: float) -> tuple[float, Optional[str]]:
        if x_sla <= 0:
            return x_sla, "SLA unachievable: the fitted ITL exceeds it even with no active blocks"
        return x_sla, None

    return _verdict(capacity, reg, loads, target_of, sensitivity, "decode", replicas, False)


def combine_aggregated(prefill: int, decode: int) -> int:
    """Aggregated workers: up if either signal says up, down only if both say down."""
    if UP in (prefill, decode):
        return UP
    if prefill == DOWN and decode == DOWN:
        return DOWN
    return HOLD
