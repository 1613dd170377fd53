"""The default throughput sizing (`sizing: attainment`): replicas for a per-request SLA. Pure.

One throughput tick, given the predicted rate/ISL/OSL and the window just observed:

1. **Learn** from the window (the burst and the prefill pace with a fast attack and slow
   release: a window that shows worse traffic counts at once, calmer ones by 20% per
   interval, so a burst is remembered and one calm window right after a scale-up does not
   undo it):
   - `burst`: the window's peak one-minute rate over its mean. Intervals are minutes long;
     the bursts that queue requests are shorter, and sizing for the mean hides them.
   - `dispersion` V of the prefill queue (Allen-Cunneen's ca^2 + cs^2): the index of
     dispersion of the window's arrival counts (counted by the edge; ~ ca^2) plus 1 for the
     spread of prompt lengths. A property of the traffic, estimated: the mean of the last
     MEMORY windows' values, not the worst (each window's is a ratio of a variance of six
     counts to their mean, scattered widely both ways; the burst keeps its fast attack).
   - `prefill_slowdown`: the pace S / profiled TTFT in windows whose queue was small
     (Erlang C < 5%), S solving S + W(S) = the mean TTFT, W the model's mean wait at the
     window's dispersion on the replicas that served all of it (the smaller of the last two
     asks). A constant of the hardware and the prompt mix, so the mean of the last MEMORY
     windows' (in log space), as the decode slowdown; but a window just closed that shows a
     slower pace counts in full for the next decision (the interval right after it), and
     only for that one.
   - `decode_slowdown`: observed / profiled ITL at the concurrency each decode worker
     carried (Little's law), the hardware's distance from its profile: a constant, so the
     mean of the last MEMORY windows' (in log space), not the worst window's.
2. **Forecast** the rate the fleet must carry until the next decision takes effect: the
   larger of the prediction and the last window (a forecast never sizes below what was just
   seen), times `burst`.
3. **Size** (scaler.core.attainment): prefill on the Erlang-C waiting-time tail with the
   learned V against the TTFT slack, plus what drains the observed backlog within one
   interval; decode on the quantile of concurrent sequences at the ITL target / slowdown.
   Each pool gets half the miss budget 1 - spec.sla.attainment.
4. **Hold**: a pool shrinks only to what every sizing of the last startupSeconds + interval
   agreed on (a replica given up takes that long to come back), but never holds more than
   the sizing at the rate's upper quantile at the attainment level needs (log-normal, with
   the log-sd the rate has shown from window to window), unless a backlog is waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional

from scipy.stats import norm

from scaler.core.attainment import (
    POISSON_DISPERSION,
    DecodeSizing,
    decode_replicas,
    dispersion_from_misses,
    erlang_c,
    prefill_replicas,
    service_from_outcome,
    service_from_ttft,
    wait_exceeds,
)
from scaler.core.interpolation import DecodeOperatingPoint, PerfModel
from scaler.core.observations import TrafficWindow
from scaler.core.plan import Plan
from scaler.core.throughput import ceil_replicas, decode_context

# A learned value comes down by this weight per calmer window (in log space).
DECAY = 0.2
# Windows a mean of the hardware or of the traffic remembers (the decode slowdown, the
# arrivals' dispersion, the rate's window-to-window spread): 24 minutes at the default 180 s
# interval, fewer than the 32 a restarted scaler replays.
MEMORY = 8
# Fewer requests than this in a window say nothing about tails or dispersion.
MIN_REQUESTS = 20
MAX_DISPERSION = 1000.0
MAX_BURST = 50.0
# Below this probability of waiting (Erlang C) a window's queue is negligible: its mean TTFT
# measures the engine's pace (the prefill slowdown).
QUIET_QUEUE = 0.05
# Squared coefficient of variation of prefill service times, added to the counted arrival
# dispersion: prompt lengths vary about as widely as an exponential's (cs^2 = 1).
SERVICE_SCV = 1.0
# A queue-free window's TTFT above this many times the profile is a backlog, not hardware.
MAX_PREFILL_SLOWDOWN = 3.0


@dataclass
class AttainmentState:
    """What the attainment sizing has learned; part of PlannerState, rebuilt by replay."""

    dispersion: float = POISSON_DISPERSION
    burst: float = 1.0
    decode_slowdown: float = 1.0
    prefill_slowdown: float = 1.0           # observed TTFT less the modelled wait / profiled TTFT
    # log(observed / profiled ITL) of the last MEMORY windows that measured it (decode_slowdown
    # is their mean)
    decode_ratios: list[float] = field(default_factory=list)
    # log(pace / profiled TTFT) of the last MEMORY windows that measured it (prefill_slowdown:
    # their mean, or the window just closed's if larger)
    prefill_ratios: list[float] = field(default_factory=list)
    # V (counted dispersion + SERVICE_SCV) of the last MEMORY windows that counted it
    # (dispersion is their mean)
    dispersions: list[float] = field(default_factory=list)
    # start-up as observed from readiness: pool -> (when more replicas were asked for, how
    # many), and pool -> the shortest start-up consistent with what was seen (seconds)
    pending: dict[str, tuple[float, int]] = field(default_factory=dict)
    startup_seen: dict[str, float] = field(default_factory=dict)
    # recent sizings (timestamp, pool -> replicas) for the scale-down hold
    recent: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    # when this state's first sizing was made: before it, the hold knows nothing of what was
    # asked for
    sizing_since: Optional[float] = None
    # what the tick before the last asked for, per pool: with the last ask, the replicas sure
    # to have served all through the window just closed (one asked for at its start serves
    # only after start-up)
    asked_before: dict[str, int] = field(default_factory=dict)
    # how much the rate moves from one window to the next: the last window's rate and
    # log(rate / previous rate)^2 of the last MEMORY windows
    last_rate: Optional[float] = None
    rate_changes: list[float] = field(default_factory=list)

    @property
    def rate_change_var(self) -> Optional[float]:
        """Mean squared log change of the rate between windows (None: none seen yet)."""
        return sum(self.rate_changes) / len(self.rate_changes) if self.rate_changes else None


@dataclass(frozen=True)
class AttainmentInputs:
    """What the attainment sizing used, recorded in the Decision (explain, logs)."""

    target: float
    planned_rate: float
    burst_factor: float
    dispersion: float
    backlog: float
    prefill_service_ms: float            # profiled TTFT at the ISL x the learned slowdown
    prefill_slowdown: float
    prefill_wait_tail: Optional[float]   # predicted P(wait > TTFT slack) at the sized count
    decode_slowdown: float
    decode_sequences_mean: float
    decode_sequences_quantile: float
    decode_sequences_per_replica: float
    sized: Mapping[str, int]             # before the hold
    held: Mapping[str, int]              # after the hold (what goes to bounds and budget)
    hold_seconds: Mapping[str, float]    # start-up (configured or seen, the longer) + interval
    rate_change_sd: Optional[float] = None  # log-sd of the rate from window to window
    hold_ceiling: Optional[Mapping[str, int]] = None  # the most the hold keeps (the rate's upper quantile)

    def summary(self) -> str:
        """One line for `explain` and `capacity`."""
        tail = "-" if self.prefill_wait_tail is None else f"{self.prefill_wait_tail:.2%}"
        return (
            f"attainment {self.target:.2%}: planned rate {self.planned_rate:.2f} req/s (burst x{self.burst_factor:.2f}), "
            f"dispersion {self.dispersion:.1f}, backlog {self.backlog:.0f}; prefill service {self.prefill_service_ms:.1f} ms "
            f"(slowdown x{self.prefill_slowdown:.2f}), predicted waits past the TTFT slack {tail}; decode sequences "
            f"{self.decode_sequences_mean:.0f} mean, {self.decode_sequences_quantile:.0f} sized for, "
            f"{self.decode_sequences_per_replica:.0f} per replica (slowdown x{self.decode_slowdown:.2f}); "
            "scale-down held " + ", ".join(f"{p} {s:.0f} s" for p, s in self.hold_seconds.items())
            + ("" if self.hold_ceiling is None else " at most to " + ", ".join(
                f"{p} {n}" for p, n in self.hold_ceiling.items()))
        )


@dataclass(frozen=True)
class AttainmentSizing:
    replicas: dict[str, int]             # after the hold, before bounds and budget
    infeasible: dict[str, bool]
    capacity: dict[str, float]           # tokens/s one replica serves at the SLA
    point: DecodeOperatingPoint
    inputs: AttainmentInputs


def smooth(previous: float, observed: float, lo: float, hi: float, decay: float = DECAY) -> float:
    """Fast attack, slow release in log space, clamped to [lo, hi]."""
    observed = min(max(observed, lo), hi)
    if observed >= previous:
        return observed
    return math.exp((1.0 - decay) * math.log(previous) + decay * math.log(observed))


def remember(values: list[float], value: float, memory: int = MEMORY) -> None:
    """Append `value`, keeping the newest `memory` values. A finite memory, shorter than the
    warm-up a restarted scaler replays, so the restarted one's mean is the same number."""
    values.append(value)
    del values[:-memory]


def learn(
    state: AttainmentState,
    plan: Plan,
    model: PerfModel,
    window: TrafficWindow,
    ready: Mapping[str, int],
) -> None:
    """Update burst, dispersion, the forecast's error and the slowdowns from one window."""
    # the window just closed's pace counts in full for one decision only
    if state.prefill_ratios:
        state.prefill_slowdown = math.exp(sum(state.prefill_ratios) / len(state.prefill_ratios))
    if window.requests < MIN_REQUESTS:
        return
    rate = window.rate
    if state.last_rate is not None and state.last_rate > 0:
        remember(state.rate_changes, math.log(rate / state.last_rate) ** 2)
    state.last_rate = rate
    if window.peak_rate is not None and rate > 0:
        state.burst = smooth(state.burst, window.peak_rate / rate, 1.0, MAX_BURST)
    prefill_pool = "prefill" if plan.spec.mode == "disagg" else "worker"
    # the mean wait is modelled on the servers of the whole window: a scale-up asked for at
    # its start served only after start-up, so the smaller of the two asks
    servers = int(ready.get(prefill_pool, 0))
    if prefill_pool in state.asked_before:
        servers = min(servers, state.asked_before[prefill_pool])
    if window.ttft_ms is not None and window.isl is not None and servers > 0:
        profiled = model.prefill.ttft_ms(window.isl) / 1000.0
        # the queue saw the window's peak rate, not its mean
        peak = window.peak_rate if window.peak_rate is not None else rate
        ratio: Optional[float] = None
        if profiled > 0 and erlang_c(servers, peak * profiled * state.prefill_slowdown) < QUIET_QUEUE:
            # few waited: the mean TTFT is the service time plus the model's mean wait at the
            # window's own dispersion (clumped arrivals wait even at a low Erlang C), so the
            # pace is what is left once that wait is taken out (within reason: a window far
            # above the profile carried a backlog from before, not a slower engine)
            v = window.arrival_dispersion + SERVICE_SCV if window.arrival_dispersion is not None else state.dispersion
            pace = service_from_ttft(servers, rate, window.ttft_ms / 1000.0, v, 0.5 * profiled)
            ratio = (window.ttft_ms / 1000.0 if pace is None else pace) / profiled
        elif profiled > 0 and window.ttft_miss is not None:
            # a queue that was not negligible: the mean alone cannot tell a slower engine from
            # clumped arrivals, the mean and the miss fraction together can (the pace of
            # loaded windows, which a well-sized pool always is, was never learned before)
            pace = service_from_outcome(
                servers, rate, peak, window.ttft_ms / 1000.0, plan.bucket_bound_ms("ttft") / 1000.0,
                window.ttft_miss, window.requests, 0.5 * profiled, MAX_PREFILL_SLOWDOWN * profiled,
                profiled * state.prefill_slowdown,
            )
            ratio = None if pace is None else pace / profiled
        if ratio is not None and 0 < ratio <= MAX_PREFILL_SLOWDOWN:
            # the pace of the hardware and the prompt mix: the mean of the last windows'
            # (they scatter both ways), unless the window just closed was slower; then it
            # holds for the interval right after it, whose traffic is most like its own,
            # and is forgotten one window later unless the next shows it again
            latest = math.log(max(ratio, 0.5))
            remember(state.prefill_ratios, latest)
            mean = sum(state.prefill_ratios) / len(state.prefill_ratios)
            state.prefill_slowdown = math.exp(max(mean, latest))
    _learn_dispersion(state, plan, model, window, servers)
    decode_pool = "decode" if plan.spec.mode == "disagg" else "worker"
    workers = int(ready.get(decode_pool, 0))
    if (
        window.itl_ms is not None
        and window.isl is not None
        and window.osl is not None
        and window.request_duration_s is not None
        and workers > 0
    ):
        concurrency = rate * window.request_duration_s / workers
        profiled = model.decode.itl_at_concurrency(concurrency, decode_context(window.isl, window.osl))
        if profiled > 0:
            # a constant of the hardware: its windows scatter around it both ways, so it is
            # their mean (in log space, clamped), not the worst window's
            remember(state.decode_ratios, math.log(min(max(window.itl_ms / profiled, 0.25), 10.0)))
            state.decode_slowdown = math.exp(sum(state.decode_ratios) / len(state.decode_ratios))


def _learn_dispersion(state: AttainmentState, plan: Plan, model: PerfModel, window: TrafficWindow, servers: int) -> None:
    """The window's V into the mean of the last MEMORY windows'.

    Allen-Cunneen: V = ca^2 + cs^2, the arrivals' clumping as the edge counted it plus the
    spread of prompt lengths (exponential-like service, cs^2 = 1). One window's count is
    Allan's variance of six 30-s bins over their mean: a noisy, right-skewed estimate whose
    unbiased pooled estimate is the plain mean of the windows' (not the largest of them).

    Where the window measured its fraction of TTFTs over the SLA (`ttft_miss`), V is
    calibrated on that outcome: the V at which the tail formula gives that fraction on the
    window's servers, pace and peak rate (what the sizing uses). The 30-s count overstates
    the clumping at the seconds a prefill queue builds over (2-6x on the shared traces), so
    a window within the pool's miss budget sheds that margin; a window over the budget
    never lowers V below its count (its queue was a transient: a rate jump, a backlog, which
    the stationary tail does not describe), and raises it where the measured V is higher.
    Nor is margin shed where the rate's usual move from one window to the next (its learned
    log-sd) would take the window's peak load past its servers: the stationary tail the
    calibration inverts does not describe the next window there (burst-dominated traffic).
    A window without a miss only bounds V from above. Without a count (30-s scrapes), the
    learned V stands in for it. The mean of the last MEMORY values is what a restarted
    scaler's replay rebuilds.
    """
    counted = None if window.arrival_dispersion is None else window.arrival_dispersion + SERVICE_SCV
    value = counted
    if window.ttft_miss is not None and window.isl is not None:
        service = model.prefill.ttft_ms(window.isl) * state.prefill_slowdown / 1000.0
        # the fraction is counted above the histogram's bucket at the SLA (ttftBucketMs when
        # the SLA is not a bucket bound): the wait past that bucket's slack
        bound_ms = plan.bucket_bound_ms("ttft")
        slack = bound_ms / 1000.0 - service
        peak = window.peak_rate if window.peak_rate is not None else window.rate
        measured = dispersion_from_misses(servers, peak, service, slack, window.ttft_miss, window.requests)
        if measured is not None:
            budget = (1.0 - plan.spec.sla.attainment) / 2.0
            # what the window is measured against: its count, or (none: 30-s scrapes leave
            # the 30-s bins without a value) what was learned
            reference = counted if counted is not None else state.dispersion
            # the stationary tail describes the next window only where the rate's usual move
            # from one window to the next still fits the window's servers
            volatile = state.rate_change_var is not None and (
                peak * service * math.exp(math.sqrt(state.rate_change_var)) >= servers)
            if window.ttft_miss > budget or volatile:
                value = max(measured, reference)
            elif window.ttft_miss > 0:
                value = measured
            else:
                value = min(measured, reference)
    if value is not None:
        remember(state.dispersions, min(max(value, 1.0), MAX_DISPERSION))
        state.dispersion = sum(state.dispersions) / len(state.dispersions)


def hold(
    state: AttainmentState,
    timestamp: float,
    sized: Mapping[str, int],
    hold_seconds: Mapping[str, float],
    ready: Optional[Mapping[str, int]] = None,
) -> dict[str, int]:
    """Shrink a pool only to what every sizing of its last hold_seconds agreed on.

    Where the sizings seen do not yet span a pool's hold (a scaler started against a running
    deployment, with no history to replay), the replicas observed `ready` stand in for the
    sizings before the first: they were asked for by someone within the span, for all the
    scaler knows. Entries older than the longest hold are dropped, so the state stays bounded.
    """
    longest = max(hold_seconds.values(), default=0.0)
    if state.sizing_since is None:
        state.sizing_since = timestamp
    state.recent = [(t, r) for t, r in state.recent if timestamp - longest < t <= timestamp]
    state.recent.append((timestamp, dict(sized)))
    out: dict[str, int] = {}
    for pool, want in sized.items():
        start = timestamp - hold_seconds.get(pool, 0.0)
        kept = [want] + [r.get(pool, 0) for t, r in state.recent if t > start]
        if ready is not None and pool in ready and state.sizing_since > start:
            kept.append(int(ready[pool]))
        out[pool] = max(kept)
    return out


def observe_startup(
    state: AttainmentState,
    timestamp: float,
    ready: Mapping[str, int],
    asked: Mapping[str, int],
    asked_at: float,
    interval: float,
) -> None:
    """Learn each pool's start-up from readiness: when the replicas asked for at t0 are all
    ready in the window ending at t1, start-up took at most t1 - t0 and (the ready count is
    seen once a window) at least t1 - t0 - interval; the lower bound is kept (the longest
    seen). `ready` holds only counts the edge observed, never guesses."""
    for pool, count in ready.items():
        waiting = state.pending.get(pool)
        if waiting is not None and count >= waiting[1]:
            seen = max(timestamp - waiting[0] - interval, 0.0)
            state.startup_seen[pool] = max(seen, state.startup_seen.get(pool, 0.0))
            del state.pending[pool]
    for pool, want in asked.items():
        if pool in ready and want > ready[pool] and pool not in state.pending:
            state.pending[pool] = (asked_at, want)
        elif pool in ready and want <= ready[pool]:
            state.pending.pop(pool, None)


def hold_seconds(plan: Plan, state: Optional[AttainmentState] = None) -> dict[str, float]:
    """Start-up (configured, or longer where readiness showed it) + one interval, per pool."""
    interval = float(plan.spec.scaling.throughput.interval_seconds)
    seen = {} if state is None else state.startup_seen
    return {
        name: max(float(pool.startup_seconds), seen.get(name, 0.0)) + interval for name, pool in plan.pools.items()
    }


def size(
    plan: Plan,
    model: PerfModel,
    state: AttainmentState,
    *,
    rate: float,
    isl: float,
    osl: float,
    backlog: float = 0.0,
    timestamp: float = 0.0,
    apply_hold: bool = True,
    ready: Optional[Mapping[str, int]] = None,
) -> AttainmentSizing:
    """Replicas per pool for the plan's attainment target (before bounds and budget).
    `ready`: replicas observed ready (only counts the edge saw), for the hold's start."""
    spec = plan.spec
    miss = (1.0 - spec.sla.attainment) / 2.0
    planned = max(rate, 0.0) * state.burst
    service_ms = model.prefill.ttft_ms(isl) * state.prefill_slowdown
    service = service_ms / 1000.0
    slack = spec.sla.ttft_ms / 1000.0 - service
    drain = float(spec.scaling.throughput.interval_seconds)
    dispersion = state.dispersion

    itl_target = spec.sla.itl_ms / state.decode_slowdown
    context = decode_context(isl, osl)
    point = model.decode.most_loaded_within(itl_target, context)
    pools = plan.pools
    capacity: dict[str, float] = {}

    def counts(at: float) -> tuple[dict[str, int], int, DecodeSizing]:
        p = prefill_replicas(at, service, slack, miss, dispersion, backlog=backlog, drain_seconds=drain)
        d = _decode(model, at, osl, context, point, state.decode_slowdown, miss)
        if spec.mode == "disagg":
            return {"prefill": p, "decode": ceil_replicas(d.replicas)}, p, d
        # one engine does both: the prefill queue's servers plus the decode sequences' share
        return {"worker": ceil_replicas(p + d.replicas) if at > 0 or backlog > 0 else 0}, p, d

    sized, prefill_count, dec = counts(planned)
    if spec.mode == "disagg":
        capacity["prefill"] = model.prefill.thpt_per_gpu(isl) * pools["prefill"].gpus_per_replica
        capacity["decode"] = point.thpt_per_gpu * pools["decode"].gpus_per_replica
        infeasible = {"prefill": service_ms > spec.sla.ttft_ms, "decode": not point.feasible}
    else:
        infeasible = {"worker": service_ms > spec.sla.ttft_ms or not point.feasible}
    final = dict(sized)
    ceiling: Optional[dict[str, int]] = None
    if apply_hold:
        final = hold(state, timestamp, sized, hold_seconds(plan, state), ready)
        if state.rate_change_var is not None and backlog <= 0:
            # The hold keeps capacity a returning load would need before a new replica is up;
            # it need not keep more than the rate's upper quantile at the attainment level
            # (log-normal, with the spread the rate has shown window to window) needs. With
            # a backlog still waiting nothing is given up.
            z = float(norm.ppf(spec.sla.attainment))
            ceiling, _, _ = counts(planned * math.exp(z * math.sqrt(state.rate_change_var)))
            final = {p: max(sized[p], min(final[p], ceiling[p])) for p in final}
    tail: Optional[float] = None
    if planned > 0 and prefill_count > 0:
        tail = wait_exceeds(prefill_count, planned, service, dispersion, max(slack, service / 2.0))
    return AttainmentSizing(
        replicas=final,
        infeasible=infeasible,
        capacity=capacity,
        point=point,
        inputs=AttainmentInputs(
            target=spec.sla.attainment,
            planned_rate=planned,
            burst_factor=state.burst,
            dispersion=dispersion,
            backlog=backlog,
            prefill_service_ms=service_ms,
            prefill_slowdown=state.prefill_slowdown,
            prefill_wait_tail=tail,
            decode_slowdown=state.decode_slowdown,
            decode_sequences_mean=dec.mean_sequences,
            decode_sequences_quantile=dec.quantile_sequences,
            decode_sequences_per_replica=dec.sequences_per_replica,
            sized=dict(sized),
            held=dict(final),
            hold_seconds=hold_seconds(plan, state),
            rate_change_sd=None if state.rate_change_var is None else math.sqrt(state.rate_change_var),
            hold_ceiling=ceiling,
        ),
    )


def _decode(
    model: PerfModel, rate: float, osl: float, context: float, point: DecodeOperatingPoint, slowdown: float, miss: float
) -> DecodeSizing:
    # A replica at the point's KV usage holds kv x max_kv_tokens / context sequences, on the
    # real hardware each at ITL x slowdown; one engine's KV cache, whatever its GPUs.
    per_replica = point.kv_usage * model.decode.max_kv_tokens / context if context > 0 else 0.0
    return decode_replicas(rate, osl, point.itl_ms * slowdown, per_replica, miss)
