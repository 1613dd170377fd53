"""The planner: (plan, observation, state) -> Decision. No I/O, no clock.

The scaler's decision loop, `explain`, `capacity` and the simulator all call `decide` /
`capacity`; nothing else computes replicas. `PlannerState` is the only thing that
carries over between ticks (predictors, correction factors, the throughput floor, the
load path's regressions), and it is rebuilt exactly by replaying the same observations,
which is what makes a restarted scaler decide like one that never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from scaler.core import attainment_sizing
from scaler.core.attainment_sizing import AttainmentState
from scaler.core.budget import bound_and_budget
from scaler.core.decision import Decision, Reason, ThroughputInputs
from scaler.core.interpolation import DecodeOperatingPoint, PerfModel
from scaler.core.load_scaling import LoadState, ensure_load_state, load_tick
from scaler.core.observations import MAX_RATE, MAX_TOKENS, Observation, TrafficWindow, within_limits
from scaler.core.plan import Plan
from scaler.core.predictors import Predictor, make_predictor
from scaler.core.throughput import (
    CorrectionFactors,
    agg_replicas,
    ceil_replicas,
    decode_context,
    decode_itl_target,
    decode_replicas,
    prefill_replicas,
    prefill_replicas_for_ttft,
    queueing_factor_from_window,
    smooth_factor,
    update_corrections,
)


@dataclass
class PlannerState:
    """Mutable state of one plan's planner; owned by exactly one decision loop."""

    rate: Predictor
    isl: Predictor
    osl: Predictor
    corrections: CorrectionFactors = field(default_factory=CorrectionFactors)
    # learned traffic variability for queueing-aware prefill sizing (1 = M/D/1)
    queueing_factor: float = 1.0
    # the latest throughput tick's own decision (before the load path): the floor for
    # load-based scaling, and its inputs are carried into load-tick decisions
    throughput: Optional[Decision] = None
    last: Optional[Decision] = None
    # the load path's state (regressions, last load decision), created on first use
    load: Optional[LoadState] = None
    # what the attainment sizing has learned (burst, dispersion, decode slowdown, hold)
    attainment: AttainmentState = field(default_factory=AttainmentState)

    @property
    def throughput_floor(self) -> Optional[dict[str, int]]:
        """Replicas per pool from the latest throughput tick (None before the first)."""
        return None if self.throughput is None else {n: p.replicas for n, p in self.throughput.pools.items()}

    @property
    def throughput_inputs(self) -> Optional[ThroughputInputs]:
        return None if self.throughput is None else self.throughput.throughput


def new_state(plan: Plan) -> PlannerState:
    tp = plan.spec.scaling.throughput
    return PlannerState(
        rate=make_predictor(tp.predictor, tp.interval_seconds),
        isl=make_predictor(tp.predictor, tp.interval_seconds),
        osl=make_predictor(tp.predictor, tp.interval_seconds),
    )


def correction_active(plan: Plan) -> bool:
    """Correction factors are off when load-based scaling is on (as in Dynamo): the load
    path already reacts to observed latency, and both together overcompensate."""
    return plan.spec.scaling.throughput.correction and not plan.spec.scaling.load.enabled


def decide(plan: Plan, model: Optional[PerfModel], obs: Observation, state: PlannerState) -> Decision:
    """One planner tick.

    `obs.traffic` (a throughput window) runs the throughput path; `obs.workers` runs the
    load path when it is enabled. With both modes on, the throughput result is the floor
    and the load path adjusts above it; the joint GPU budget applies last.
    """
    throughput_on = plan.spec.scaling.throughput.enabled
    load_on = plan.spec.scaling.load.enabled
    decision: Optional[Decision] = None
    if obs.traffic is not None and throughput_on:
        if model is None:
            raise ValueError("throughput scaling needs a performance model (profile)")
        decision = _throughput_tick(plan, model, obs, state)
        state.throughput = decision
    # Once the load path has decided, a throughput-only tick goes through it too, so that it
    # keeps the load path's replicas (raised to the new floor) instead of dropping them.
    if load_on and (obs.workers or decision is None or state.load is not None):
        state.load = ensure_load_state(plan, state.load)
        decision = load_tick(
            plan,
            obs,
            state.load,
            floor=state.throughput.pools if throughput_on and state.throughput is not None else None,
            previous={} if state.last is None else {n: p.replicas for n, p in state.last.pools.items()},
            throughput_inputs=state.throughput_inputs,
        )
    if decision is None:
        raise ValueError("observation carries nothing this plan scales on")
    state.last = decision
    return decision


def _observe(state: PlannerState, window: TrafficWindow) -> None:
    state.rate.observe(window.rate)
    # An idle window has no mean ISL/OSL: it says nothing about request shapes.
    if not window.idle:
        if window.isl is not None:
            state.isl.observe(window.isl)
        if window.osl is not None:
            state.osl.observe(window.osl)


def _throughput_tick(plan: Plan, model: PerfModel, obs: Observation, state: PlannerState) -> Decision:
    assert obs.traffic is not None
    # The edges skip windows outside the physical limits (window_problem); capped here too,
    # so that no caller's input makes the arithmetic overflow.
    window = within_limits(obs.traffic)
    if window is not obs.traffic:
        obs = replace(obs, traffic=window)
    _observe(state, window)
    if plan.spec.scaling.throughput.sizing == "attainment":
        return _attainment_tick(plan, model, obs, window, state)
    use_cf = correction_active(plan)
    if use_cf:
        decode_pool = "decode" if plan.spec.mode == "disagg" else "worker"
        state.corrections = update_corrections(
            model, window, replicas_during_window(obs, state, decode_pool), state.corrections
        )
    rate, isl, osl, from_priors = _predicted(plan, state)
    if window.idle and rate == 0:
        reason = Reason.IDLE
    elif from_priors:
        reason = Reason.PRIOR
    else:
        reason = Reason.SCALE
    if plan.spec.scaling.throughput.queueing.enabled and plan.spec.mode == "disagg":
        _learn_queueing(plan, model, obs, state)
    return replicas_for(
        plan,
        model,
        rate=rate,
        isl=isl,
        osl=osl,
        reason=reason,
        corrections=state.corrections if use_cf else CorrectionFactors(),
        correction_enabled=use_cf,
        queueing_factor=state.queueing_factor,
        timestamp=obs.timestamp,
        window=window,
    )


def _predicted(plan: Plan, state: PlannerState) -> tuple[float, float, float, bool]:
    """Predicted rate, ISL and OSL (priors until a shape was seen), and whether priors were used.

    Within the physical limits (a trend extrapolated from capped windows can leave them)."""
    rate = min(max(0.0, state.rate.predict_next()), MAX_RATE)
    isl = min(state.isl.predict_next(), MAX_TOKENS) if state.isl.count else 0.0
    osl = min(state.osl.predict_next(), MAX_TOKENS) if state.osl.count else 0.0
    from_priors = isl <= 0 or osl <= 0
    isl = isl if isl > 0 else plan.spec.workload.isl
    osl = osl if osl > 0 else plan.spec.workload.osl
    return rate, isl, osl, from_priors


def _attainment_tick(
    plan: Plan, model: PerfModel, obs: Observation, window: TrafficWindow, state: PlannerState
) -> Decision:
    ready = {n: replicas_during_window(obs, state, n) for n in plan.pools}
    attainment_sizing.learn(state.attainment, plan, model, window, ready)
    if state.last is not None:
        state.attainment.asked_before = {n: p.replicas for n, p in state.last.pools.items()}
    observed_ready = {n: int(c) for n, c in obs.ready_replicas.items() if n in plan.pools}
    if observed_ready and state.last is not None:
        attainment_sizing.observe_startup(
            state.attainment,
            obs.timestamp,
            observed_ready,
            {n: p.replicas for n, p in state.last.pools.items()},
            state.last.timestamp,
            float(plan.spec.scaling.throughput.interval_seconds),
        )
    predicted, isl, osl, from_priors = _predicted(plan, state)
    # never plan below what was just observed: the forecast is for the next interval, and
    # capacity added now only serves after start-up
    rate = max(predicted, window.rate)
    if window.idle and rate == 0:
        reason = Reason.IDLE
    elif from_priors:
        reason = Reason.PRIOR
    else:
        reason = Reason.SCALE
    backlog = window.backlog or 0.0
    sizing = attainment_sizing.size(
        plan, model, state.attainment, rate=rate, isl=isl, osl=osl, backlog=backlog, timestamp=obs.timestamp,
        ready=observed_ready or None,
    )
    # an unknown signal is not a zero: say which the decision went without
    missing = tuple(
        f"no {what} in this window: {effect}"
        for what, value, effect in (
            ("peak rate", window.peak_rate, "the burst factor keeps what it learned"),
            ("arrival dispersion", window.arrival_dispersion, "the dispersion keeps what it learned"),
            ("backlog", window.backlog, "no backlog drain"),
            ("fraction of TTFTs over the SLA", window.ttft_miss, "the dispersion is the arrivals' count alone"),
        )
        if value is None and not window.idle
    )
    return _attainment_decision(plan, model, sizing, reason, rate, isl, osl, obs.timestamp, window, missing)


def _attainment_decision(
    plan: Plan,
    model: PerfModel,
    sizing: attainment_sizing.AttainmentSizing,
    reason: Reason,
    rate: float,
    isl: float,
    osl: float,
    timestamp: float,
    window: Optional[TrafficWindow],
    missing: tuple[str, ...] = (),
) -> Decision:
    spec = plan.spec
    inputs = sizing.inputs
    point = sizing.point
    warnings: list[str] = list(missing)
    if inputs.prefill_service_ms > spec.sla.ttft_ms:
        warnings.append(
            f"profiled TTFT at ISL {isl:.0f} is {inputs.prefill_service_ms:.1f} ms, above the SLA of {spec.sla.ttft_ms:g} ms"
        )
    if not point.feasible:
        warnings.append(
            f"no profiled decode point meets ITL {spec.sla.itl_ms / inputs.decode_slowdown:.2f} ms at context "
            f"{decode_context(isl, osl):.0f}; using the lowest-ITL point ({point.itl_ms:.2f} ms)"
        )
    extra: dict[str, tuple[Reason, ...]] = {}
    for n in sizing.replicas:
        reasons: list[Reason] = []
        if sizing.infeasible.get(n):
            reasons.append(Reason.SLA_INFEASIBLE)
        if inputs.held[n] > inputs.sized[n]:
            reasons.append(Reason.HELD)
        if inputs.backlog > 0 and n in ("prefill", "worker"):
            reasons.append(Reason.BACKLOG)
        extra[n] = tuple(reasons)
    return bound_and_budget(
        plan,
        dict(sizing.replicas),
        reason,
        timestamp,
        extra_reasons=extra,
        capacity=sizing.capacity,
        throughput=ThroughputInputs(
            observed_rate=None if window is None else window.rate,
            observed_isl=None if window is None else window.isl,
            observed_osl=None if window is None else window.osl,
            observed_ttft_ms=None if window is None else window.ttft_ms,
            observed_itl_ms=None if window is None else window.itl_ms,
            predicted_rate=rate,
            predicted_isl=isl,
            predicted_osl=osl,
            prefill_thpt_per_gpu=model.prefill.thpt_per_gpu(isl),
            decode_thpt_per_gpu=point.thpt_per_gpu,
            decode_itl_target_ms=spec.sla.itl_ms / inputs.decode_slowdown,
            decode_itl_at_point_ms=point.itl_ms,
            decode_kv_usage_at_point=point.kv_usage,
            profiled_ttft_ms=inputs.prefill_service_ms,
            correction_prefill=1.0,
            correction_decode=inputs.decode_slowdown,
            correction_enabled=False,
            sizing="attainment",
            attainment=inputs,
        ),
        warnings=tuple(warnings),
    )


def replicas_during_window(obs: Observation, state: PlannerState, pool: str) -> int:
    """Replicas serving during the window: reported workers when the source has per-worker
    series, else what the previous decision asked for (the same on a replay, which keeps a
    restarted scaler's state equal to a running one's)."""
    if pool in obs.ready_replicas:
        return int(obs.ready_replicas[pool])
    if state.last is not None and pool in state.last.pools:
        return state.last.replicas(pool)
    return 0


def _learn_queueing(plan: Plan, model: PerfModel, obs: Observation, state: PlannerState) -> None:
    cfg = plan.spec.scaling.throughput.queueing
    window = obs.traffic
    if window is None or window.requests < cfg.min_requests or window.isl is None or state.last is None:
        return
    # The replicas the previous decision asked for, not the reported workers: a restarted
    # scaler replaying Prometheus history has the former for every window, the latter for
    # none, and the factor remembers many windows (slow release).
    replicas = state.last.replicas("prefill")
    observed = queueing_factor_from_window(window, replicas, model.prefill.ttft_ms(window.isl))
    if observed is not None:
        state.queueing_factor = smooth_factor(state.queueing_factor, observed, cfg.decay, cfg.max_factor)


def capacity(
    plan: Plan,
    model: PerfModel,
    rate: float,
    isl: float,
    osl: float,
    queueing_factor: float = 1.0,
    learned: Optional[AttainmentState] = None,
) -> Decision:
    """Replicas and GPUs each pool needs for a steady `rate` (requests/s), no correction.

    With the attainment sizing, `learned` is what the scaler has learned of the traffic
    (burst, dispersion, slowdown; default: Poisson arrivals on the profiled hardware). With
    Dynamo's sizing and queueing on, `queueing_factor` is the traffic's variability."""
    if plan.spec.scaling.throughput.sizing == "attainment":
        base = learned or AttainmentState()
        fresh = AttainmentState(
            dispersion=base.dispersion,
            burst=base.burst,
            decode_slowdown=base.decode_slowdown,
            prefill_slowdown=base.prefill_slowdown,
        )
        sizing = attainment_sizing.size(plan, model, fresh, rate=rate, isl=isl, osl=osl, apply_hold=False)
        return _attainment_decision(plan, model, sizing, Reason.CAPACITY, rate, isl, osl, 0.0, None)
    return replicas_for(
        plan, model, rate=rate, isl=isl, osl=osl, reason=Reason.CAPACITY, queueing_factor=queueing_factor
    )


def replicas_for(
    plan: Plan,
    model: PerfModel,
    *,
    rate: float,
    isl: float,
    osl: float,
    reason: Reason,
    corrections: CorrectionFactors = CorrectionFactors(),
    correction_enabled: bool = False,
    queueing_factor: float = 1.0,
    timestamp: float = 0.0,
    window: Optional[TrafficWindow] = None,
) -> Decision:
    """Throughput formulas -> pool bounds -> GPU budget, with every input recorded.

    `rate` (requests/s), `isl` and `osl` (tokens) are what to size for; `corrections` scale
    the profile (recorded as enabled or not); `queueing_factor` is the traffic's variability
    for queueing-aware prefill sizing; `window`, when given, is the observed window recorded
    in the decision's inputs.
    """
    spec = plan.spec
    cf = corrections
    pools = plan.pools
    warnings: list[str] = []
    prefill_thpt = model.prefill.thpt_per_gpu(isl)
    ttft_profiled = model.prefill.ttft_ms(isl)
    itl_target = decode_itl_target(spec.sla.itl_ms, cf.decode)
    point: DecodeOperatingPoint = model.decode.best_throughput(itl_target, decode_context(isl, osl))
    infeasible: dict[str, bool] = {}
    prefill_infeasible = ttft_profiled > spec.sla.ttft_ms
    if prefill_infeasible:
        warnings.append(
            f"profiled TTFT at ISL {isl:.0f} is {ttft_profiled:.1f} ms, above the SLA of {spec.sla.ttft_ms:g} ms"
        )
    if not point.feasible:
        warnings.append(
            f"no profiled decode point meets ITL {itl_target:.2f} ms at context {decode_context(isl, osl):.0f}; "
            f"using the lowest-ITL point ({point.itl_ms:.2f} ms)"
        )

    raw: dict[str, float] = {}
    capacity_per_replica: dict[str, float] = {}
    queueing_on = spec.scaling.throughput.queueing.enabled and spec.mode == "disagg"
    queueing_replicas: Optional[float] = None
    if spec.mode == "disagg":
        gp, gd = pools["prefill"].gpus_per_replica, pools["decode"].gpus_per_replica
        raw["prefill"] = prefill_replicas(rate, isl, prefill_thpt, gp, cf.prefill)
        if queueing_on:
            # The profile's TTFT is one engine's (one replica's) service time, whatever its GPUs.
            queueing_replicas = prefill_replicas_for_ttft(
                rate, ttft_profiled * min(1.0, cf.prefill), spec.sla.ttft_ms, queueing_factor
            )
            if queueing_replicas is not None:
                raw["prefill"] = max(raw["prefill"], queueing_replicas)
        raw["decode"] = decode_replicas(rate, osl, point, gd)
        capacity_per_replica["prefill"] = prefill_thpt * gp
        capacity_per_replica["decode"] = point.thpt_per_gpu * gd
        infeasible = {"prefill": prefill_infeasible, "decode": not point.feasible}
    else:
        gw = pools["worker"].gpus_per_replica
        raw["worker"] = agg_replicas(rate, isl, osl, prefill_thpt, point, gw)
        infeasible = {"worker": prefill_infeasible or not point.feasible}

    requested = {n: ceil_replicas(v) for n, v in raw.items()}
    return bound_and_budget(
        plan,
        requested,
        reason,
        timestamp,
        extra_reasons={n: (Reason.SLA_INFEASIBLE,) if infeasible.get(n) else () for n in requested},
        capacity=capacity_per_replica,
        throughput=ThroughputInputs(
            observed_rate=None if window is None else window.rate,
            observed_isl=None if window is None else window.isl,
            observed_osl=None if window is None else window.osl,
            observed_ttft_ms=None if window is None else window.ttft_ms,
            observed_itl_ms=None if window is None else window.itl_ms,
            predicted_rate=rate,
            predicted_isl=isl,
            predicted_osl=osl,
            prefill_thpt_per_gpu=prefill_thpt,
            decode_thpt_per_gpu=point.thpt_per_gpu,
            decode_itl_target_ms=itl_target,
            decode_itl_at_point_ms=point.itl_ms,
            decode_kv_usage_at_point=point.kv_usage,
            profiled_ttft_ms=ttft_profiled,
            correction_prefill=cf.prefill,
            correction_decode=cf.decode,
            correction_enabled=correction_enabled,
            queueing_factor=queueing_factor if queueing_on else None,
            prefill_queueing_replicas=queueing_replicas,
        ),
        warnings=tuple(warnings),
    )

