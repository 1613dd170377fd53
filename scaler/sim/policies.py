"""Scaling policies the simulator compares, each a controller for scaler.sim.engine.

- `plan`: the plan as configured, through the real planning core (`decide`).
- `throughput-only` / `load-only`: the same plan with only that scaling mode on.
- `static:N` (or `static:P,D`): fixed replicas, N per pool (P prefill, D decode).
- `oracle`: not a controller; scaler.sim.oracle computes its lower bound on cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from scaler.core.decision import Decision
from scaler.core.interpolation import PerfModel
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import decide, new_state

ORACLE = "oracle"
_STATIC = re.compile(r"^static:(\d+)(?:,(\d+))?$")


class PolicyError(ValueError):
    """A policy name that does not parse or cannot run with this plan."""


@dataclass(frozen=True)
class PolicySpec:
    name: str        # as given on the command line and shown in the report
    kind: str        # plan | throughput-only | load-only | static | oracle
    static: Optional[Mapping[str, int]] = None


def parse_policy(name: str, pools: tuple[str, ...] = ("prefill", "decode")) -> PolicySpec:
    name = name.strip()
    if name in ("plan", "throughput-only", "load-only", ORACLE):
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
    raise PolicyError(
        f"unknown policy {name!r}: use plan, throughput-only, load-only, static:N (or static:P,D), oracle"
    )


def _with_modes(plan: Plan, throughput: bool, load: bool) -> Plan:
    scaling = plan.spec.scaling
    new_scaling = scaling.model_copy(
        update={
            "throughput": scaling.throughput.model_copy(update={"enabled": throughput}),
            "load": scaling.load.model_copy(update={"enabled": load}),
        }
    )
    return plan.model_copy(update={"spec": plan.spec.model_copy(update={"scaling": new_scaling})})


def policy_plan(spec: PolicySpec, plan: Plan) -> Plan:
    """The plan a scaling policy runs: as configured, or with one mode switched off."""
    if spec.kind == "throughput-only":
        return _with_modes(plan, throughput=True, load=False)
    if spec.kind == "load-only":
        return _with_modes(plan, throughput=False, load=True)
    return plan


class PlannerController:
    """Runs the real planning core on the simulator's observations."""

    def __init__(
        self, name: str, plan: Plan, model: Optional[PerfModel], initial: Optional[Mapping[str, int]] = None
    ) -> None:
        self.name = name
        self.plan = plan
        self.model = model
        self.state = new_state(plan)
        self.decisions: list[Decision] = []
        self._initial = dict(initial) if initial is not None else None

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

    def _decide(self, obs: Observation) -> Mapping[str, int]:
        decision = decide(self.plan, self.model, obs, self.state)
        self.decisions.append(decision)
        return {n: p.replicas for n, p in decision.pools.items()}

    def on_traffic(self, t: float, window: TrafficWindow, ready: Mapping[str, int]) -> Optional[Mapping[str, int]]:
        return self._decide(Observation(timestamp=t, traffic=window, ready_replicas=dict(ready)))

    def on_load(
        self, t: float, workers: tuple[WorkerLoad, ...], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]:
        return self._decide(Observation(timestamp=t, workers=workers, ready_replicas=dict(ready)))

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


def make_controller(
    spec: PolicySpec, plan: Plan, model: Optional[PerfModel], initial: Optional[Mapping[str, int]] = None
) -> PlannerController | StaticController:
    """The controller of a scaling policy (not `oracle`, which is computed, not simulated).

    `initial`: replicas a scaling policy starts with (default: each pool's minimum).
    """
    if spec.kind == "static":
        assert spec.static is not None
        return StaticController(spec.name, spec.static)
    if spec.kind == ORACLE:
        raise PolicyError("the oracle is a bound computed from the trace, not a simulated policy")
    return PlannerController(spec.name, policy_plan(spec, plan), model, initial)
