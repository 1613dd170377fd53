"""Peer autoscalers the simulator compares dynplan with, each a controller for scaler.sim.engine.

- `DynamoController` (policy `dynamo`): NVIDIA Dynamo's SLA planner, G2 generation, with both
  of its modes on (docs/simulation.md, "Peer policies"; the rules are those of
  /work/shared/reference/dynamo-planner.md section 3.1):
  * throughput ticks run dynplan's core on the plan with Dynamo's formulas
    (`spec.scaling.throughput.sizing: dynamo`, queueing off) and only set the lower bound
    (Dynamo: "the result only becomes a lower bound" when load-based scaling is on); the
    correction factors are off, as Dynamo switches them off when load-based scaling is on;
  * load ticks fit latency against load per pool by ordinary least squares over the last
    `window` points (at least `minObservations`), one point per worker per tick; prefill:
    x = active prefill tokens + last ISL, y = last TTFT; decode: x = active KV blocks,
    y = last ITL. Solved at the SLA (slope <= 0: the smallest x whose y met the SLA, else
    the smallest x). Prefill target = x_sla - the average of this tick's last ISLs (<= 0:
    no decision); decode target = x_sla. Up (+1) when every worker is above its target;
    down (-1, N > 1) when every worker is below target x (N-1)/N x sensitivity/100; no
    scale-down delay, no observed-SLA override. Disaggregated: if either pool says up,
    only the up side(s) move; both down: both shrink; else nothing. Aggregated: up if
    either signal says up, down only if both do. Then max(., throughput lower bound), the
    pools' bounds and the GPU budget;
  * blocking: a load tick while the last load decision is not ready yet (ready replicas
    differ from it) is skipped, as Dynamo waits for the deployment to be ready;
  * no KEDA or HPA in between: Dynamo's planner sets the replicas of the graph deployment
    itself, so its targets apply at the tick (with the pools' start-up delay).

- `LlmdSloController` (policy `llmd-slo`): llm-d's SLO-aware KEDA guide. Per pool a ratio
  s = P90 latency / SLA over the requests of the last 60 s (TTFT drives prefill, ITL decode,
  the larger of the two an aggregated pool), each 15 s sample clamped at 2, averaged over
  45 s; at every KEDA poll (30 s), with n replicas provisioned and r ready: above 0.55 add
  ceil(n (s r/n / 0.55 - 1)), below 0.40 remove floor(n (1 - s/0.40)), else hold. Its HPA
  (`llmd_actuation`): up max(100 %, 4 pods) per 60 s after a 30 s stabilisation window, down
  1 pod per 120 s after a 180 s window, and no tolerance band of its own (the rule's 0.40 to
  0.55 band is the tolerance).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from scaler.core.budget import apply_budget, clamp
from scaler.core.decision import Decision
from scaler.core.interpolation import PerfModel
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import decide, new_state
from scaler.sim.actuation import ActuationConfig
from scaler.sim.hpa_config import Behavior, HpaConfig, ScalingPolicy, ScalingRules
from scaler.sim.keda import KEDA_COOLDOWN_PERIOD_SECONDS, KEDA_POLLING_INTERVAL_SECONDS, KedaConfig
from scaler.sim.latency import ITL, TTFT, LatencyLog

UP, HOLD, DOWN = 1, 0, -1


# -- plans ------------------------------------------------------------------------------------
def with_scaling(
    plan: Plan, *, throughput: Optional[Mapping[str, Any]] = None, load: Optional[Mapping[str, Any]] = None
) -> Plan:
    """The plan with fields of `spec.scaling.throughput` / `spec.scaling.load` replaced."""
    scaling = plan.spec.scaling
    new = scaling.model_copy(
        update={
            "throughput": scaling.throughput.model_copy(update=dict(throughput or {})),
            "load": scaling.load.model_copy(update=dict(load or {})),
        }
    )
    return plan.model_copy(update={"spec": plan.spec.model_copy(update={"scaling": new})})


def with_sizing(plan: Plan, sizing: str) -> Plan:
    """The plan with `spec.scaling.throughput.sizing` set and queueing-aware prefill sizing
    off: Dynamo's formulas are the mean rate over capacity."""
    queueing = plan.spec.scaling.throughput.queueing.model_copy(update={"enabled": False})
    return with_scaling(plan, throughput={"sizing": sizing, "queueing": queueing})


def dynamo_plan(plan: Plan) -> Plan:
    """The plan as Dynamo would run it: its throughput formulas, correction on (the core turns
    it off, as Dynamo does, because load-based scaling is on), load-based scaling on with the
    plan's load settings."""
    return with_scaling(with_sizing(plan, "dynamo"), throughput={"correction": True}, load={"enabled": True})


def _throughput_only(plan: Plan, correction: bool) -> Plan:
    return with_scaling(plan, throughput={"enabled": True, "correction": correction}, load={"enabled": False})


# -- Dynamo -----------------------------------------------------------------------------------
class OlsWindow:
    """Dynamo G2's load regression: ordinary least squares over the newest `window` points."""

    def __init__(self, window: int, min_observations: int) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=window)
        self.min_observations = min_observations

    def add(self, x: float, y: float) -> None:
        self.points.append((float(x), float(y)))

    def x_at(self, y_sla: float) -> Optional[float]:
        """The load x at which the fitted latency reaches `y_sla` (>= 0); None before
        `min_observations` points. Slope <= 0: the smallest x among points with y below the
        SLA, else the smallest x overall."""
        if len(self.points) < self.min_observations:
            return None
        xs = np.fromiter((p[0] for p in self.points), dtype=np.float64)
        ys = np.fromiter((p[1] for p in self.points), dtype=np.float64)
        dx = xs - xs.mean()
        var = float(dx @ dx)
        slope = float(dx @ (ys - ys.mean())) / var if var > 0 else 0.0
        if slope > 0:
            intercept = float(ys.mean()) - slope * float(xs.mean())
            return max(0.0, (y_sla - intercept) / slope)
        below = xs[ys < y_sla]
        return float(below.min()) if len(below) else float(xs.min())


def dynamo_direction(loads: Sequence[float], target: Optional[float], sensitivity: float) -> int:
    """Dynamo G2's +-1 rule on per-worker loads: up when every worker is above `target`; down
    (more than one worker) when every worker is below target x (N-1)/N x sensitivity/100."""
    n = len(loads)
    if target is None or target <= 0 or n == 0:
        return HOLD
    if all(v > target for v in loads):
        return UP
    if n > 1:
        boundary = target * (n - 1) / n * sensitivity / 100.0
        if all(v < boundary for v in loads):
            return DOWN
    return HOLD


class DynamoController:
    """Dynamo's planner (G2) with throughput and load-based scaling (module docstring)."""

    poll_interval_seconds: Optional[float] = None

    def __init__(
        self, name: str, plan: Plan, model: Optional[PerfModel], initial: Optional[Mapping[str, int]] = None
    ) -> None:
        self.name = name
        self.plan = dynamo_plan(plan)
        self.model = model
        ld = self.plan.spec.scaling.load
        self._throughput_on = model is not None and plan.spec.scaling.throughput.enabled
        # correction off: Dynamo disables it when load-based scaling is on (as dynplan's core)
        self._tp_plan = _throughput_only(self.plan, correction=False)
        self.state = new_state(self._tp_plan)
        self._initial = dict(initial) if initial is not None else None
        self.regressions: dict[tuple[str, str], OlsWindow] = {}
        for pool in self.plan.pool_names:
            for signal in self._signals(pool):
                self.regressions[(pool, signal)] = OlsWindow(ld.window, ld.min_observations)
        self.floor: Optional[dict[str, int]] = None
        self.decided: Optional[dict[str, int]] = None
        self.decisions: list[Decision] = []
        self.log: list[dict[str, Any]] = []

    def _signals(self, pool: str) -> tuple[str, ...]:
        return {"prefill": (TTFT,), "decode": (ITL,)}.get(pool, (TTFT, ITL))

    def initial_replicas(self) -> Mapping[str, int]:
        if self._initial is not None:
            return self._initial
        return {n: p.min_replicas for n, p in self.plan.pools.items()}

    @property
    def throughput_interval_seconds(self) -> Optional[float]:
        return float(self.plan.spec.scaling.throughput.interval_seconds) if self._throughput_on else None

    @property
    def load_interval_seconds(self) -> Optional[float]:
        return float(self.plan.spec.scaling.load.interval_seconds)

    def on_traffic(self, t: float, window: TrafficWindow, ready: Mapping[str, int]) -> Optional[Mapping[str, int]]:
        decision = decide(self._tp_plan, self.model, Observation(timestamp=t, traffic=window,
                                                                  ready_replicas=dict(ready)), self.state)
        self.decisions.append(decision)
        self.floor = {n: p.replicas for n, p in decision.pools.items()}
        return None  # a lower bound for the load ticks, not a scaling decision

    def on_load(
        self, t: float, workers: tuple[WorkerLoad, ...], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]:
        if self.decided is not None and any(ready.get(p, 0) != n for p, n in self.decided.items()):
            self.log.append({"timestamp": t, "kind": "load", "skipped": "previous scaling not ready"})
            return None
        spec = self.plan.spec
        sensitivity = spec.scaling.load.scale_down_sensitivity
        by_pool: dict[str, list[WorkerLoad]] = {p: [] for p in self.plan.pool_names}
        for w in workers:
            if w.pool in by_pool:
                by_pool[w.pool].append(w)
        directions: dict[str, int] = {}
        for pool, members in by_pool.items():
            votes = []
            if TTFT in self._signals(pool):
                reg = self.regressions[(pool, TTFT)]
                for w in members:
                    if w.last_ttft_ms and w.last_ttft_ms > 0 and w.last_isl and w.last_isl > 0:
                        reg.add((w.active_prefill_tokens or 0.0) + w.last_isl, w.last_ttft_ms)
                x_sla = reg.x_at(spec.sla.ttft_ms)
                isls = [w.last_isl for w in members if w.last_isl and w.last_isl > 0]
                target = None if x_sla is None or not isls else x_sla - sum(isls) / len(isls)
                votes.append(dynamo_direction([w.active_prefill_tokens or 0.0 for w in members], target, sensitivity))
            if ITL in self._signals(pool):
                reg = self.regressions[(pool, ITL)]
                for w in members:
                    if w.last_itl_ms and w.last_itl_ms > 0 and w.active_decode_blocks and w.active_decode_blocks > 0:
                        reg.add(w.active_decode_blocks, w.last_itl_ms)
                votes.append(dynamo_direction([w.active_decode_blocks or 0.0 for w in members],
                                              reg.x_at(spec.sla.itl_ms), sensitivity))
            if len(votes) == 2:  # aggregated: up if either, down only if both
                directions[pool] = UP if UP in votes else DOWN if votes == [DOWN, DOWN] else HOLD
            else:
                directions[pool] = votes[0]
        current = {p: len(m) for p, m in by_pool.items()}
        if UP in directions.values():
            wanted = {p: current[p] + 1 if d == UP else current[p] for p, d in directions.items()}
        elif all(d == DOWN for d in directions.values()):
            wanted = {p: current[p] - 1 for p in directions}
        else:
            self.log.append({"timestamp": t, "kind": "load", "directions": directions})
            return None
        pools = self.plan.pools
        if self.floor is not None:
            wanted = {p: max(n, self.floor.get(p, 0)) for p, n in wanted.items()}
        wanted = {p: clamp(n, pools[p].min_replicas, pools[p].max_replicas) for p, n in wanted.items()}
        final = apply_budget(
            wanted,
            {p: pools[p].min_replicas for p in wanted},
            {p: pools[p].gpus_per_replica for p in wanted},
            spec.budget.max_gpus,
        )
        self.decided = final
        self.log.append({"timestamp": t, "kind": "load", "directions": directions, "replicas": final})
        return final

    def decision_log(self) -> list[dict[str, Any]]:
        throughput = [dict(d.to_dict(), kind="throughput-lower-bound") for d in self.decisions]
        return sorted(throughput + self.log, key=lambda d: float(d.get("timestamp", 0.0)))


# -- llm-d ------------------------------------------------------------------------------------
LLMD_QUANTILE = 0.9
LLMD_HISTOGRAM_SECONDS = 60.0   # the histograms' rate window: p90 over the last minute
LLMD_SAMPLE_SECONDS = 15.0      # the ratio's evaluation step (a recording rule)
LLMD_AVERAGE_SECONDS = 45.0     # avg_over_time of the ratio
LLMD_CLAMP = 2.0
LLMD_UP = 0.55
LLMD_DOWN = 0.40
_EPS = 1e-9


def llmd_replicas(s: float, n: int, r: int) -> int:
    """llm-d's rule: with n replicas provisioned and r ready, above 0.55 add
    ceil(n (s r/n / 0.55 - 1)) (never negative), below 0.40 remove floor(n (1 - s/0.40)),
    else hold. With none provisioned, one when s is above 0.55."""
    if n <= 0:
        return 1 if s > LLMD_UP else 0
    if s > LLMD_UP:
        return n + max(0, math.ceil(n * (s * r / n / LLMD_UP - 1.0) - _EPS))
    if s < LLMD_DOWN:
        return n - min(n, math.floor(n * (1.0 - s / LLMD_DOWN) + _EPS))
    return n


def llmd_ratio(latency: LatencyLog, t: float, pool: str, ttft_sla_ms: float, itl_sla_ms: float) -> Optional[float]:
    """s at t: the clamped P90/SLA ratio sampled every 15 s, averaged over the last 45 s
    (samples without any request in their minute are absent); None when all are absent."""
    samples = []
    u = t
    while u > t - LLMD_AVERAGE_SECONDS + _EPS:
        ratios = []
        if pool != "decode":
            q = latency.quantile(TTFT, u - LLMD_HISTOGRAM_SECONDS, u, LLMD_QUANTILE)
            if q is not None:
                ratios.append(q / ttft_sla_ms)
        if pool != "prefill":
            q = latency.quantile(ITL, u - LLMD_HISTOGRAM_SECONDS, u, LLMD_QUANTILE)
            if q is not None:
                ratios.append(q / itl_sla_ms)
        if ratios:
            samples.append(min(LLMD_CLAMP, max(ratios)))
        u -= LLMD_SAMPLE_SECONDS
    return sum(samples) / len(samples) if samples else None


def llmd_actuation(plan: Plan, pool: str) -> ActuationConfig:
    """The KEDA and HPA settings of llm-d's guide for one pool of the plan."""
    p = plan.pool(pool)
    keda = KedaConfig(
        polling_interval_seconds=KEDA_POLLING_INTERVAL_SECONDS,
        min_replica_count=p.min_replicas,
        max_replica_count=p.max_replicas,
        cooldown_period_seconds=KEDA_COOLDOWN_PERIOD_SECONDS,
    )
    behavior = Behavior(
        scale_up=ScalingRules(
            stabilization_window_seconds=30,
            select_policy="Max",
            policies=(ScalingPolicy("Percent", 100, 60), ScalingPolicy("Pods", 4, 60)),
            tolerance=0.0,
        ),
        scale_down=ScalingRules(
            stabilization_window_seconds=180,
            select_policy="Max",
            policies=(ScalingPolicy("Pods", 1, 120),),
            tolerance=0.0,
        ),
    )
    hpa = HpaConfig(min_replicas=max(p.min_replicas, 1), max_replicas=p.max_replicas, behavior=behavior)
    return ActuationConfig(keda=keda, hpa=hpa)


class LlmdSloController:
    """llm-d's SLO-aware rule, evaluated at KEDA's polling interval (module docstring)."""

    throughput_interval_seconds: Optional[float] = None
    load_interval_seconds: Optional[float] = None
    poll_interval_seconds: Optional[float] = float(KEDA_POLLING_INTERVAL_SECONDS)

    def __init__(self, name: str, plan: Plan, initial: Optional[Mapping[str, int]] = None) -> None:
        self.name = name
        self.plan = plan
        self._initial = dict(initial) if initial is not None else None
        self.log: list[dict[str, Any]] = []

    def initial_replicas(self) -> Mapping[str, int]:
        if self._initial is not None:
            return self._initial
        return {n: p.min_replicas for n, p in self.plan.pools.items()}

    def on_traffic(self, t: float, window: TrafficWindow, ready: Mapping[str, int]) -> None:
        return None

    def on_load(self, t: float, workers: tuple[WorkerLoad, ...], ready: Mapping[str, int]) -> None:
        return None

    def on_poll(
        self, t: float, latency: LatencyLog, provisioned: Mapping[str, int], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]:
        sla = self.plan.spec.sla
        targets: dict[str, int] = {}
        entry: dict[str, Any] = {"timestamp": t, "kind": "poll", "pools": {}}
        for name, pool in self.plan.pools.items():
            s = llmd_ratio(latency, t, name, sla.ttft_ms, sla.itl_ms)
            n, r = int(provisioned.get(name, 0)), int(ready.get(name, 0))
            # no request measured in the last minute: the query is empty, KEDA reads 0
            want = llmd_replicas(0.0 if s is None else s, n, r)
            targets[name] = clamp(want, pool.min_replicas, pool.max_replicas)
            entry["pools"][name] = {"s": None if s is None else round(s, 4), "provisioned": n, "ready": r,
                                    "replicas": targets[name]}
        self.log.append(entry)
        return targets

    def decision_log(self) -> list[dict[str, Any]]:
        return self.log
