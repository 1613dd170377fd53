"""Replicas for a per-request SLA attainment target: queueing tails, not means. Pure.

`spec.sla.attainment` (say 0.99) is the fraction of requests that must meet both their TTFT
and their mean ITL. The miss budget 1 - attainment is split evenly between the two (a union
bound: a request misses "both" when it misses either), and each pool is sized on a tail:

- **Prefill** is a c-server queue: each replica prefills one request at a time for S seconds
  (the profiled TTFT at the predicted ISL). A request meets its TTFT when its wait W stays
  within the slack SLA - S. The waiting-time tail is Erlang C's exponential with the
  Allen-Cunneen dispersion V = ca^2 + cs^2 (V = 2 for Poisson arrivals and exponential
  service, exactly M/M/c; bursty LLM traffic is far above):

      P(W > t) = C(c, a) * exp(-2 (c/S - rate) t / V),   a = rate * S (Erlangs)

  and the pool gets the fewest c with P(W > slack) <= its miss budget. V is counted from the
  traffic (the index of dispersion of its arrivals, scaler.core.attainment_sizing), so the
  formula is calibrated on the traffic it sizes for.
- **Decode** is an infinite-server system in concurrent sequences: N = rate x D requests in
  flight, D = OSL x ITL their decode time. N fluctuates (Poisson: variance = mean, times a
  dispersion for burstier traffic), and every replica holds at most n_max sequences at the
  ITL target (the profile's operating point: n_max = tokens/s per replica x ITL). The pool
  gets enough replicas for N's (1 - miss) quantile, not its mean: Dynamo's formula is the
  special case z = 0.
- **Backlog**: requests already waiting when the window closed need c/S - rate of spare
  service for as long as it takes to drain; sized to drain by `drain_seconds`.

References: Erlang C and its M/G/c extension (Allen-Cunneen; Kingman's heavy-traffic
exponential waiting time), Little's law, M/G/infinity occupancy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from scipy.stats import norm

# Below this many Erlangs of slack a queue is unstable in practice: never size at rho = 1.
_MIN_SPARE_ERLANGS = 1e-6
# Dispersion of Poisson arrivals with exponential service (M/M/c): the prior before traffic.
POISSON_DISPERSION = 2.0


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c with `offered` = rate x S Erlangs.

    1.0 at or above saturation. Computed through Erlang B's stable recursion.
    """
    if offered <= 0:
        return 0.0
    if servers <= offered:
        return 1.0
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    rho = offered / servers
    return b / (1.0 - rho * (1.0 - b))


def wait_exceeds(servers: int, rate: float, service_seconds: float, dispersion: float, wait_seconds: float) -> float:
    """P(W > wait_seconds) for `servers` replicas (Erlang C with Allen-Cunneen's dispersion)."""
    if rate <= 0 or service_seconds <= 0:
        return 0.0
    offered = rate * service_seconds
    if servers <= offered + _MIN_SPARE_ERLANGS:
        return 1.0
    spare_per_second = servers / service_seconds - rate
    decay = 2.0 * spare_per_second / max(dispersion, 1e-9)
    return erlang_c(servers, offered) * math.exp(-decay * max(wait_seconds, 0.0))


def mean_wait_seconds(servers: int, rate: float, service_seconds: float, dispersion: float) -> float:
    """Mean waiting time of the same model: C(c, a) x (V/2) / (c/S - rate)."""
    offered = rate * service_seconds
    if servers <= offered + _MIN_SPARE_ERLANGS:
        return math.inf
    return erlang_c(servers, offered) * (dispersion / 2.0) / (servers / service_seconds - rate)


def prefill_replicas(
    rate: float,
    service_seconds: float,
    slack_seconds: float,
    miss_fraction: float,
    dispersion: float,
    *,
    backlog: float = 0.0,
    drain_seconds: float = 60.0,
    limit: int = 100_000,
) -> int:
    """Fewest prefill replicas whose waiting-time tail meets the miss budget, plus the
    replicas that drain a backlog of `backlog` waiting requests within `drain_seconds`.

    `slack_seconds` is SLA - S, floored at S/2 when the SLA is at or below the service time
    (no count can meet it; queueing is kept to half a service time, as the infeasible
    warning says). 0 when idle with no backlog.
    """
    if not service_seconds > 0:
        return 0
    need = max(backlog, 0.0) * service_seconds / max(drain_seconds, service_seconds)
    # inf or NaN inputs (the core is total): at most `limit`, never an OverflowError
    drain = 0 if not need > 0 else (limit if need >= limit else max(0, math.ceil(need - 1e-9)))
    if not rate > 0:
        return drain
    offered = rate * service_seconds
    if not offered < limit:
        return limit
    slack = max(slack_seconds, service_seconds / 2.0)
    c = max(1, math.floor(offered) + 1)
    while c < limit and wait_exceeds(c, rate, service_seconds, dispersion, slack) > miss_fraction:
        c += 1
    return min(c + drain, limit)


def service_from_ttft(
    servers: int, rate: float, observed_ttft_seconds: float, dispersion: float, low_seconds: float
) -> Optional[float]:
    """The service time S whose mean TTFT S + W(S) (the model's mean wait at `dispersion`)
    equals the observed mean TTFT: the engine's pace with the window's queueing taken out.

    S + W(S) grows with S, so bisection between `low_seconds` and the observed TTFT (no
    wait at all) finds it. None when even `low_seconds` leaves a mean TTFT above the
    observed one (the window's queue is not the model's) or nothing to solve.
    """
    if servers <= 0 or rate < 0 or not observed_ttft_seconds > 0 or not low_seconds > 0:
        return None

    def ttft(s: float) -> float:
        return s + (mean_wait_seconds(servers, rate, s, dispersion) if rate > 0 else 0.0)

    lo, hi = low_seconds, observed_ttft_seconds
    if lo >= hi or ttft(lo) > observed_ttft_seconds:
        return None
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if ttft(mid) > observed_ttft_seconds:
            hi = mid
        else:
            lo = mid
    return lo


def dispersion_from_wait(
    servers: int, rate: float, service_seconds: float, observed_wait_seconds: float
) -> Optional[float]:
    """The dispersion V one window implies: observed mean wait / the model's at V = 1.

    None when the window cannot say: no load, no servers, or saturated (the queue grew; the
    stationary model does not apply, and the backlog term reacts instead).
    """
    if rate <= 0 or servers <= 0 or service_seconds <= 0:
        return None
    unit = mean_wait_seconds(servers, rate, service_seconds, 1.0)
    if not math.isfinite(unit):
        return None
    if unit <= 0:
        return None
    return max(observed_wait_seconds, 0.0) / unit


def dispersion_from_misses(
    servers: int, rate: float, service_seconds: float, slack_seconds: float, miss_fraction: float, requests: float
) -> Optional[float]:
    """The dispersion V at which the tail formula gives the fraction of a window's requests
    that waited past the slack (measured: the TTFT histogram's bucket at the SLA):
    V = 2 (c/S - rate) slack / ln(C(c, a) / miss). A window with no miss bounds V from above
    only; it counts as half a miss of its `requests` (the resolution it measured at).

    None when the window cannot say: no load or servers, saturated, or more misses than
    Erlang C's probability of waiting (no V explains them: a backlog, not the tail)."""
    if rate <= 0 or servers <= 0 or service_seconds <= 0 or slack_seconds <= 0 or requests <= 0:
        return None
    offered = rate * service_seconds
    if servers <= offered + _MIN_SPARE_ERLANGS:
        return None
    waiting = erlang_c(servers, offered)
    miss = max(miss_fraction, 0.5 / requests)
    if not miss < waiting:
        return None
    return 2.0 * (servers / service_seconds - rate) * slack_seconds / math.log(waiting / miss)


def service_from_outcome(
    servers: int,
    rate: float,
    peak: float,
    observed_ttft_seconds: float,
    bound_seconds: float,
    miss_fraction: float,
    requests: float,
    low_seconds: float,
    high_seconds: float,
    prior_seconds: float,
    points: int = 61,
) -> Optional[float]:
    """The service time S at which a window's two measured outcomes agree with the model,
    where its queue was not negligible: its fraction of TTFTs over the bound gives the
    dispersion V(S) (`dispersion_from_misses` at the peak rate, against the bound's slack
    bound - S), and S plus the model's mean wait at V(S) and the mean rate must equal the
    observed mean TTFT. Mean and tail together tell a slower engine (S up, the whole
    distribution moves) from clumped arrivals (V up, the tail grows), which the mean alone
    cannot, though not always uniquely: S + W(S, V(S)) can fall and rise again, and two S
    explain the window. Then the one nearer `prior_seconds` (the pace learned so far, in
    log terms) is taken: a window that fits two engines does not move the belief further
    than it must. Scanned on a log grid of `points` from `low_seconds` to the smallest of
    `high_seconds`, the observed mean and the bound: the S where the mismatch changes sign
    (linear between grid points), else the S of the smallest mismatch. None when no S there
    gives a V (saturated, or more misses than Erlang C's waiting)."""
    top = min(high_seconds, observed_ttft_seconds, bound_seconds)
    if servers <= 0 or not rate > 0 or not low_seconds > 0 or not top > low_seconds or points < 2:
        return None
    step = math.log(top / low_seconds) / (points - 1)
    scanned: list[tuple[float, float]] = []  # (S, S + W(S, V(S)) - observed)
    for k in range(points):
        s = low_seconds * math.exp(k * step)
        v = dispersion_from_misses(servers, peak, s, bound_seconds - s, miss_fraction, requests)
        if v is None:
            continue
        wait = mean_wait_seconds(servers, rate, s, v)
        if math.isfinite(wait):
            scanned.append((s, s + wait - observed_ttft_seconds))
    if not scanned:
        return None
    roots = [s0 for s0, e0 in scanned if e0 == 0.0]
    roots += [s0 + (s1 - s0) * e0 / (e0 - e1) for (s0, e0), (s1, e1) in zip(scanned, scanned[1:]) if (e0 < 0) != (e1 < 0)]
    if roots:
        return min(roots, key=lambda r: abs(math.log(r / prior_seconds)) if prior_seconds > 0 else -r)
    return min(scanned, key=lambda p: abs(p[1]))[0]


def concurrency_quantile(mean: float, dispersion: float, miss_fraction: float) -> float:
    """The (1 - miss) quantile of concurrent sequences: mean + z sqrt(dispersion x mean).

    Normal approximation of a (over-dispersed) Poisson occupancy; exact enough above a few
    sequences, and conservative below (z applies in full).
    """
    if mean <= 0:
        return 0.0
    z = float(norm.ppf(1.0 - miss_fraction)) if 0 < miss_fraction < 1 else 0.0
    return mean + max(z, 0.0) * math.sqrt(max(dispersion, 0.0) * mean)


@dataclass(frozen=True)
class DecodeSizing:
    replicas: float            # fractional; the caller rounds up
    mean_sequences: float      # rate x OSL x ITL
    quantile_sequences: float  # the sequences the pool is sized for
    sequences_per_replica: float


def decode_replicas(
    rate: float,
    osl: float,
    itl_ms: float,
    sequences_per_replica: float,
    miss_fraction: float,
    dispersion: float = 1.0,
) -> DecodeSizing:
    """Decode replicas for the (1 - miss) quantile of concurrent sequences.

    The fleet holds rate x OSL x ITL sequences on average (Little's law); each replica holds
    `sequences_per_replica` at its ITL operating point (KV usage x max_kv_tokens / context:
    what the engine's KV cache holds at that load, the quantity the profile's ITL is
    measured against).
    """
    mean = max(rate, 0.0) * max(osl, 0.0) * itl_ms / 1000.0
    q = concurrency_quantile(mean, dispersion, miss_fraction)
    replicas = q / sequences_per_replica if sequences_per_replica > 0 else 0.0
    return DecodeSizing(
        replicas=replicas, mean_sequences=mean, quantile_sequences=q, sequences_per_replica=sequences_per_replica
    )
