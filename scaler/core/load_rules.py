"""Load-based scaling, one pool's step: which rule decides the pool this tick, and the replicas
it asks for. Pure; docs/load-scaling.md explains the rules, one function per rule here:

- `_no_load_samples`: a throughput tick without worker samples keeps the last load decision.
- `_nothing_reports`: no worker and no ready count: keep the last decision.
- `_transition`: while the ready count differs from the last load decision a change is in
  flight: hold at that decision (no stacking), except that a down verdict may withdraw a
  replica that never became ready, and an up verdict with more replicas ready than decided
  grows from the ready count.
- `_in_sync`: +-1 from the ready count on the verdict (scaler.core.load_verdicts); a hold
  reports its most informative reason.
- `_delayed_down`: a scale-down needs the down verdict on every tick over
  scaleDownDelaySeconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from scaler.core.decision import Reason
from scaler.core.load_verdicts import DOWN, UP

# Which verdict reason best explains a hold, most informative first.
_HOLD_PRIORITY = (
    Reason.LOAD_REFUSED_CONSOLIDATION,
    Reason.SLA_INFEASIBLE,
    Reason.LOAD_INSUFFICIENT_DATA,
    Reason.LOAD_HOLD,
)


@dataclass(frozen=True)
class Step:
    """The rule that decided one pool this tick and the replicas it asks for (None: no
    basis for a count; the pool's minimum)."""

    reason: Reason
    replicas: Optional[int]


def pool_step(
    direction: int,
    *,
    ready: int,
    last: Optional[int],
    previous: Optional[int],
    reporting: bool,
    throughput_only: bool,
    down_streak: int,
    confirm_ticks: int,
    held: Sequence[Reason],
) -> Step:
    """Which rule decides the pool this tick, and what it asks for. Pure.

    `direction`: the pool's verdict; `ready`: its ready replicas; `last`: the load path's
    last decision for it (None before the first); `previous`: the planner's previous
    decision for it; `reporting`: whether any worker or ready count was observed;
    `throughput_only`: a throughput tick without worker samples; `down_streak`: the
    consecutive pending scale-down ticks before this one; `held`: the verdicts' reasons.
    """
    if throughput_only:
        return _no_load_samples(last)
    if not reporting:
        return _nothing_reports(last, previous)
    if last is not None and ready != last:
        return _transition(direction, ready, last)
    return _in_sync(direction, ready, down_streak, confirm_ticks, held)


def _no_load_samples(last: Optional[int]) -> Step:
    """A throughput tick says nothing about load: keep the last load decision."""
    return Step(Reason.LOAD_HOLD if last is not None else Reason.LOAD_INSUFFICIENT_DATA, last)


def _nothing_reports(last: Optional[int], previous: Optional[int]) -> Step:
    """No worker and no ready count for the pool: keep the last decision (the load path's,
    else the planner's)."""
    return Step(Reason.LOAD_INSUFFICIENT_DATA, last if last is not None else previous)


def _transition(direction: int, ready: int, last: int) -> Step:
    """Transitions: a change is in flight (ready != last decision): do not stack another.

    A down verdict may withdraw a replica that never became ready (pending pods must not
    pin the pool up); it never removes a ready one since last - 1 >= ready. More ready
    than decided (a scale-down still draining, or held by the HPA's stabilization window)
    with every worker overloaded: grow from what is there.
    """
    if direction == DOWN and ready < last:
        return Step(Reason.LOAD_DOWN, last - 1)
    if direction == UP and ready > last:
        return Step(Reason.LOAD_UP, ready + 1)
    return Step(Reason.LOAD_NOT_READY, last)


def _in_sync(direction: int, ready: int, down_streak: int, confirm_ticks: int, held: Sequence[Reason]) -> Step:
    """Verdict: +-1 from the ready count; a hold reports its most informative reason."""
    if direction == UP:
        return Step(Reason.LOAD_UP, ready + 1)
    if direction == DOWN:
        return _delayed_down(ready, down_streak, confirm_ticks)
    return Step(next((r for r in _HOLD_PRIORITY if r in held), Reason.LOAD_HOLD), ready)


def _delayed_down(ready: int, down_streak: int, confirm_ticks: int) -> Step:
    """Delay: bursty traffic empties queues between bursts, so shrink only once the down
    verdict has held for scaleDownDelaySeconds (`confirm_ticks` ticks, this one included);
    scale-ups act at once."""
    if down_streak + 1 < confirm_ticks:
        return Step(Reason.LOAD_DOWN_PENDING, ready)
    return Step(Reason.LOAD_DOWN, ready - 1)
