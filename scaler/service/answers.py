"""What the RPCs answer from: the rules of serving a decision, and the serving process's book.

`dynplan serve` runs in two processes by default (scaler.service.front): the serving process
answers KEDA and nothing else, and the decider process (scaler.service.decider) reads
Prometheus, plans, and sends each plan's `PlanAnswer` over a pipe when it changes. The
serving process keeps them in an `AnswerBook`, which the gRPC handlers read exactly as they
read the registry's PlanLoops in one process (`--one-process`): `lookup(ref).current()`.
The rules of both paths are the two functions here (`check_pool`, `check_fresh`), so a
pool unknown to a plan, a plan with no decision yet and a decision past its staleness bound
get the same status and the same text either way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Optional, Protocol

from scaler.errors import MetadataError, NoDecisionYet, PlanNotFound, StaleDecision
from scaler.service.config import PoolRef

PlanKey = tuple[str, str]  # (namespace, plan name)


def check_pool(ref: PoolRef, mode: str, pools: tuple[str, ...]) -> None:
    """MetadataError when the trigger names a pool the plan does not have."""
    if ref.pool not in pools:
        raise MetadataError(
            f"trigger metadata key 'pool': plan {ref.plan!r} has no pool {ref.pool!r} "
            f"(mode {mode}: {', '.join(pools)})"
        )


def not_found(ref: PoolRef) -> PlanNotFound:
    # Same answer whether the plan is absent or lives in another namespace.
    return PlanNotFound(f"no plan {ref.plan!r} in namespace {ref.namespace!r}")


def check_fresh(
    key: str, made_at: Optional[float], last_error: Optional[str], now: float,
    staleness_factor: float, interval: float,
) -> None:
    """NoDecisionYet or StaleDecision (both UNAVAILABLE) unless a decision made at `made_at`
    may be served at `now`."""
    why = f"; last error: {last_error}" if last_error else ""
    if made_at is None:
        raise NoDecisionYet(f"plan {key} has no decision yet (waiting for Prometheus){why}")
    age = now - made_at
    bound = staleness_factor * interval
    if age > bound:
        raise StaleDecision(
            f"plan {key}: the latest good decision is {age:.1f}s old, above the staleness bound "
            f"of {bound:g}s ({staleness_factor:g} x interval {interval:g}s){why}"
        )


def is_active(traffic_requests: Optional[float], replicas: int) -> bool:
    """IsActive: the window had requests, or the pool is asked to keep replicas."""
    return (traffic_requests or 0.0) > 0 or replicas > 0


class Served(Protocol):
    """A decision being served: replicas and activity per pool."""

    def replicas(self, pool: str) -> int: ...

    def active(self, pool: str) -> bool: ...


class ServedPlan(Protocol):
    def current(self) -> Served:
        """The decision to serve now, or NoDecisionYet / StaleDecision."""
        ...


class PlanView(Protocol):
    """What the gRPC handlers read: the registry (one process) or an AnswerBook."""

    version: int
    closing: bool

    def lookup(self, ref: PoolRef) -> ServedPlan: ...

    async def wait_changed(self, version: int, timeout: float) -> int: ...


class Changes:
    """A version that moves on every change, and waiting for it to move: what the streams
    (StreamIsActive, StreamMetricSpec) wait on, in the registry and in the AnswerBook alike."""

    def __init__(self) -> None:
        self.version = 0
        self.closing = False  # set at shutdown: open streams end
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Wake everyone waiting for a change."""
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def end_streams(self) -> None:
        """Shutting down: every stream waiting for a change returns (see `closing`)."""
        self.closing = True
        self.notify()

    async def wait_changed(self, version: int, timeout: float) -> int:
        """Wait until the version moves past `version` or `timeout` passes; return the version."""
        if self.version == version:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self.version


@dataclass(frozen=True)
class PlanAnswer:
    """One plan as the decider serves it: its pools, its latest good decision's replicas
    (None: none yet), and what the staleness rule needs. A few hundred bytes pickled."""

    namespace: str
    name: str
    mode: str
    pools: tuple[str, ...]
    staleness_factor: float
    interval: float
    replica_counts: Optional[tuple[tuple[str, int], ...]] = None
    made_at: Optional[float] = None
    traffic_requests: Optional[float] = None
    last_error: Optional[str] = None

    @property
    def key(self) -> PlanKey:
        return (self.namespace, self.name)

    def replicas(self, pool: str) -> int:
        return dict(self.replica_counts or ()).get(pool, 0)

    def active(self, pool: str) -> bool:
        return is_active(self.traffic_requests, self.replicas(pool))


@dataclass(frozen=True)
class BookUpdate:
    """Decider -> serving process: answers changed or new, plans gone, and whether the plans
    directory has been loaded (readiness). `full`: replaces the whole book (a new decider)."""

    answers: tuple[PlanAnswer, ...] = ()
    removed: tuple[PlanKey, ...] = ()
    loaded: bool = False
    full: bool = False


class _Entry:
    """A book entry bound to the book's clock: `current()` applies the staleness rule."""

    __slots__ = ("answer", "clock")

    def __init__(self, answer: PlanAnswer, clock: Callable[[], float]) -> None:
        self.answer = answer
        self.clock = clock

    def current(self) -> PlanAnswer:
        a = self.answer
        check_fresh(f"{a.namespace}/{a.name}", a.made_at, a.last_error, self.clock(), a.staleness_factor, a.interval)
        return a


class AnswerBook(Changes):
    """The serving process's table of answers (a PlanView), fed by `apply` on its event loop."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.answers: dict[PlanKey, PlanAnswer] = {}
        self.loaded = False

    def apply(self, update: BookUpdate) -> None:
        if update.full:
            self.answers = {k: a for k, a in self.answers.items() if k in {n.key for n in update.answers}}
        for key in update.removed:
            self.answers.pop(key, None)
        for answer in update.answers:
            old = self.answers.get(answer.key)
            if answer.made_at is None and old is not None and old.made_at is not None and old.pools == answer.pools:
                # A decider started again has no decision yet: the one received before is
                # served until its own staleness bound, as a reloaded plan's is.
                answer = replace(answer, replica_counts=old.replica_counts, made_at=old.made_at,
                                 traffic_requests=old.traffic_requests)
            self.answers[answer.key] = answer
        self.loaded = self.loaded or update.loaded
        self.notify()

    def lookup(self, ref: PoolRef) -> _Entry:
        answer = self.answers.get((ref.namespace, ref.plan))
        if answer is None:
            raise not_found(ref)
        check_pool(ref, answer.mode, answer.pools)
        return _Entry(answer, self.clock)


def book_changes(sent: Mapping[PlanKey, PlanAnswer], now: Mapping[PlanKey, PlanAnswer]) -> tuple[tuple[PlanAnswer, ...], tuple[PlanKey, ...]]:
    """The answers to send (new or changed since `sent`) and the plans gone."""
    changed = tuple(a for k, a in now.items() if sent.get(k) != a)
    removed = tuple(k for k in sent if k not in now)
    return changed, removed
