"""Discrete-event model of a disaggregated deployment: prefill and decode pools under a controller.

Over 450 lines, on purpose: the event loop and the routing and request accounting it
dispatches to share the per-request arrays and the event heap, and stay together; the pools'
replicas are in scaler.sim.replicas (see Layout below).

The model (docs/simulation.md explains it with its limits):

- A prefill worker serves its own FIFO queue one request at a time; a request takes the
  profiled batch-1 TTFT for its ISL. The router sends each arrival to the ready worker that
  will be free soonest, so a request's prefill start and end are known when it arrives
  (Lindley's recursion): prefill needs no queue events at all.
- A decode worker batches continuously. All requests in its batch advance one token per
  step; the step time is the profiled ITL at the worker's KV usage (sum of contexts /
  max_kv_tokens) and mean context. Between events at a worker the batch is fixed, so the
  time of its next completion is computed analytically; the step time is re-read at every
  event and at least every REFRESH_STEPS steps, because contexts grow as tokens are made.
  A request is admitted when its ISL+OSL fits in the KV cache still unreserved (the whole
  request is reserved on admission: no preemption), else it waits in the worker's FIFO.
- The first output token comes from prefill; decode makes the other OSL-1 tokens. A
  request's ITL is (finish - first token) / (OSL - 1), so time spent waiting for decode
  admission counts toward ITL, as a client would see it.
- A replica costs GPUs from the moment it is requested; it serves only after its pool's
  start-up delay. A removed replica takes no new requests, finishes what it holds, and costs
  GPUs until then. Scale-down removes starting replicas first (newest first), then the ready
  replicas with the least outstanding work.

Aggregated plans (mode agg, one pool `worker`): each worker is a decode worker as above that
also holds its own FIFO prefill queue, served one request at a time at the batch-1 TTFT. While
a prefill runs on a worker, that worker's decode steps pause (no chunked prefill), so prefill
load raises ITL and decode load lengthens nothing but the KV wait. A finished prefill joins
the same worker's decode batch (its KV is there). Arrivals go to the ready worker with the
least queued prefill tokens plus reserved decode KV tokens.

The controller (scaler.sim.controller has the protocol, scaler.sim.policies the policies) is
called at its throughput and load intervals (and poll interval, if it has one) with the
observations the scaler would get from Prometheus and returns replica targets. Without an
actuation path they apply at once; with one (`actuation`: scaler.sim.actuation's KEDA polling
loop and HPA sync loop per pool) a target is only the scaler's answer, and the replicas change
when an HPA sync turns it into a new spec (tolerance, stabilisation, rate policies).

Probe runs (the oracle's and static-sweep's searches) may pass a `StopRule`: the run stops as
soon as more requests have missed the SLA than the target attainment allows, since the answer
(fails) is then known.

Layout: this module holds the event loop and routing; each pool's replicas (adding,
scale-down, draining, the actuation paths, what the run reports about them) are in
scaler.sim.replicas, the workers' state and its transitions in scaler.sim.workers, the run's
output types in scaler.sim.results, the input (`Arrivals`) in scaler.sim.workload.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, TypeVar

import numpy as np

from scaler.core.interpolation import PerfModel
from scaler.core.observations import TrafficWindow, WorkerLoad
from scaler.sim.actuation import ActuationConfig
from scaler.sim.controller import Controller
from scaler.sim.latency import ITL, TTFT, LatencyLog
from scaler.sim.replicas import Replicas
from scaler.sim.results import SimResult
from scaler.sim.window import WindowStats
from scaler.sim.workers import AggWorker, DecodeWorker, PrefillWorker, Worker
from scaler.sim.workload import Arrivals

# Re-read a decode worker's step time at least this often (in steps): contexts grow by one
# token per step, which moves the ITL slowly; 64 steps keeps the error well under 1%.
REFRESH_STEPS = 64.0
POOLS = ("prefill", "decode")
AGG_POOLS = ("worker",)

# event kinds, ordered so that at equal times completions free capacity before ticks look
_EV_PREFILL_DONE = 0
_EV_DECODE = 1
_EV_READY = 2
_EV_THROUGHPUT_TICK = 3
_EV_LOAD_TICK = 4
_EV_POLL_TICK = 5
_EV_ACTUATE = 6  # a pool's KEDA poll or HPA sync (after the ticks: it reads their answers)
_EV_SAMPLE = 7  # record replica counts (a drained prefill replica's known end)

W = TypeVar("W", bound=Worker)


@dataclass(frozen=True)
class EngineConfig:
    """The deployment simulated, apart from the hardware (the PerfModel) and the policy."""

    gpus_per_replica: Mapping[str, int]
    startup_delay_seconds: float = 60.0
    # initial replicas start ready (a warm deployment); later ones pay the start-up delay
    initial_ready: bool = True
    # planner ticks stop this long after the last arrival even if requests are still stuck
    # (a policy that leaves a pool at zero replicas): they are reported unfinished
    max_drain_seconds: float = 86400.0
    # "disagg": pools prefill and decode; "agg": one pool `worker` serving both phases
    mode: str = "disagg"
    # start-up delay per pool (pools it does not name take startup_delay_seconds)
    startup_delay_by_pool: Optional[Mapping[str, float]] = None
    # with an actuation path: when the HPA's first sync runs (then every sync period). Default
    # half a period: the HPA's phase is unrelated to the scaler's ticks, and half a period is
    # the mean delay from a decision to the sync that reads it.
    hpa_phase_seconds: Optional[float] = None
    # the TTFT histogram's bucket bound at the SLA (ms): windows report the fraction above it
    ttft_bound_ms: Optional[float] = None
    # the index of dispersion's bin (sources.dispersion_bin of the plan's scrape interval)
    dispersion_bin_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in ("disagg", "agg"):
            raise ValueError(f"mode must be disagg or agg, not {self.mode!r}")

    @property
    def pools(self) -> tuple[str, ...]:
        return AGG_POOLS if self.mode == "agg" else POOLS

    def startup_delay(self, pool: str) -> float:
        by_pool = self.startup_delay_by_pool or {}
        return float(by_pool.get(pool, self.startup_delay_seconds))


@dataclass(frozen=True)
class StopRule:
    """Stop a probe run once more than `max_misses` requests missed the SLA: a TTFT above
    `ttft_ms`, or (when `itl_ms` is set) a mean ITL above `itl_ms`; each request counts once."""

    ttft_ms: float
    itl_ms: Optional[float]
    max_misses: float


class _Stopped(Exception):
    """Raised inside the event loop when a StopRule's miss count is exceeded."""


def _least_loaded(workers: Iterable[W], t: float) -> Optional[W]:
    """The serving worker with the least backlog at t (the first of equals), None if none serves."""
    best: Optional[W] = None
    best_backlog = math.inf
    for w in workers:
        if w.serving:
            b = w.backlog(t)
            if b < best_backlog:
                best, best_backlog = w, b
    return best


class Engine:
    """One simulation run. Build, then call `run()` once."""

    def __init__(
        self,
        workload: Arrivals,
        model: PerfModel,
        controller: Controller,
        config: EngineConfig,
        actuation: Optional[Mapping[str, ActuationConfig]] = None,
        stop: Optional[StopRule] = None,
    ) -> None:
        self.w = workload
        self.model = model
        self.ctl = controller
        self.cfg = config
        self.max_kv = float(model.decode.max_kv_tokens)
        n = len(workload)
        self._isl = workload.isl.tolist()
        self._osl = workload.osl.tolist()
        self._arr = workload.t.tolist()
        self._window = WindowStats(self._arr, workload.isl, config.ttft_bound_ms, config.dispersion_bin_seconds)
        self.prefill_end = [math.nan] * n
        self.finish = [math.nan] * n
        self._heap: list = []
        self._seq = 0
        self.pools = config.pools
        self.replicas = Replicas(
            self.pools,
            config.startup_delay,
            self._make_ready,
            lambda t, w: self._push(t, _EV_READY, None, w),
            lambda t: self._push(t, _EV_SAMPLE),
            actuation,
        )
        self._workers = self.replicas.workers  # routing reads them on every request
        self._pending: dict[str, deque[int]] = {p: deque() for p in self.pools}
        # where a request goes next, per pool, and where an arrival goes
        self._route: dict[str, Callable[[int, float], None]] = {
            "prefill": self._route_prefill, "decode": self._route_decode, "worker": self._route_agg,
        }
        self._route_arrival = self._route["worker" if config.mode == "agg" else "prefill"]
        self._prefill_done = self._agg_prefill_done if config.mode == "agg" else self._disagg_prefill_done
        self._in_flight = 0
        self._next_arrival = 0
        self._last_event_t = 0.0
        self._service_cache: dict[int, float] = {}
        self._poll_interval: Optional[float] = getattr(controller, "poll_interval_seconds", None)
        # every request's latency by time, for a controller that reads histograms
        self.latency: Optional[LatencyLog] = LatencyLog() if self._poll_interval else None
        self._stop = stop
        self._misses = 0
        self._missed: Optional[list[bool]] = [False] * n if stop is not None else None
        self.stopped = False

    # -- event queue ----------------------------------------------------------------------
    def _push(self, t: float, kind: int, a: object = None, b: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, a, b))

    def _make_ready(self, w: Worker, t: float) -> None:
        w.make_ready(t)
        pending = self._pending[w.pool]
        route = self._route[w.pool]
        while pending:
            route(pending.popleft(), t)

    # -- prefill ----------------------------------------------------------------------------
    def _service_seconds(self, isl: int) -> float:
        s = self._service_cache.get(isl)
        if s is None:
            s = self.model.prefill.ttft_ms(float(isl)) / 1000.0
            self._service_cache[isl] = s
        return s

    def _route_prefill(self, req: int, t: float) -> None:
        best = _least_loaded(self._workers["prefill"], t)
        if best is None:
            self._pending["prefill"].append(req)
            return
        isl = self._isl[req]
        end = best.enqueue(t, isl, self._service_seconds(isl))
        self._push(end, _EV_PREFILL_DONE, req, best)

    def _first_token(self, req: int, w: Worker, t: float) -> None:
        self.prefill_end[req] = t
        ttft_ms = (t - self._arr[req]) * 1000.0
        self._window.first_token(ttft_ms)
        w.last_ttft_ms = ttft_ms
        w.last_isl = float(self._isl[req])
        if self.latency is not None:
            self.latency.add(TTFT, t, ttft_ms)
        if self._stop is not None and ttft_ms > self._stop.ttft_ms:
            self._miss(req)

    def _miss(self, req: int) -> None:
        assert self._missed is not None and self._stop is not None
        if not self._missed[req]:
            self._missed[req] = True
            self._misses += 1
            if self._misses > self._stop.max_misses:
                raise _Stopped

    def _disagg_prefill_done(self, req: int, w: PrefillWorker, t: float) -> None:
        self._first_token(req, w, t)
        if self._osl[req] <= 1:
            self._complete(req, t)
        else:
            self._route_decode(req, t)

    # -- aggregated workers -------------------------------------------------------------------
    def _route_agg(self, req: int, t: float) -> None:
        best = _least_loaded(self._workers["worker"], t)
        if best is None:
            self._pending["worker"].append(req)
            return
        best.enqueue(req, self._isl[req])
        if not best.prefilling:
            self._start_agg_prefill(best, t)

    def _start_agg_prefill(self, w: AggWorker, t: float) -> None:
        req = w.begin_prefill(t)
        self._push(t + self._service_seconds(self._isl[req]), _EV_PREFILL_DONE, req, w)

    def _agg_prefill_done(self, req: int, w: AggWorker, t: float) -> None:
        self._first_token(req, w, t)
        if self._osl[req] <= 1:
            self._complete(req, t)
        w.end_prefill(t, self._isl[req])
        if self._osl[req] > 1:
            # decode on the same worker: its KV cache holds the prompt
            w.offer(req, self._isl[req], self._osl[req], self.max_kv)
        if w.pq:
            self._start_agg_prefill(w, t)  # prefill first: decode waits (no chunked prefill)
        else:
            self._reschedule(w, t)
        self.replicas.maybe_end(w, t)

    # -- decode -----------------------------------------------------------------------------
    def _route_decode(self, req: int, t: float) -> None:
        best = _least_loaded(self._workers["decode"], t)
        if best is None:
            self._pending["decode"].append(req)
            return
        best.advance(t)
        if best.offer(req, self._isl[req], self._osl[req], self.max_kv):
            self._reschedule(best, t)

    def _reschedule(self, w: DecodeWorker, t: float) -> None:
        w.version += 1
        if not w.n:
            w.tau = 0.0
            return
        if w.paused:
            return  # the prefill's end reschedules
        ctx_sum = w.s0 + w.n * w.s
        itl_ms = self.model.decode.itl_ms(min(ctx_sum / self.max_kv, 1.0), ctx_sum / w.n)
        w.tau = itl_ms / 1000.0
        w.last_itl_ms = itl_ms
        steps = min(w.heap[0][0] - w.s, REFRESH_STEPS)
        self._push(t + max(steps, 0.0) * w.tau, _EV_DECODE, w, w.version)

    def _decode_event(self, w: DecodeWorker, version: int, t: float) -> None:
        if version != w.version:
            return
        w.advance(t)
        for req in w.finish_due(self._isl, self._osl, self.max_kv):
            self._complete(req, t)
        self._reschedule(w, t)
        self.replicas.maybe_end(w, t)

    # -- completions and observations -------------------------------------------------------
    def _complete(self, req: int, t: float) -> None:
        self.finish[req] = t
        self._in_flight -= 1
        self._last_event_t = t
        osl = self._osl[req]
        decode_seconds = t - self.prefill_end[req]
        self._window.completed(osl, t - self._arr[req], decode_seconds)
        if osl > 1 and (self.latency is not None or self._stop is not None):
            itl_ms = decode_seconds * 1000.0 / (osl - 1)
            if self.latency is not None:
                self.latency.add(ITL, t, itl_ms)
            if self._stop is not None and self._stop.itl_ms is not None and itl_ms > self._stop.itl_ms:
                self._miss(req)

    def prefill_backlog(self, t: float) -> int:
        """Requests waiting for prefill at t, not yet started (queued at a worker, or held for
        want of a serving one)."""
        pool = "worker" if self.cfg.mode == "agg" else "prefill"
        waiting = len(self._pending[pool])
        for w in self._workers[pool]:
            if w.ended_at is None or w.ended_at > t:
                waiting += len(w.pq) if isinstance(w, AggWorker) else w.waiting(t)
        return waiting

    def traffic_window(self, t: float, seconds: float) -> TrafficWindow:
        """What the recording rules would report at time t over the last `seconds`."""
        return self._window.window(t, seconds, backlog=float(self.prefill_backlog(t)))

    def worker_loads(self, t: float) -> tuple[WorkerLoad, ...]:
        """What the load path would scrape at t: one report per serving worker."""
        return tuple(w.load_report(t) for pool in self.pools for w in self._workers[pool] if w.serving)

    def _busy(self, t: float) -> bool:
        if self._next_arrival < len(self._arr):
            return True
        last = self._arr[-1] if self._arr else 0.0
        return self._in_flight > 0 and t <= last + self.cfg.max_drain_seconds

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> SimResult:
        initial = {p: int(c) for p, c in self.ctl.initial_replicas().items()}
        for pool, count in initial.items():
            for _ in range(count):
                self.replicas.add(pool, 0.0, ready_now=self.cfg.initial_ready)
        self.replicas.sample(0.0)
        for pool in self.replicas.start_actuation(initial, self.cfg.hpa_phase_seconds):
            self._push(self.replicas.next_actuation(pool), _EV_ACTUATE, pool)
        try:
            self._loop()
        except _Stopped:
            self.stopped = True
            self._last_event_t = max(self._last_event_t, self._heap[0][0] if self._heap else 0.0)
        return self._result()

    def _loop(self) -> None:
        # 0.0 stands for "no throughput path": no tick is ever scheduled then.
        ti = self.ctl.throughput_interval_seconds or 0.0
        li = self.ctl.load_interval_seconds
        pi = self._poll_interval
        if ti:
            self._push(ti, _EV_THROUGHPUT_TICK)
        if li:
            self._push(li, _EV_LOAD_TICK)
        if pi:
            self._push(pi, _EV_POLL_TICK)
        arr = self._arr
        n = len(arr)
        heap = self._heap
        pop = heapq.heappop
        while True:
            i = self._next_arrival
            next_arrival = arr[i] if i < n else math.inf
            if heap and heap[0][0] <= next_arrival:
                t, kind, _, a, b = pop(heap)
                if kind == _EV_DECODE:
                    self._decode_event(a, b, t)
                elif kind == _EV_PREFILL_DONE:
                    self._prefill_done(a, b, t)
                elif kind == _EV_READY:
                    if b.ended_at is None and not b.draining:
                        self._make_ready(b, t)
                        self.replicas.sample(t)
                elif kind == _EV_ACTUATE:
                    if self._busy(t):
                        self.replicas.actuate(a, t)
                        self._push(self.replicas.next_actuation(a), _EV_ACTUATE, a)
                elif kind == _EV_THROUGHPUT_TICK:
                    if self._busy(t):
                        window = self.traffic_window(t, ti)
                        self._window.reset()
                        targets = self.ctl.on_traffic(t, window, self.replicas.ready_counts())
                        if targets is not None:
                            self.replicas.apply(t, targets, "throughput")
                        self._push(t + ti, _EV_THROUGHPUT_TICK)
                elif kind == _EV_SAMPLE:
                    self.replicas.sample(t)
                elif kind == _EV_LOAD_TICK:
                    if self._busy(t):
                        targets = self.ctl.on_load(t, self.worker_loads(t), self.replicas.ready_counts())
                        if targets is not None:
                            self.replicas.apply(t, targets, "load")
                        self._push(t + li, _EV_LOAD_TICK)
                elif kind == _EV_POLL_TICK:
                    if self._busy(t):
                        assert self.latency is not None and pi
                        targets = self.ctl.on_poll(  # type: ignore[attr-defined]
                            t, self.latency, self.replicas.provisioned_counts(), self.replicas.ready_counts()
                        )
                        if targets is not None:
                            self.replicas.apply(t, targets, "poll")
                        self._push(t + pi, _EV_POLL_TICK)
            elif i < n:
                self._next_arrival = i + 1
                self._in_flight += 1
                self._route_arrival(i, next_arrival)
            else:
                break

    def _result(self) -> SimResult:
        end = self._last_event_t
        self.replicas.end_all(end)
        arrivals = self.w.t
        prefill_end = np.asarray(self.prefill_end)
        finish = np.asarray(self.finish)
        osl = self.w.osl
        with np.errstate(invalid="ignore", divide="ignore"):
            itl = np.where(osl > 1, (finish - prefill_end) * 1000.0 / (osl - 1), np.nan)
        return SimResult(
            policy=self.ctl.name,
            workload=self.w,
            prefill_end=prefill_end,
            finish=finish,
            ttft_ms=(prefill_end - arrivals) * 1000.0,
            itl_ms=itl,
            end_time=end,
            replicas=sorted(self.replicas.lives, key=lambda r: (r.pool, r.requested_at)),
            samples=self.replicas.samples,
            decisions=self.replicas.decisions,
            gpus_per_replica=dict(self.cfg.gpus_per_replica),
            stopped=self.stopped,
        )


def simulate(
    workload: Arrivals,
    model: PerfModel,
    controller: Controller,
    config: EngineConfig,
    actuation: Optional[Mapping[str, ActuationConfig]] = None,
    stop: Optional[StopRule] = None,
) -> SimResult:
    """Run one policy over a workload on the hardware described by `model`.

    `actuation`: per pool, the KEDA/HPA path the controller's targets go through (None or a
    pool left out: applied at once). `stop`: end a probe run early once it cannot pass.
    """
    return Engine(workload, model, controller, config, actuation, stop).run()
