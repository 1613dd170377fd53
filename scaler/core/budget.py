"""Pool bounds and the joint GPU budget (`bound_and_budget`, the last step of both paths).

The budget shrinks pools proportionally to what each asked for above its minimum, never
raises a pool above its request and never goes below a pool's minimum. Dynamo's G2 clamp
hands decode all leftover GPUs (it can grow decode above its request); we do not.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

from scaler.core.decision import Decision, LoadPoolInputs, PoolDecision, Reason, ThroughputInputs
from scaler.core.plan import Plan


def clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def apply_budget(
    requested: Mapping[str, int],
    minimums: Mapping[str, int],
    gpus_per_replica: Mapping[str, int],
    max_gpus: Optional[int],
) -> dict[str, int]:
    """Fit `requested` replicas (already within each pool's [min, max]) into `max_gpus`.

    Each pool keeps its minimum; the GPUs left over are shared in proportion to each
    pool's request above its minimum (largest remainder first, whole replicas only).
    If even the minimums do not fit (the plan validator rejects such plans), the
    minimums are returned unchanged.
    """
    names = list(requested)
    total = sum(requested[n] * gpus_per_replica[n] for n in names)
    if max_gpus is None or total <= max_gpus:
        return dict(requested)
    floor_gpus = sum(minimums[n] * gpus_per_replica[n] for n in names)
    available = max_gpus - floor_gpus
    if available <= 0:
        return {n: minimums[n] for n in names}
    excess = {n: (requested[n] - minimums[n]) * gpus_per_replica[n] for n in names}
    total_excess = sum(excess.values())
    share = available / total_excess  # < 1 because total > max_gpus
    result: dict[str, int] = {}
    remainders: dict[str, float] = {}
    for n in names:
        extra = (requested[n] - minimums[n]) * share
        whole = math.floor(extra + 1e-9)
        result[n] = minimums[n] + whole
        remainders[n] = extra - whole
    left = max_gpus - sum(result[n] * gpus_per_replica[n] for n in names)
    # Hand out whole replicas by largest remainder while they fit and stay within requests.
    for n in sorted(names, key=lambda k: (-remainders[k], names.index(k))):
        if result[n] < requested[n] and gpus_per_replica[n] <= left:
            result[n] += 1
            left -= gpus_per_replica[n]
    return result


def bound_and_budget(
    plan: Plan,
    requested: Mapping[str, int],
    reason: Reason,
    timestamp: float,
    *,
    floor: Optional[Mapping[str, PoolDecision]] = None,
    extra_reasons: Optional[Mapping[str, tuple[Reason, ...]]] = None,
    capacity: Optional[Mapping[str, float]] = None,
    throughput: Optional[ThroughputInputs] = None,
    load: Optional[Mapping[str, Mapping[str, LoadPoolInputs]]] = None,
    warnings: tuple[str, ...] = (),
) -> Decision:
    """Raise each pool to its floor, clamp it to [min, max], then fit the joint GPU budget.

    Shared by both paths. `floor` (the load path with throughput scaling on) is the
    throughput tick's decision per pool: a pool the load rule asks less for requests what
    the throughput tick requested (reason THROUGHPUT_FLOOR) and keeps at least the
    replicas that tick got, which already went through bounds and budget. Each pool's
    `requested` is its request before bounds and budget; AT_MIN / AT_MAX / BUDGET say
    what moved the final replicas away from it.
    """
    pools = plan.pools
    reasons: dict[str, list[Reason]] = {n: list((extra_reasons or {}).get(n, ())) for n in requested}
    asked: dict[str, int] = {}
    bounded: dict[str, int] = {}
    for n, want in requested.items():
        lo, hi = pools[n].min_replicas, pools[n].max_replicas
        bounded[n] = clamp(want, lo, hi)
        below = (floor or {}).get(n)
        if below is not None and below.requested > want:
            want = below.requested
            bounded[n] = max(bounded[n], below.replicas)
            reasons[n].append(Reason.THROUGHPUT_FLOOR)
        asked[n] = want
        if want < lo:
            reasons[n].append(Reason.AT_MIN)
        elif want > hi:
            reasons[n].append(Reason.AT_MAX)
    budget = plan.spec.budget.max_gpus
    final = apply_budget(
        bounded,
        {n: pools[n].min_replicas for n in bounded},
        {n: pools[n].gpus_per_replica for n in bounded},
        budget,
    )
    for n in final:
        if final[n] < clamp(asked[n], pools[n].min_replicas, pools[n].max_replicas):
            reasons[n].append(Reason.BUDGET)
    return Decision(
        plan=plan.name,
        pools={
            n: PoolDecision(
                replicas=final[n],
                requested=asked[n],
                gpus_per_replica=pools[n].gpus_per_replica,
                reasons=tuple(reasons[n]),
                capacity_tokens_per_s=(capacity or {}).get(n),
            )
            for n in requested
        },
        reason=reason,
        timestamp=timestamp,
        throughput=throughput,
        load=load or {},
        budget_gpus=budget,
        warnings=warnings,
    )
