"""Each pool's replicas over one simulated run, and how a controller's targets change them.

scaler.sim.engine owns time, the event queue and routing; `Replicas` owns the workers of
every pool and their bookkeeping, and asks the engine (through the callbacks it is built
with) to make a worker ready now, or to schedule its readiness or a replica-count sample:

- `scale(pool, want, t)`: a new replica is billed from `t` and serves after its pool's
  start-up delay; scale-down removes starting replicas first (newest first), then the ready
  ones with the least backlog, which drain (take nothing new, finish what they hold, billed
  until they end);
- `apply(t, targets, kind)`: a controller's targets, applied at once, or for a pool with an
  actuation path (scaler.sim.actuation: KEDA's polls and the HPA's syncs) only the scaler's
  new answer; `actuate(pool, t)` runs that path's polls and syncs due and applies the spec
  they leave;
- what the run reports: every replica's life (`lives`), the replica counts after each change
  (`samples`) and every decision (`decisions`), as scaler.sim.results defines them.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

from scaler.sim.actuation import ActuationConfig, ActuationPath
from scaler.sim.keda import ScalerReading
from scaler.sim.results import DecisionRecord, PoolSample, ReplicaLife
from scaler.sim.workers import WORKER_CLASSES, DecodeWorker, Worker


class Replicas:
    """The workers of each pool, the actuation paths of the actuated ones, and what the run reports."""

    def __init__(
        self,
        pools: tuple[str, ...],
        startup_delay: Callable[[str], float],
        make_ready: Callable[[Worker, float], None],
        ready_later: Callable[[float, Worker], None],
        sample_later: Callable[[float], None],
        actuation: Optional[Mapping[str, ActuationConfig]] = None,
    ) -> None:
        """`make_ready(w, t)`: the worker serves from t (the engine routes what waited for it);
        `ready_later(t, w)` / `sample_later(t)`: have the engine do that / call `sample` at t."""
        self.pools = pools
        self._startup_delay = startup_delay
        self._make_ready = make_ready
        self._ready_later = ready_later
        self._sample_later = sample_later
        self.workers: dict[str, list] = {p: [] for p in pools}
        self.lives: list[ReplicaLife] = []
        self.samples: list[PoolSample] = []
        self.decisions: list[DecisionRecord] = []
        self._actuation = {p: c for p, c in (actuation or {}).items() if p in pools}
        self._paths: dict[str, ActuationPath] = {}
        self._reading: dict[str, int] = {}  # the scaler's latest answer per actuated pool

    # -- replicas ---------------------------------------------------------------------------
    def add(self, pool: str, t: float, ready_now: bool) -> None:
        workers = self.workers[pool]
        ready_at = t if ready_now else t + self._startup_delay(pool)
        w = WORKER_CLASSES[pool](len(workers), t, ready_at)
        workers.append(w)
        if ready_now:
            self._make_ready(w, t)
        else:
            self._ready_later(ready_at, w)

    def end(self, w: Worker, t: float) -> None:
        w.end(t)
        self.lives.append(
            ReplicaLife(pool=w.pool, requested_at=w.requested_at, ready_at=w.ready_at if w.ready else None, ended_at=t)
        )

    def maybe_end(self, w: DecodeWorker, t: float) -> None:
        """End a draining decode (or aggregated) worker once it holds nothing."""
        if w.draining and w.ended_at is None and w.idle:
            self.end(w, t)
            self.sample(t)

    def end_all(self, t: float) -> None:
        """End every replica still running at the end of the run (none before it was requested)."""
        for pool in self.pools:
            for w in self.workers[pool]:
                if w.ended_at is None:
                    self.end(w, max(t, w.requested_at))

    def live(self, pool: str) -> list:
        return [w for w in self.workers[pool] if w.ended_at is None and not w.draining]

    def sample(self, t: float) -> None:
        for pool in self.pools:
            # a draining prefill replica's end is known ahead (its queue empties then)
            ws = [w for w in self.workers[pool] if w.ended_at is None or w.ended_at > t]
            self.samples.append(
                PoolSample(
                    t=t,
                    pool=pool,
                    desired=sum(1 for w in ws if not w.draining),
                    ready=sum(1 for w in ws if w.ready and not w.draining),
                    billed=len(ws),
                )
            )

    def ready_counts(self) -> dict[str, int]:
        return {p: sum(1 for w in self.workers[p] if w.serving) for p in self.pools}

    def provisioned_counts(self) -> dict[str, int]:
        """Replicas per pool that are starting or ready, not draining (the replicas spec)."""
        return {p: len(self.live(p)) for p in self.pools}

    def scale(self, pool: str, want: int, t: float) -> bool:
        """Set the pool's live replicas to `want`; True if that changed anything."""
        live = self.live(pool)
        if want > len(live):
            for _ in range(want - len(live)):
                self.add(pool, t, ready_now=False)
            return True
        if want < len(live):
            self._remove(live, len(live) - want, t)
            return True
        return False

    def _remove(self, live: list[Worker], count: int, t: float) -> None:
        """Scale down: starting replicas first (newest first), then the ready ones with the
        least backlog. A ready one drains: it ends when it is idle, or when its known work ends."""
        starting = sorted((w for w in live if not w.ready), key=lambda w: -w.idx)
        ready = sorted((w for w in live if w.ready), key=lambda w: (w.backlog(t), w.idx))
        for w in (starting + ready)[:count]:
            w.drain()
            if not w.ready:
                self.end(w, t)
                continue
            end = w.drain_end(t)
            if end is not None:
                self.end(w, end)
                if end > t:
                    self._sample_later(end)

    # -- targets and actuation --------------------------------------------------------------
    def start_actuation(self, initial: Mapping[str, int], hpa_phase_seconds: Optional[float]) -> list[str]:
        """Build each actuated pool's path at the initial replicas; the pools, in the order given."""
        for pool, acfg in self._actuation.items():
            hpa_start = acfg.hpa.controller.sync_period_seconds / 2 if hpa_phase_seconds is None else hpa_phase_seconds
            self._paths[pool] = ActuationPath(acfg, initial.get(pool, 0), keda_start=0.0, hpa_start=hpa_start)
            # before any decision the scaler answers what the deployment runs (a warm start)
            self._reading[pool] = initial.get(pool, 0)
        return list(self._paths)

    def next_actuation(self, pool: str) -> float:
        """When the pool's next KEDA poll or HPA sync is due."""
        return self._paths[pool].next_event_time()

    def apply(self, t: float, targets: Mapping[str, int], kind: str) -> None:
        """A controller's targets: applied at once, or (an actuated pool) the scaler's new answer."""
        changed = False
        scaled = False
        for pool in self.pools:
            if pool not in targets:
                continue
            want = max(0, int(targets[pool]))
            if pool in self._paths:
                changed |= want != self._reading[pool]
                self._reading[pool] = want
            elif self.scale(pool, want, t):
                changed = scaled = True
        self.decisions.append(DecisionRecord(t=t, kind=kind, targets=dict(targets), changed=changed))
        if scaled:
            self.sample(t)

    def actuate(self, pool: str, t: float) -> None:
        """Run the pool's KEDA polls and HPA syncs due at t; apply the spec they leave."""
        path = self._paths[pool]
        reading = ScalerReading(float(self._reading[pool]), active=self._reading[pool] > 0)
        spec = path.advance(t, lambda _t: reading)
        if self.scale(pool, spec, t):
            self.sample(t)
