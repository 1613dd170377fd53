"""Load-based scaling: per-pool regressions on live worker load, +-1 replica per load tick.

Pure (no I/O, no clock). `load_tick(plan, obs, load, ...)` is called by `planner.decide` on
every load interval with the workers' current load (`obs.workers`) and the number of
ready replicas per pool (`obs.ready_replicas`). docs/load-scaling.md explains the rules;
in short (this module keeps the state, the observations and the tick; each signal's verdict
is scaler.core.load_verdicts, each pool's step scaler.core.load_rules):

- Signals. Prefill: TTFT (ms) against active prefill tokens + ISL. Decode: ITL (ms)
  against active KV blocks. Disaggregated pools use their own signal; the aggregated
  `worker` pool uses both on the same workers.
- Capacity. A robust sliding-window fit (scaler.core.regression) solved at the SLA gives
  the load one worker carries; for prefill the ISL of the incoming request is part of x,
  so the per-worker target of *queued* tokens is x_sla - average ISL.
- Verdict (load_verdicts). Up when every worker is above the target. Down only when the load of all
  workers spread over N-1 stays under target x sensitivity and every worker is under the
  boundary target x (N-1)/N x sensitivity (the consolidation check, which keeps a pool
  from flapping between N and N-1 under steady load). Aggregated: up if either signal
  says up, down only if both say down. Before the fit: every worker with a whole request
  queued and its TTFT over the SLA means up, whatever the fit says.
- Delay (load_rules). A scale-down needs the down verdict on every tick over scaleDownDelaySeconds.
- Transitions (load_rules). While the ready count differs from the last load decision a change is in
  flight: hold at that decision (no stacking), except that a down verdict may withdraw a
  replica that never became ready, and an up verdict with more replicas ready than
  decided grows from the ready count.
- Then the throughput floor (when both modes are on), pool bounds and the GPU budget.

All state lives in `LoadState`, built only from the observations fed to it, so replaying
the same observations rebuilds it exactly (`rebuild_load_state`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

from scaler.core.budget import bound_and_budget
from scaler.core.decision import Decision, LoadPoolInputs, PoolDecision, Reason, ThroughputInputs
from scaler.core.load_rules import pool_step
from scaler.core.load_verdicts import HOLD, Verdict, combine_aggregated, decode_verdict, prefill_verdict
from scaler.core.observations import Observation, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.regression import SlidingRegression

TTFT = "ttft"  # prefill signal
ITL = "itl"    # decode signal

# The Decision-level reason: the first of these any pool has.
_DECISION_PRIORITY = (
    Reason.LOAD_UP,
    Reason.LOAD_DOWN,
    Reason.LOAD_NOT_READY,
    Reason.LOAD_DOWN_PENDING,
    Reason.LOAD_REFUSED_CONSOLIDATION,
    Reason.SLA_INFEASIBLE,
    Reason.LOAD_INSUFFICIENT_DATA,
    Reason.LOAD_HOLD,
)


def signals_for(plan: Plan) -> dict[str, tuple[str, ...]]:
    """The signals each pool of the plan is scaled on."""
    if plan.spec.mode == "agg":
        return {"worker": (TTFT, ITL)}
    return {"prefill": (TTFT,), "decode": (ITL,)}


@dataclass
class LoadState:
    """The load path's memory: regressions, recent ISLs, and the last decision per pool."""

    window: int
    min_observations: int
    regressions: dict[tuple[str, str], SlidingRegression] = field(default_factory=dict)
    # ISLs of the prefill points in the window: the average ISL when no worker reports one now
    isl: dict[str, deque] = field(default_factory=dict)
    # final replicas of the latest load decision per pool (None until the first one)
    decided: dict[str, int] = field(default_factory=dict)
    # consecutive in-sync ticks whose verdict was "down", per pool
    down_streak: dict[str, int] = field(default_factory=dict)
    ticks: int = 0

    def regression(self, pool: str, signal: str) -> SlidingRegression:
        key = (pool, signal)
        if key not in self.regressions:
            self.regressions[key] = SlidingRegression(self.window, self.min_observations)
        return self.regressions[key]


def new_load_state(plan: Plan) -> LoadState:
    ld = plan.spec.scaling.load
    state = LoadState(window=ld.window, min_observations=ld.min_observations)
    for pool, signals in signals_for(plan).items():
        for signal in signals:
            state.regression(pool, signal)
        if TTFT in signals:
            state.isl[pool] = deque(maxlen=ld.window)
    return state


def ensure_load_state(plan: Plan, current: Optional[LoadState]) -> LoadState:
    """`current`, or a new state on first use; resized (keeping its points) on a plan change."""
    ld = plan.spec.scaling.load
    if current is None:
        return new_load_state(plan)
    if (current.window, current.min_observations) != (ld.window, ld.min_observations):
        fresh = new_load_state(plan)
        for key, reg in current.regressions.items():
            if key in fresh.regressions:
                fresh.regressions[key] = reg.resized(ld.window, ld.min_observations)
        for pool, isls in current.isl.items():
            if pool in fresh.isl:
                fresh.isl[pool].extend(isls)
        fresh.decided = dict(current.decided)
        fresh.down_streak = dict(current.down_streak)
        fresh.ticks = current.ticks
        return fresh
    return current


# -- observations ----------------------------------------------------------------------
def workers_by_pool(plan: Plan, workers: Iterable[WorkerLoad]) -> tuple[dict[str, list[WorkerLoad]], list[str]]:
    """Group workers by plan pool, one entry per worker id (the last wins), sorted by id.

    Sorting makes the result independent of the order the edge returned series in.
    Workers of pools the plan does not have are left out and named in the returned
    warnings: the edges (scaler.prom.reader, the simulator) report plan pool names.
    """
    pools = plan.pool_names
    grouped: dict[str, dict[str, WorkerLoad]] = {p: {} for p in pools}
    unknown: set[str] = set()
    for w in workers:
        if w.pool not in grouped:
            unknown.add(w.pool)
            continue
        grouped[w.pool][w.worker_id] = w
    warnings = [f"ignored workers of unknown pool {p!r}" for p in sorted(unknown)]
    return {p: [g[k] for k in sorted(g)] for p, g in grouped.items()}, warnings


def observe(plan: Plan, load: LoadState, workers: Iterable[WorkerLoad]) -> None:
    """Feed one tick of worker samples into the regressions.

    Prefill point when last TTFT > 0 and last ISL > 0: x = active prefill tokens + ISL,
    y = TTFT. Decode point when last ITL > 0 and active decode blocks > 0: x = blocks,
    y = ITL. A missing active-prefill gauge counts as 0 queued tokens.
    """
    grouped, _ = workers_by_pool(plan, workers)
    signals = signals_for(plan)
    for pool, members in grouped.items():
        for w in members:
            ttft, isl = w.last_ttft_ms, w.last_isl
            if TTFT in signals[pool] and ttft is not None and ttft > 0 and isl is not None and isl > 0:
                if load.regression(pool, TTFT).add((w.active_prefill_tokens or 0.0) + isl, ttft):
                    load.isl.setdefault(pool, deque(maxlen=load.window)).append(float(isl))
            itl, blocks = w.last_itl_ms, w.active_decode_blocks
            if ITL in signals[pool] and itl is not None and itl > 0 and blocks is not None and blocks > 0:
                load.regression(pool, ITL).add(blocks, itl)


def rebuild_load_state(plan: Plan, history: Iterable[Observation]) -> LoadState:
    """Regressions rebuilt from past observations (oldest first), e.g. Prometheus history at
    start-up. No decisions are replayed: the first live tick starts from the ready count."""
    load = new_load_state(plan)
    for obs in history:
        observe(plan, load, obs.workers)
    return load



# -- the tick --------------------------------------------------------------------------
def _loads(members: Sequence[WorkerLoad], n: int, attr: str) -> list[float]:
    """Per-worker loads, padded with zeros for ready workers that report nothing: the
    frontend publishes no gauge for a worker that has served nothing (idle)."""
    values = [float(getattr(w, attr) or 0.0) for w in members]
    return values + [0.0] * max(0, n - len(values))


def down_confirm_ticks(plan: Plan) -> int:
    """Consecutive down verdicts a scale-down needs: ceil(delay / interval), at least 1."""
    ld = plan.spec.scaling.load
    return max(1, math.ceil(ld.scale_down_delay_seconds / ld.interval_seconds))


def _latencies(members: Sequence[WorkerLoad], n: int, attr: str) -> list[Optional[float]]:
    values: list[Optional[float]] = [getattr(w, attr) for w in members]
    return values + [None] * max(0, n - len(values))


def _avg_isl(load: LoadState, pool: str, members: Sequence[WorkerLoad]) -> Optional[float]:
    """Mean ISL of the requests behind the window's prefill points (the same data the
    capacity is learned from; one worker's last request is far too noisy), else of the
    ISLs reported now."""
    past = load.isl.get(pool)
    if past:
        return sum(past) / len(past)
    now = [float(isl) for isl in (w.last_isl for w in members) if isl is not None and isl > 0]
    return sum(now) / len(now) if now else None


def load_tick(
    plan: Plan,
    obs: Observation,
    load: LoadState,
    *,
    floor: Optional[Mapping[str, PoolDecision]],
    previous: Mapping[str, int],
    throughput_inputs: Optional[ThroughputInputs],
) -> Decision:
    """One load-based tick: observe, one step per pool, then floor, bounds and budget.

    Updates `load` in place. `floor`: the latest throughput tick's decision per pool (None
    when throughput scaling is off; see `bound_and_budget`); `previous`: the replicas of the
    planner's previous decision; `throughput_inputs`: carried into the decision unchanged.
    """
    load.ticks += 1
    observe(plan, load, obs.workers)
    grouped, warnings = workers_by_pool(plan, obs.workers)
    confirm_ticks = down_confirm_ticks(plan)
    # A throughput tick without worker samples says nothing about load: every pool keeps
    # the load path's last decision, raised to the (new) throughput floor.
    throughput_only = not obs.workers and obs.traffic is not None

    requested: dict[str, int] = {}
    reasons: dict[str, tuple[Reason, ...]] = {}
    inputs: dict[str, dict[str, LoadPoolInputs]] = {}
    for pool, signals in signals_for(plan).items():
        members = grouped[pool]
        ready = int(obs.ready_replicas[pool]) if pool in obs.ready_replicas else len(members)
        verdicts = {} if throughput_only else _pool_verdicts(plan, load, pool, signals, members, ready)
        if verdicts:
            inputs[pool] = {signal: v.inputs for signal, v in verdicts.items()}
        warnings.extend(v.warning for v in verdicts.values() if v.warning)
        step = pool_step(
            _direction(verdicts),
            ready=ready,
            # Only the load path's own decisions: a throughput decision is the floor, applied
            # last, and after a restart the first tick starts from what is actually ready.
            last=load.decided.get(pool),
            previous=previous.get(pool),
            reporting=bool(members) or pool in obs.ready_replicas,
            throughput_only=throughput_only,
            down_streak=load.down_streak.get(pool, 0),
            confirm_ticks=confirm_ticks,
            held=tuple(v.reason for v in verdicts.values()),
        )
        load.down_streak[pool] = load.down_streak.get(pool, 0) + 1 if step.reason is Reason.LOAD_DOWN_PENDING else 0
        requested[pool] = plan.pools[pool].min_replicas if step.replicas is None else step.replicas
        reasons[pool] = (step.reason, *_verdict_notes(step.reason, verdicts.values()))

    overall = next(r for r in _DECISION_PRIORITY if r in (rs[0] for rs in reasons.values()))
    if throughput_only and floor is not None and any(p in floor and floor[p].requested > requested[p] for p in requested):
        overall = Reason.THROUGHPUT_FLOOR
    decision = bound_and_budget(
        plan,
        requested,
        overall,
        obs.timestamp,
        floor=floor,
        extra_reasons=reasons,
        throughput=throughput_inputs,
        load=inputs,
        warnings=tuple(warnings),
    )
    load.decided = {p: d.replicas for p, d in decision.pools.items()}
    return decision


def _pool_verdicts(
    plan: Plan, load: LoadState, pool: str, signals: Sequence[str], members: Sequence[WorkerLoad], ready: int
) -> dict[str, Verdict]:
    """Each of the pool's signals' verdict on its `ready` workers' current load."""
    spec = plan.spec
    sensitivity = spec.scaling.load.scale_down_sensitivity
    verdicts: dict[str, Verdict] = {}
    if TTFT in signals:
        verdicts[TTFT] = prefill_verdict(
            load.regression(pool, TTFT),
            _loads(members, ready, "active_prefill_tokens"),
            _avg_isl(load, pool, members),
            spec.sla.ttft_ms,
            sensitivity,
            ready,
            _latencies(members, ready, "last_ttft_ms"),
        )
    if ITL in signals:
        verdicts[ITL] = decode_verdict(
            load.regression(pool, ITL),
            _loads(members, ready, "active_decode_blocks"),
            spec.sla.itl_ms,
            sensitivity,
            ready,
        )
    return verdicts


def _direction(verdicts: Mapping[str, Verdict]) -> int:
    """The pool's direction: its one signal's, or both combined (aggregated); HOLD without any."""
    if TTFT in verdicts and ITL in verdicts:
        return combine_aggregated(verdicts[TTFT].direction, verdicts[ITL].direction)
    return next((v.direction for v in verdicts.values()), HOLD)


def _verdict_notes(reason: Reason, verdicts: Iterable[Verdict]) -> tuple[Reason, ...]:
    """Reasons the verdicts add to the step's: a scale-up on observed SLA misses, a fit
    that fell back to observed points, an SLA no worker can meet."""
    vs = tuple(verdicts)
    notes: list[Reason] = []
    if reason is Reason.LOAD_UP and any(v.reason is Reason.LOAD_SLA_VIOLATED for v in vs):
        notes.append(Reason.LOAD_SLA_VIOLATED)
    if any(v.bad_fit for v in vs):
        notes.append(Reason.LOAD_BAD_FIT)
    if any(v.reason is Reason.SLA_INFEASIBLE for v in vs) and reason is not Reason.SLA_INFEASIBLE:
        notes.append(Reason.SLA_INFEASIBLE)
    return tuple(notes)
