"""Throughput-based replica formulas and correction factors (Dynamo G2 semantics, reference §1).

All rates are requests per second; token throughputs are tokens/s/GPU from the profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .interpolation import DecodeOperatingPoint, PerfModel
from .observations import TrafficWindow

# ceil() on a value that is an integer up to float noise must not add a replica.
_EPS = 1e-9


def ceil_replicas(x: float) -> int:
    return max(0, math.ceil(x - _EPS))


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
    previous value.
    """
    cf_p, cf_d = previous.prefill, previous.decode
    if window.requests > 0 and window.ttft_ms and window.isl:
        profiled = model.prefill.ttft_ms(window.isl)
        if profiled > 0:
            cf_p = window.ttft_ms / profiled
    if (
        window.requests > 0
        and decode_workers > 0
        and window.itl_ms
        and window.isl
        and window.osl
        and window.request_duration_s
    ):
        concurrency = window.rate * window.request_duration_s / decode_workers
        profiled = model.decode.itl_at_concurrency(concurrency, decode_context(window.isl, window.osl))
        if profiled > 0:
            cf_d = window.itl_ms / profiled
    return CorrectionFactors(prefill=cf_p, decode=cf_d)


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
