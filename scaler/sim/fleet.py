"""The cheapest fixed fleet that reaches an attainment target on a set of requests.

`cheapest_fleet(requests, ...)` replays the requests through the real engine with fixed
replicas, ready from the start, and finds the fewest GPUs whose replay has at least `target`
of its requests within both SLAs (TTFT <= ttftMs and mean ITL <= itlMs; a request that never
finishes misses both). It serves two callers: `static-sweep` (the whole trace: the cheapest
static fleet) and the oracle (each interval's requests alone: scaler.sim.oracle).

The search uses what each pool's latency depends on (disaggregated pools):

1. Prefill: a request's TTFT depends only on the prefill replicas (first come, first served
   on identical workers: more workers never delay anyone, so TTFT attainment is monotone in
   the count). The smallest count with TTFT attainment >= target is found on runs without
   decode (cheap: one event per request).
2. Decode: with prefill at that count, the smallest decode count whose full runs reach the
   target on both SLAs (assumed monotone in the decode count).
3. If no decode count up to the maximum reaches it, but decode alone would (ITL attainment
   >= target at the maximum), prefill misses are eating the budget: prefill grows until the
   maximum decode count passes, and the decode search runs again there.
4. A pool cheaper per replica than the other may buy the other's replicas back: while
   prefill GPUs cost less than decode GPUs, one more prefill and one less decode is tried
   (twice at most).

Each count is searched from a hint (the core's capacity() at the busiest minute's rate) by
doubling steps, then bisection, so a search costs a few runs per pool. Probe runs stop as soon
as more requests missed than the target allows (scaler.sim.engine.StopRule): a failing run is
usually short. An aggregated plan has one pool, `worker`, searched on full runs.

If the pools' maxima cannot reach the target, `found` is False and the fleet is the best one
seen: prefill at its maximum with the fewest decode replicas that reach the target on ITL
alone (TTFT cannot reach it); the prefill count found with decode at its maximum (ITL cannot);
both maxima (neither can together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import numpy as np

from scaler.core.interpolation import PerfModel
from scaler.core.plan import Plan
from scaler.core.planner import capacity
from scaler.sim.engine import EngineConfig, StopRule, simulate
from scaler.sim.results import SimResult
from scaler.sim.window import peak_rate
from scaler.sim.workload import Arrivals


@dataclass(frozen=True)
class Attainment:
    """Fractions of the requests within the TTFT SLA, the ITL SLA, and both."""

    ttft: float
    itl: float
    both: float

    def to_dict(self) -> dict[str, float]:
        return {"ttft": round(self.ttft, 6), "itl": round(self.itl, 6), "both": round(self.both, 6)}


@dataclass(frozen=True)
class Probe:
    """One replay: the fleet, whether it reached the target, its attainment (None when it was
    stopped early: it failed), and whether decode took part (prefill-only probes)."""

    replicas: dict[str, int]
    passed: bool
    attainment: Optional[Attainment]
    prefill_only: bool = False

    def to_dict(self) -> dict[str, object]:
        att: Optional[dict[str, float]] = None
        if self.attainment is not None:
            att = self.attainment.to_dict()
            if self.prefill_only:
                att = {"ttft": att["ttft"]}  # no decode: TTFT only
        return {"replicas": dict(self.replicas), "passed": self.passed, "attainment": att}


@dataclass
class FleetResult:
    replicas: dict[str, int]          # the fleet found, or the best seen
    found: bool                       # it reaches the target
    attainment: Optional[Attainment]  # of a complete replay at `replicas` (None: no requests)
    infeasible_pools: tuple[str, ...] = ()
    probes: list[Probe] = field(default_factory=list)
    result: Optional[SimResult] = None  # the complete replay at `replicas`

    @property
    def runs(self) -> int:
        return len(self.probes)


class FixedFleet:
    """A controller that holds fixed replicas, ready from the start, and never decides."""

    name = "fleet-probe"
    throughput_interval_seconds: Optional[float] = None
    load_interval_seconds: Optional[float] = None

    def __init__(self, replicas: Mapping[str, int]) -> None:
        self._replicas = dict(replicas)

    def initial_replicas(self) -> Mapping[str, int]:
        return self._replicas

    def on_traffic(self, t: float, window: object, ready: Mapping[str, int]) -> None:
        return None

    def on_load(self, t: float, workers: object, ready: Mapping[str, int]) -> None:
        return None


def smallest_passing(passes: Callable[[int], bool], lo: int, hi: int, hint: int) -> tuple[int, bool]:
    """The smallest n in [lo, hi] with passes(n), assuming passes is monotone in n.

    Gallops from `hint` (up while failing, down while passing, doubling the step), then
    bisects the bracket. Returns (hi, False) when even hi fails.
    """
    hint = max(lo, min(hi, hint))
    if passes(hint):
        good, bad, step = hint, lo - 1, 1
        while good > lo:
            probe = max(lo, good - step)
            if passes(probe):
                good, step = probe, step * 2
            else:
                bad = probe
                break
    else:
        bad, step = hint, 1
        found: Optional[int] = None
        while bad < hi:
            probe = min(hi, bad + step)
            if passes(probe):
                found = probe
                break
            bad, step = probe, step * 2
        if found is None:
            return hi, False
        good = found
    while good - bad > 1:
        mid = (good + bad) // 2
        if passes(mid):
            good = mid
        else:
            bad = mid
    return good, True


def attainment_of(result: SimResult, ttft_ms: float, itl_ms: float) -> Attainment:
    """Per-request attainment of a replay (unfinished requests miss both)."""
    n = len(result.workload)
    if not n:
        return Attainment(1.0, 1.0, 1.0)
    finished = np.isfinite(result.finish)
    ttft_ok = finished & (np.nan_to_num(result.ttft_ms, nan=math.inf) <= ttft_ms)
    single = result.workload.osl <= 1
    itl_ok = finished & (single | (np.nan_to_num(result.itl_ms, nan=math.inf) <= itl_ms))
    return Attainment(float(ttft_ok.mean()), float(itl_ok.mean()), float((ttft_ok & itl_ok).mean()))


def hint_plan(plan: Plan) -> Plan:
    """The plan with Dynamo's formulas (no queueing headroom, no budget): capacity() on it
    gives each pool's count at a rate, the search's starting point."""
    tp = plan.spec.scaling.throughput
    update: dict[str, object] = {"queueing": tp.queueing.model_copy(update={"enabled": False})}
    if "sizing" in type(tp).model_fields:
        update["sizing"] = "dynamo"
    scaling = plan.spec.scaling.model_copy(update={"throughput": tp.model_copy(update=update)})
    spec = plan.spec.model_copy(
        update={"scaling": scaling, "budget": plan.spec.budget.model_copy(update={"max_gpus": None})}
    )
    return plan.model_copy(update={"spec": spec})


def fleet_hint(plan: Plan, model: PerfModel, requests: Arrivals) -> dict[str, int]:
    """capacity() at the busiest minute's arrival rate (a good start for a target near 1)."""
    if not len(requests):
        return {n: p.min_replicas for n, p in plan.pools.items()}
    span = max(float(requests.t[-1]) - float(requests.t[0]), 1e-9)
    t = requests.t.tolist()
    rate = peak_rate(t, float(requests.t[-1]) + 1e-9, span + 1e-9) if span > 60 else len(t) / max(span, 1.0)
    d = capacity(hint_plan(plan), model, rate, float(requests.isl.mean()), float(requests.osl.mean()))
    return {n: d.replicas(n) for n in plan.pool_names}


def cheapest_fleet(
    requests: Arrivals,
    model: PerfModel,
    plan: Plan,
    target: float,
    hint: Optional[Mapping[str, int]] = None,
) -> FleetResult:
    """The cheapest fixed fleet (GPUs) whose replay of `requests` has at least `target` of
    them within both SLAs (module docstring), searched between each pool's min and max."""
    pools = plan.pools
    sla = plan.spec.sla
    gpus = {n: p.gpus_per_replica for n, p in pools.items()}
    mode = plan.spec.mode
    cfg = EngineConfig(gpus_per_replica=gpus, startup_delay_seconds=0.0, initial_ready=True, mode=mode)
    n = len(requests)
    allowed = n * (1.0 - target) + 1e-9  # misses a passing replay may have
    mins = {name: p.min_replicas for name, p in pools.items()}
    if n == 0:
        return FleetResult(mins, True, None)
    hints = dict(hint) if hint is not None else fleet_hint(plan, model, requests)
    probes: list[Probe] = []
    Key = tuple[bool, tuple[tuple[str, int], ...]]
    complete: dict[Key, tuple[Attainment, SimResult]] = {}
    cache: dict[Key, bool] = {}

    def key(replicas: Mapping[str, int], prefill_only: bool = False) -> Key:
        return prefill_only, tuple(sorted(replicas.items()))

    def replay(replicas: dict[str, int], stop: bool, prefill_only: bool = False, itl_only: bool = False) -> bool:
        """Run the fleet; True if it reached the target (on TTFT alone for prefill-only runs,
        on ITL alone with `itl_only`)."""
        k = key(replicas, prefill_only)
        if k in cache and (stop or k in complete) and not itl_only:
            return cache[k]
        if itl_only and k in complete:
            return complete[k][0].itl >= target - 1e-12
        if prefill_only:
            rule = StopRule(sla.ttft_ms, None, allowed)
        elif itl_only:
            rule = StopRule(math.inf, sla.itl_ms, allowed)
        else:
            rule = StopRule(sla.ttft_ms, sla.itl_ms, allowed)
        res = simulate(requests, model, FixedFleet(replicas), cfg, stop=rule if stop else None)
        if res.stopped:
            probes.append(Probe(dict(replicas), False, None, prefill_only))
            if not itl_only:
                cache[k] = False
            return False
        att = attainment_of(res, sla.ttft_ms, sla.itl_ms)
        if prefill_only:
            ttft_ok = np.nan_to_num(res.ttft_ms, nan=math.inf) <= sla.ttft_ms
            att = Attainment(float(ttft_ok.mean()), math.nan, math.nan)
            passed = att.ttft >= target - 1e-12
        else:
            passed = att.both >= target - 1e-12
            complete[k] = (att, res)
        probes.append(Probe(dict(replicas), passed, att, prefill_only))
        cache[k] = passed
        return att.itl >= target - 1e-12 if itl_only else passed

    def finish(replicas: dict[str, int], found: bool, infeasible: tuple[str, ...] = ()) -> FleetResult:
        k = key(replicas)
        if k not in complete:
            replay(replicas, stop=False)
        att, res = complete[k]
        return FleetResult(dict(replicas), found, att, infeasible, probes, res)

    if mode == "agg":
        wp = pools["worker"]
        w, ok = smallest_passing(lambda c: replay({"worker": c}, True), wp.min_replicas, wp.max_replicas,
                                 hints.get("worker", wp.min_replicas))
        return finish({"worker": w}, ok, () if ok else ("worker",))

    pp, dp = pools["prefill"], pools["decode"]
    p, ok_p = smallest_passing(lambda c: replay({"prefill": c, "decode": 0}, True, prefill_only=True),
                               pp.min_replicas, pp.max_replicas, hints.get("prefill", pp.min_replicas))
    if not ok_p:
        # TTFT cannot reach the target: prefill takes its maximum, decode the fewest replicas
        # that reach it on ITL alone
        d, ok_d = smallest_passing(lambda c: replay({"prefill": p, "decode": c}, True, itl_only=True),
                                   dp.min_replicas, dp.max_replicas, hints.get("decode", dp.min_replicas))
        return finish({"prefill": p, "decode": d}, False, ("prefill",) if ok_d else ("prefill", "decode"))

    def decode_search(at: int) -> tuple[int, bool]:
        return smallest_passing(lambda c: replay({"prefill": at, "decode": c}, True),
                                dp.min_replicas, dp.max_replicas, hints.get("decode", dp.min_replicas))

    d, ok_d = decode_search(p)
    if not ok_d:
        top = {"prefill": p, "decode": dp.max_replicas}
        replay(top, stop=False)
        att = complete[key(top)][0]
        if att.itl < target - 1e-12:
            return finish(top, False, ("decode",))  # decode alone cannot reach it
        grown, ok_grow = smallest_passing(lambda c: replay({"prefill": c, "decode": dp.max_replicas}, True),
                                          p + 1, pp.max_replicas, p + 1) if p < pp.max_replicas else (p, False)
        if not ok_grow:
            return finish({"prefill": pp.max_replicas, "decode": dp.max_replicas}, False, ("prefill", "decode"))
        p = grown
        d, ok_d = decode_search(p)
    best = {"prefill": p, "decode": d}
    # a cheaper prefill replica may buy back a decode replica
    tries = 0
    while gpus["prefill"] < gpus["decode"] and best["decode"] > dp.min_replicas and best["prefill"] < pp.max_replicas \
            and tries < 2:
        tries += 1
        cand = {"prefill": best["prefill"] + 1, "decode": best["decode"] - 1}
        if not replay(cand, True):
            break
        best = cand
    return finish(best, True)


def gpus_of(replicas: Mapping[str, int], gpus: Mapping[str, int]) -> int:
    return sum(replicas[n] * gpus[n] for n in replicas)
