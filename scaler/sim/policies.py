"""Scaling policies the simulator compares, each a controller for scaler.sim.engine.

- `plan`: the plan as configured, through the real planning core as `dynplan serve`'s loop
  runs it (the fold of `scaler.core.replay`).
- `throughput-only` / `load-only`: the same plan with only that scaling mode on.
- `static:N` (or `static:P,D`): fixed replicas, N per pool (P prefill, D decode).
- `dynamo`, `llmd-slo`: peer autoscalers (scaler.sim.peers).
- `static-sweep`: not a controller; scaler.sim.fleet searches the cheapest static fleet that
  reaches the plan's attainment target.
- `oracle`: not a controller; scaler.sim.oracle computes its lower bound on cost.

Where each policy starts (`warm_start`) and which actuation path its targets take
(`actuation_for`) are decided here too: the rest of the simulator treats policies alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional

import numpy as np

from scaler.core.decision import Decision
from scaler.core.interpolation import PerfModel
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import PlannerState, decide, new_state
from scaler.core.replay import (
    Skipped,
    advance,
    decide_window,
    fold_held,
    fold_read,
    load_observation,
    throughput_observation,
    warmup_intervals,
)
from scaler.sim.actuation import ActuationConfig, config_from_plan
from scaler.sim.peers import (
    DynamoController,
    LlmdSloController,
    dynamo_plan,
    llmd_actuation,
    with_scaling,
    with_sizing,
)
from scaler.sim.window import first_window
from scaler.sim.workload import Arrivals
from scaler.sources import as_read, dispersion_bin

ORACLE = "oracle"
STATIC_SWEEP = "static-sweep"
DYNAMO = "dynamo"
LLMD_SLO = "llmd-slo"
# policies computed from the trace rather than simulated as one controller
COMPUTED = (ORACLE, STATIC_SWEEP)
_NAMED = ("plan", "throughput-only", "load-only", DYNAMO, LLMD_SLO, STATIC_SWEEP, ORACLE)
POLICY_NAMES = "plan, throughput-only, load-only, dynamo, llmd-slo, static:N (or static:P,D), static-sweep, oracle"
_STATIC = re.compile(r"\Astatic:(\d+)(?:,(\d+))?\Z")


class PolicyError(ValueError):
    """A policy name that does not parse or cannot run with this plan."""


@dataclass(frozen=True)
class PolicySpec:
    name: str        # as given on the command line and shown in the report
    kind: str        # plan | throughput-only | load-only | dynamo | llmd-slo | static | static-sweep | oracle
    static: Optional[Mapping[str, int]] = None


def parse_policy(name: str, pools: tuple[str, ...] = ("prefill", "decode")) -> PolicySpec:
    name = name.strip()
    if name in _NAMED:
        return PolicySpec(name=name, kind=name)
    m = _STATIC.match(name)
    if m:
        first, second = int(m.group(1)), m.group(2)
        if second is None:
            counts = {p: first for p in pools}
        elif len(pools) != 2:
            raise PolicyError(f"policy {name!r}: 'static:P,D' needs a disaggregated plan; use static:N")
        else:
            counts = dict(zip(pools, (first, int(second))))
        if sum(counts.values()) == 0:
            raise PolicyError(f"policy {name!r}: a static policy needs at least one replica")
        return PolicySpec(name=name, kind="static", static=counts)
    raise PolicyError(f"unknown policy {name!r}: use {POLICY_NAMES}")


def _with_modes(plan: Plan, throughput: bool, load: bool) -> Plan:
    return with_scaling(plan, throughput={"enabled": throughput}, load={"enabled": load})


def policy_plan(spec: PolicySpec, plan: Plan) -> Plan:
    """The plan a scaling policy runs: as configured, or with one mode switched off."""
    if spec.kind == "throughput-only":
        return _with_modes(plan, throughput=True, load=False)
    if spec.kind == "load-only":
        return _with_modes(plan, throughput=False, load=True)
    return plan


class PlannerController:
    """Runs the real planning core on the simulator's observations, as `dynplan serve`'s
    decision loop does (`scaler.service.loop.PlanLoop`), through the same pure functions:

    - a throughput window is decided on the fold (`core.replay.fold_read`, `advance`): a
      planner state that restarts from history at every multiple of N x T since t = 0 (N:
      the loop's warm-up length, `core.replay.warmup_intervals`) and holds the windows as
      history holds them; the simulator's own windows are that history. The ready counts
      and the load path's state go into the window's decision, not into the fold;
    - a load tick continues from the state of the latest decision (`decide_window`), as the
      loop's load ticks do;
    - a window outside the physical limits, or one `decide` raises on, is skipped (no new
      targets), as the loop skips it.

    Everything is a function of the windows and ticks seen, so runs stay deterministic."""

    def __init__(
        self,
        name: str,
        plan: Plan,
        model: Optional[PerfModel],
        initial: Optional[Mapping[str, int]] = None,
        *,
        fold_intervals: Optional[int] = None,
    ) -> None:
        self.name = name
        self.plan = plan
        self.model = model
        self.state = new_state(plan)
        self.decisions: list[Decision] = []
        self.skipped: list[Skipped] = []
        self._initial = dict(initial) if initial is not None else None
        # N: `dynplan serve`'s default warm-up length (its --warmup-intervals unset)
        self.fold_intervals = fold_intervals if fold_intervals is not None else warmup_intervals(plan)
        self._fold: Optional[PlannerState] = None
        self._held: Optional[tuple[float, float]] = None  # ends of the fold's oldest and newest windows
        # the history the fold is read from: the newest 2N windows by grid index (a fold
        # holds at most 2N - 1)
        self._history: dict[int, TrafficWindow] = {}

    def initial_replicas(self) -> Mapping[str, int]:
        # By default the deployment starts at each pool's minimum (a cold start, as Dynamo's
        # dry-run does); the planner grows it from there.
        if self._initial is not None:
            return self._initial
        return {n: p.min_replicas for n, p in self.plan.pools.items()}

    @property
    def throughput_interval_seconds(self) -> Optional[float]:
        tp = self.plan.spec.scaling.throughput
        return float(tp.interval_seconds) if tp.enabled else None

    @property
    def load_interval_seconds(self) -> Optional[float]:
        ld = self.plan.spec.scaling.load
        return float(ld.interval_seconds) if ld.enabled else None

    def _targets(self, result: Decision | Skipped) -> Optional[Mapping[str, int]]:
        if isinstance(result, Skipped):
            self.skipped.append(result)
            return None
        self.decisions.append(result)
        return {n: p.replicas for n, p in result.pools.items()}

    def _read(self, end: float, count: int, interval: float) -> list[TrafficWindow]:
        """The `count` windows before the one ending at `end`, oldest first, as history
        holds them: none before the run's first window."""
        k = round(end / interval)
        out: list[TrafficWindow] = []
        for i in range(k - 1, k - 1 - count, -1):
            if i not in self._history:
                break
            out.append(self._history[i])
        return out[::-1]

    def on_traffic(self, t: float, window: TrafficWindow, ready: Mapping[str, int]) -> Optional[Mapping[str, int]]:
        interval = float(self.plan.spec.scaling.throughput.interval_seconds)
        window = as_read(self.plan, window)  # what the plan's scrape interval leaves unread, it decides without
        read = fold_read(t, t, interval, self.fold_intervals, self._held)
        prior = self._read(t, read.count - 1, interval)
        obs = replace(throughput_observation(self.plan, t, window, ()), ready_replicas=dict(ready))
        done = advance(self.plan, self.model, self._fold if read.extend else None, prior, obs, self.state.load)
        self.state, self._fold = done.state, done.shadow
        self._held = fold_held(read, self._held, t, len(prior) + 1, interval)
        k = round(t / interval)
        self._history[k] = window
        self._history.pop(k - 2 * self.fold_intervals, None)
        return self._targets(done.decision)

    def on_load(
        self, t: float, workers: tuple[WorkerLoad, ...], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]:
        obs = replace(load_observation(t, workers), ready_replicas=dict(ready))
        self.state, result = decide_window(self.plan, self.model, obs, self.state)
        return self._targets(result)

    def decision_log(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.decisions]


class StaticController:
    """Fixed replicas, ready from the start; never changes."""

    throughput_interval_seconds: Optional[float] = None
    load_interval_seconds: Optional[float] = None

    def __init__(self, name: str, replicas: Mapping[str, int]) -> None:
        self.name = name
        self.replicas = dict(replicas)
        self.decisions: list[Decision] = []

    def initial_replicas(self) -> Mapping[str, int]:
        return self.replicas

    def on_traffic(self, t: float, window: TrafficWindow, ready: Mapping[str, int]) -> Optional[Mapping[str, int]]:
        return None

    def on_load(
        self, t: float, workers: tuple[WorkerLoad, ...], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]:
        return None

    def decision_log(self) -> list[dict[str, Any]]:
        return []


def parse_replicas(text: str, pools: tuple[str, ...] = ("prefill", "decode")) -> dict[str, int]:
    """`N` (every pool) or `P,D` (prefill, decode) as replicas per pool."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts) or len(parts) not in (1, len(pools)):
        raise PolicyError(f"{text!r}: expected N or {','.join(p[0].upper() for p in pools)} (non-negative integers)")
    if len(parts) == 1:
        return {p: int(parts[0]) for p in pools}
    return {p: int(v) for p, v in zip(pools, parts)}


AnyController = PlannerController | StaticController | DynamoController | LlmdSloController


def make_controller(
    spec: PolicySpec, plan: Plan, model: Optional[PerfModel], initial: Optional[Mapping[str, int]] = None
) -> AnyController:
    """The controller of a scaling policy (not `oracle` or `static-sweep`, which are computed).

    `initial`: replicas a scaling policy starts with (default: each pool's minimum;
    `warm_start` gives what the run starts them with by default).
    """
    if spec.kind == "static":
        assert spec.static is not None
        return StaticController(spec.name, spec.static)
    if spec.kind in COMPUTED:
        raise PolicyError(f"{spec.name} is computed from the trace, not a simulated policy")
    if spec.kind == DYNAMO:
        return DynamoController(spec.name, plan, model, initial)
    if spec.kind == LLMD_SLO:
        return LlmdSloController(spec.name, plan, initial)
    return PlannerController(spec.name, policy_plan(spec, plan), model, initial)


def actuation_for(spec: PolicySpec, plan: Plan) -> Optional[dict[str, ActuationConfig]]:
    """The KEDA/HPA path a policy's own manifests configure, per pool; None: targets apply at
    the tick (a static fleet never changes; Dynamo's planner sets the replicas itself)."""
    if spec.kind in ("static", DYNAMO) or spec.kind in COMPUTED:
        return None
    if spec.kind == LLMD_SLO:
        return {p: llmd_actuation(plan, p) for p in plan.pool_names}
    pplan = policy_plan(spec, plan)
    return {p: config_from_plan(pplan, p) for p in pplan.pool_names}


def sizing_plan(spec: PolicySpec, plan: Plan) -> Plan:
    """The plan whose throughput path sizes a policy's starting fleet: its own (Dynamo's
    formulas for `dynamo`), the configured plan's for policies without a throughput path
    (load-only, llmd-slo); always throughput-only."""
    if spec.kind == DYNAMO:
        base = with_sizing(dynamo_plan(plan), "dynamo")
    elif spec.kind in ("plan", "throughput-only"):
        base = policy_plan(spec, plan)
    else:
        base = plan
    return _with_modes(base, throughput=True, load=False)


def warm_start(
    spec: PolicySpec, plan: Plan, model: Optional[PerfModel], workload: Arrivals
) -> dict[str, int]:
    """Where a policy starts, ready, as a deployment that was already running: the decision
    its planner makes on the first interval's traffic (its arrivals' count, mean ISL and OSL,
    and peak rate; nothing measured yet), on a fresh planner state. A static policy starts
    at its size; without a profile (no throughput sizing), each pool's minimum."""
    if spec.kind == "static":
        assert spec.static is not None
        return dict(spec.static)
    if model is None:
        return {n: p.min_replicas for n, p in plan.pools.items()}
    sized = sizing_plan(spec, plan)
    interval = float(sized.spec.scaling.throughput.interval_seconds)
    head = int(np.searchsorted(workload.t, interval))
    window = first_window(workload.t[:head].tolist(), workload.isl[:head], workload.osl[:head], interval,
                          dispersion_bin(sized.spec.metrics.scrape_interval_seconds))
    window = as_read(sized, window)
    decision = decide(sized, model, Observation(timestamp=interval, traffic=window), new_state(sized))
    return {n: p.replicas for n, p in decision.pools.items()}
