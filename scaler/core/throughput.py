"""Throughput-based replica formulas and correction factors (Dynamo G2 semantics, reference §1).

All rates are requests per second; token throughputs are tokens/s/GPU from the profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from scaler.core.interpolation import DecodeOperatingPoint, PerfModel
from scaler.core.observations import TrafficWindow

# ceil() on a value that is an integer up to float noise must not add a replica.
_EPS = 1e-9
# More replicas than any pool can have (plan maxReplicas is far below): the cap that keeps
# ceil() of an overflowing product (inf) an int; bounds and budget then apply as usual.
MAX_REPLICAS = 1_000_000_000
# Correction factors (observed / profiled latency) are bounded to [1/10, 10]. Below a tenth,
# the profile is off by an order of magnitude (or the latency series is broken), and the
# scaler does not size prefill below a tenth of what the profile says; above 10x the engine
# is not slower hardware but queueing or a fault, which resizing on the profile cannot fix
# (the attainment sizing bounds its decode slowdown at 10 too). Unbounded, a TTFT of 1e-300 s
# drove prefill to its minimum and 1e300 s every pool to the budget.
MIN_CORRECTION = 0.1
MAX_CORRECTION = 10.0


def ceil_replicas(x: float) -> int:
    """Whole replicas for a fractional need: never raises. NaN or negative -> 0, +inf or
    more than MAX_REPLICAS -> MAX_REPLICAS (clamped to the pool's maximum afterwards)."""
    if not x > 0:  # NaN, zero, negative
        return 0
    if x >= MAX_REPLICAS:
        return MAX_REPLICAS
    return max(0, math.ceil(x - _EPS))


def bounded_correction(factor: float) -> float:
    """A correction factor within [MIN_CORRECTION, MAX_CORRECTION]; NaN -> 1 (no correction)."""
    if math.isnan(factor):
        return 1.0
    return min(max(factor, MIN_CORRECTION), MAX_CORRECTION)


def prefill_replicas(
    rate: float, isl: float, thpt_per_gpu: float, gpus_per_replica: int, correction: float = 1.0
) -> float:
    """Fractional prefill replicas: rate x ISL x min(1, cf_p) / thpt_per_gpu / g_p.

    The factor is clamped at 1 as in Dynamo: prefill runs at batch 1, so a TTFT below the
    profile (prefix-cache hits) means spare capacity, while a TTFT above it is queueing,
    which more throughput per replica would not fix.
    """
    if thpt_per_gpu <= 0:
        return 0.0
    return rate * isl * min(1.0, correction) / thpt_per_gpu / gpus_per_replica


def decode_itl_target(itl_sla_ms: float, correction: float) -> float:
    """The ITL to look up in the profile: the SLA divided by the decode correction factor.

    If the engine runs twice as slow as profiled, aim for an operating point with half
    the ITL. A non-positive factor is meaningless and leaves the SLA as it is.
    """
    return itl_sla_ms / correction if correction > 0 else itl_sla_ms


def decode_context(isl: float, osl: float) -> float:
    """Mean context during decode: the prompt plus half the generated tokens."""
    return isl + osl / 2.0


def decode_replicas(rate: float, osl: float, point: DecodeOperatingPoint, gpus_per_replica: int) -> float:
    """Fractional decode replicas: rate x OSL / best_thpt_per_gpu / g_d."""
    if point.thpt_per_gpu <= 0:
        return 0.0
    return rate * osl / point.thpt_per_gpu / gpus_per_replica


@dataclass(frozen=True)
class CorrectionFactors:
    prefill: float = 1.0
    decode: float = 1.0


def update_corrections(
    model: PerfModel,
    window: TrafficWindow,
    decode_workers: int,
    previous: CorrectionFactors,
) -> CorrectionFactors:
    """Observed / profiled latency, as in Dynamo: recomputed each interval, no smoothing.

    cf_p = observed TTFT / profiled TTFT(observed ISL).
    cf_d = observed ITL / profiled ITL(concurrency, context), with the per-worker
    concurrency from Little's law: arrivals/s x mean request duration / decode workers.
    A factor that cannot be computed (idle window, missing mean, no workers) keeps its
    previous value; one that can is bounded to [MIN_CORRECTION, MAX_CORRECTION].
    """
    cf_p, cf_d = previous.prefill, previous.decode
    # Means <= 0 say nothing (a negative mean once gave cf_p = -8.25); see MIN_CORRECTION.
    ttft, itl, isl, osl = _positive(window.ttft_ms), _positive(window.itl_ms), _positive(window.isl), _positive(window.osl)
    duration = _positive(window.request_duration_s)
    if window.requests > 0 and ttft is not None and isl is not None:
        profiled = model.prefill.ttft_ms(isl)
        if profiled > 0:
            cf_p = bounded_correction(ttft / profiled)
    if window.requests > 0 and decode_workers > 0 and itl and isl and osl and duration:
        concurrency = window.rate * duration / decode_workers
        context = decode_context(isl, osl)
        if math.isfinite(concurrency) and math.isfinite(context):
            profiled = model.decode.itl_at_concurrency(concurrency, context)
            if profiled > 0:
                cf_d = bounded_correction(itl / profiled)
    return CorrectionFactors(prefill=cf_p, decode=cf_d)


def _positive(value: Optional[float]) -> Optional[float]:
    """The value when it is a finite positive number, else None."""
    return value if value is not None and math.isfinite(value) and value > 0 else None


def agg_replicas(
    rate: float,
    isl: float,
    osl: float,
    prefill_thpt_per_gpu: float,
    point: DecodeOperatingPoint,
    gpus_per_replica: int,
) -> float:
    """Aggregated workers time-share prefill and decode: GPU-seconds of each per second.

    An approximation (no interference model): the fraction of a GPU that prefill needs
    plus the fraction decode needs at the chosen ITL operating point.
    """
    prefill_gpus = rate * isl / prefill_thpt_per_gpu if prefill_thpt_per_gpu > 0 else 0.0
    decode_gpus = rate * osl / point.thpt_per_gpu if point.thpt_per_gpu > 0 else 0.0
    return (prefill_gpus + decode_gpus) / gpus_per_replica


def profiled_ttft(model: PerfModel, isl: float) -> Optional[float]:
    return model.prefill.ttft_ms(isl)


# -- queueing-aware prefill sizing -------------------------------------------------------------
#
# A prefill replica serves one request at a time for S = profiled TTFT(ISL). Kingman's
# approximation gives its mean queueing delay as V * rho/(1-rho) * S/2, with rho the
# replica's utilisation and V = ca^2 + cs^2 the traffic's variability: V = 1 for Poisson
# arrivals and fixed service (exactly M/D/1), far more for the bursty arrivals of real LLM
# traffic. The throughput formula alone keeps rho <= 1, which holds throughput but not
# latency; this keeps the mean TTFT within the SLA.


def queueing_delay_ms(rho: float, service_ms: float, factor: float) -> float:
    """Mean queueing delay at utilisation `rho` (M/D/1 when factor == 1)."""
    if rho >= 1:
        return math.inf
    return factor * rho / (1.0 - rho) * service_ms / 2.0


def queueing_factor_from_window(
    window: TrafficWindow, prefill_replicas: int, service_ms: float
) -> Optional[float]:
    """The variability factor one window implies: observed queueing delay / M/D/1 delay.

    None when the window cannot say: no requests or TTFT, no replicas, or a saturated
    window (rho >= 1: the queue was growing, not in the steady state the formula assumes).
    """
    if window.requests <= 0 or window.ttft_ms is None or prefill_replicas <= 0 or service_ms <= 0:
        return None
    rho = window.rate * service_ms / 1000.0 / prefill_replicas
    if rho <= 0 or rho >= 1:
        return None
    md1 = queueing_delay_ms(rho, service_ms, 1.0)
    return max(window.ttft_ms - service_ms, 0.0) / md1


def smooth_factor(previous: float, observed: float, decay: float, max_factor: float) -> float:
    """Fast attack, slow release, in log space (the factor spans orders of magnitude).

    A window that shows burstier traffic raises the factor at once; calmer windows lower it
    by the `decay` weight per interval. Bursts recur, and a single calm window right after
    a scale-up (when queueing has just been fixed) must not undo it. Clamped to
    [1, max_factor]: below M/D/1 is not trusted (prefix-cache hits shorten TTFT, which the
    correction factor already accounts for).
    """
    observed = min(max(observed, 1.0), max_factor)
    if observed >= previous:
        return observed
    return math.exp((1.0 - decay) * math.log(previous) + decay * math.log(observed))


def prefill_replicas_for_ttft(
    rate: float, service_ms: float, ttft_sla_ms: float, factor: float
) -> Optional[float]:
    """Fractional prefill replicas that keep the mean queueing delay within the SLA's slack.

    The delay allowed is W = SLA - S, but at least S/2: when the SLA is at or below the
    service time no replica count meets it (the SLA-infeasible warning says so), and
    queueing is still kept to half a service time rather than unbounded or pinned at the
    pool maximum. The floor also keeps replicas monotone in the SLA. Solving
    V*rho/(1-rho)*S/2 <= W for rho gives rho <= a/(1+a) with a = 2W/(V*S);
    replicas = rate*S/rho. None when idle.
    """
    if rate <= 0 or service_ms <= 0:
        return None
    wait_ms = max(ttft_sla_ms - service_ms, service_ms / 2.0)
    a = 2.0 * wait_ms / (factor * service_ms)
    return rate * service_ms / 1000.0 * (1.0 + a) / a
