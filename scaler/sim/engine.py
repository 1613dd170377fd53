"""Discrete-event model of a disaggregated deployment: prefill and decode pools under a controller.

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
- A replica costs GPUs from the moment it is requested; it serves only after the start-up
  delay. A removed replica takes no new requests, finishes what it holds, and costs GPUs
  until then. Scale-down removes starting replicas first (newest first), then the ready
  replicas with the least outstanding work.

Aggregated plans (mode agg, one pool `worker`): each worker is a decode worker as above that
also holds its own FIFO prefill queue, served one request at a time at the batch-1 TTFT. While
a prefill runs on a worker, that worker's decode steps pause (no chunked prefill), so prefill
load raises ITL and decode load lengthens nothing but the KV wait. A finished prefill joins
the same worker's decode batch (its KV is there). Arrivals go to the ready worker with the
least queued prefill tokens plus reserved decode KV tokens.

The controller (scaler.sim.policies) is called at its throughput and load intervals with
the observations the scaler would get from Prometheus and returns replica targets.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Optional, Protocol, Sequence

import numpy as np

from scaler.core.interpolation import PerfModel
from scaler.core.observations import TrafficWindow, WorkerLoad

# Re-read a decode worker's step time at least this often (in steps): contexts grow by one
# token per step, which moves the ITL slowly; 64 steps keeps the error well under 1%.
REFRESH_STEPS = 64.0
# KV cache block size used to report `active_decode_blocks` to the load path.
KV_BLOCK_TOKENS = 16
POOLS = ("prefill", "decode")
AGG_POOLS = ("worker",)

# event kinds, ordered so that at equal times completions free capacity before ticks look
_EV_PREFILL_DONE = 0
_EV_DECODE = 1
_EV_READY = 2
_EV_THROUGHPUT_TICK = 3
_EV_LOAD_TICK = 4
_EV_SAMPLE = 5  # record replica counts (a drained prefill replica's known end)


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival: time (s from the start), input and output tokens."""

    t: np.ndarray
    isl: np.ndarray
    osl: np.ndarray

    def __post_init__(self) -> None:
        # own copies: freezing them must not freeze the caller's arrays
        t = np.array(self.t, dtype=np.float64)
        isl = np.array(self.isl, dtype=np.int64)
        osl = np.array(self.osl, dtype=np.int64)
        if not (len(t) == len(isl) == len(osl)):
            raise ValueError("t, isl and osl must have the same length")
        if len(t) and (not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0)):
            raise ValueError("arrival times must be finite and sorted")
        if np.any(isl < 1) or np.any(osl < 1):
            raise ValueError("ISL and OSL must be >= 1")
        for name, arr in (("t", t), ("isl", isl), ("osl", osl)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def span_s(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self.t) else 0.0


class Controller(Protocol):
    """What the engine needs from a policy (scaler.sim.policies builds these)."""

    name: str

    def initial_replicas(self) -> Mapping[str, int]: ...

    @property
    def throughput_interval_s(self) -> Optional[float]: ...

    @property
    def load_interval_s(self) -> Optional[float]: ...

    def on_traffic(
        self, t: float, window: TrafficWindow, ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]: ...

    def on_load(
        self, t: float, workers: tuple[WorkerLoad, ...], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]: ...


@dataclass(frozen=True)
class EngineConfig:
    gpus_per_replica: Mapping[str, int]
    startup_delay_s: float = 60.0
    # initial replicas start ready (a warm deployment); later ones pay the start-up delay
    initial_ready: bool = True
    # planner ticks stop this long after the last arrival even if requests are still stuck
    # (a policy that leaves a pool at zero replicas): they are reported unfinished
    max_drain_s: float = 86400.0
    # "disagg": pools prefill and decode; "agg": one pool `worker` serving both phases
    mode: str = "disagg"

    def __post_init__(self) -> None:
        if self.mode not in ("disagg", "agg"):
            raise ValueError(f"mode must be disagg or agg, not {self.mode!r}")

    @property
    def pools(self) -> tuple[str, ...]:
        return AGG_POOLS if self.mode == "agg" else POOLS


@dataclass(frozen=True)
class ReplicaLife:
    pool: str
    requested_at: float
    ready_at: Optional[float]  # None: removed before it became ready
    ended_at: float


@dataclass(frozen=True)
class PoolSample:
    """Replica counts of one pool right after a change at time t."""

    t: float
    pool: str
    desired: int   # replicas the controller wants (starting + ready, not draining)
    ready: int     # serving
    billed: int    # costing GPUs: starting + ready + draining


@dataclass(frozen=True)
class DecisionRecord:
    t: float
    kind: str  # "throughput" | "load"
    targets: Mapping[str, int]
    changed: bool


@dataclass
class SimResult:
    """What one run produced; scaler.sim.report turns it into numbers."""

    policy: str
    workload: Workload
    prefill_end: np.ndarray  # s, first token
    finish: np.ndarray       # s, last token
    ttft_ms: np.ndarray
    itl_ms: np.ndarray       # NaN for single-token requests (no inter-token gap)
    end_time: float
    replicas: list[ReplicaLife]
    samples: list[PoolSample]
    decisions: list[DecisionRecord] = field(default_factory=list)
    gpus_per_replica: Mapping[str, int] = field(default_factory=dict)

    @property
    def scale_events(self) -> int:
        """Pool target changes applied (one per pool whose target moved)."""
        return sum(1 for _ in self._changes())

    def _changes(self) -> Iterator[PoolSample]:
        last: dict[str, int] = {}
        for s in self.samples:
            prev = last.get(s.pool)
            if prev is not None and s.desired != prev:
                yield s
            last[s.pool] = s.desired

    def peak_gpus(self) -> int:
        """The most GPUs billed at once: the peak over time of the sum over pools of billed
        replicas times GPUs per replica. Counts are taken after the last sample at each time
        (samples at one time are one instant: a replica added and removed then costs nothing)."""
        billed: dict[str, int] = {}
        peak = 0
        samples = self.samples
        for i, s in enumerate(samples):
            billed[s.pool] = s.billed
            if i + 1 == len(samples) or samples[i + 1].t != s.t:
                peak = max(peak, sum(n * self.gpus_per_replica[p] for p, n in billed.items()))
        return peak

    def gpu_hours(self, pool: Optional[str] = None) -> float:
        return sum(
            (r.ended_at - r.requested_at) * self.gpus_per_replica[r.pool]
            for r in self.replicas
            if pool is None or r.pool == pool
        ) / 3600.0


class _Worker:
    __slots__ = ("idx", "requested_at", "ready_at", "ready", "draining", "ended_at")

    def __init__(self, idx: int, requested_at: float, ready_at: float) -> None:
        self.idx = idx
        self.requested_at = requested_at
        self.ready_at = ready_at
        self.ready = False
        self.draining = False
        self.ended_at: Optional[float] = None

    @property
    def serving(self) -> bool:
        """Takes new requests: up, not draining, not removed."""
        return self.ready and not self.draining and self.ended_at is None


class _PrefillWorker(_Worker):
    __slots__ = ("free_at", "queue", "last_ttft_ms", "last_isl")

    def __init__(self, idx: int, requested_at: float, ready_at: float) -> None:
        super().__init__(idx, requested_at, ready_at)
        self.free_at = ready_at
        self.queue: deque = deque()  # (prefill end, isl), in FIFO order
        self.last_ttft_ms: Optional[float] = None
        self.last_isl: Optional[float] = None

    def active_tokens(self, t: float) -> float:
        q = self.queue
        while q and q[0][0] <= t:
            q.popleft()
        return float(sum(isl for _, isl in q))


class _DecodeWorker(_Worker):
    __slots__ = (
        "s", "t_last", "tau", "n", "s0", "heap", "kv_reserved", "waitq", "wait_kv", "version", "last_itl_ms",
        "paused",
    )

    def __init__(self, idx: int, requested_at: float, ready_at: float) -> None:
        super().__init__(idx, requested_at, ready_at)
        self.s = 0.0            # steps made since creation (fractional)
        self.t_last = 0.0       # time at which `s` was last brought up to date
        self.tau = 0.0          # current step time, seconds
        self.n = 0              # requests in the batch
        self.s0 = 0.0           # sum over the batch of (isl - admission step): sum ctx = s0 + n*s
        self.heap: list = []    # (finish step, request index)
        self.kv_reserved = 0.0
        self.waitq: deque = deque()
        self.wait_kv = 0.0
        self.version = 0
        self.last_itl_ms: Optional[float] = None
        self.paused = False     # an aggregated worker's decode stops while it runs a prefill

    def advance(self, t: float) -> None:
        if self.n and self.tau > 0 and not self.paused:
            self.s += (t - self.t_last) / self.tau
        self.t_last = t

    @property
    def load(self) -> float:
        return self.kv_reserved + self.wait_kv


class _AggWorker(_DecodeWorker):
    """A decode worker that also runs its own prefill queue (aggregated serving)."""

    __slots__ = ("pq", "pq_tokens", "prefilling", "last_ttft_ms", "last_isl")

    def __init__(self, idx: int, requested_at: float, ready_at: float) -> None:
        super().__init__(idx, requested_at, ready_at)
        self.pq: deque = deque()   # requests waiting for prefill, FIFO
        self.pq_tokens = 0.0       # ISL of the queued requests plus the one in prefill
        self.prefilling = False
        self.last_ttft_ms: Optional[float] = None
        self.last_isl: Optional[float] = None

    @property
    def agg_load(self) -> float:
        return self.pq_tokens + self.kv_reserved + self.wait_kv

    @property
    def idle(self) -> bool:
        return not self.prefilling and not self.pq and self.n == 0 and not self.waitq


class Engine:
    """One simulation run. Build, then call `run()` once."""

    def __init__(
        self,
        workload: Workload,
        model: PerfModel,
        controller: Controller,
        config: EngineConfig,
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
        self._isl_cum = np.concatenate([[0.0], np.cumsum(workload.isl, dtype=np.float64)])
        self.prefill_end = [math.nan] * n
        self.finish = [math.nan] * n
        self._heap: list = []
        self._seq = 0
        self.pools = config.pools
        self.agg = config.mode == "agg"
        self._workers: dict[str, list] = {p: [] for p in self.pools}
        self._pending: dict[str, deque] = {p: deque() for p in self.pools}
        self._lives: list[ReplicaLife] = []
        self._samples: list[PoolSample] = []
        self._decisions: list[DecisionRecord] = []
        self._in_flight = 0
        self._next_arrival = 0
        self._last_event_t = 0.0
        self._service_cache: dict[int, float] = {}
        self._reset_window()

    # -- event queue ----------------------------------------------------------------------
    def _push(self, t: float, kind: int, a: object = None, b: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, a, b))

    # -- replicas ---------------------------------------------------------------------------
    def _add_replica(self, pool: str, t: float, ready_now: bool) -> None:
        workers = self._workers[pool]
        ready_at = t if ready_now else t + self.cfg.startup_delay_s
        cls = {"prefill": _PrefillWorker, "decode": _DecodeWorker, "worker": _AggWorker}[pool]
        w = cls(len(workers), t, ready_at)
        workers.append(w)
        if ready_now:
            self._make_ready(pool, w, t)
        else:
            self._push(ready_at, _EV_READY, pool, w)

    def _make_ready(self, pool: str, w: _Worker, t: float) -> None:
        w.ready = True
        if isinstance(w, _DecodeWorker):
            w.t_last = t
        pending = self._pending[pool]
        while pending:
            req = pending.popleft()
            if pool == "decode":
                self._route_decode(req, t)
            else:
                self._route_prefill(req, t)

    def _end(self, pool: str, w: _Worker, t: float) -> None:
        w.ended_at = t
        self._lives.append(
            ReplicaLife(pool=pool, requested_at=w.requested_at, ready_at=w.ready_at if w.ready else None, ended_at=t)
        )

    def _live(self, pool: str) -> list:
        return [w for w in self._workers[pool] if w.ended_at is None and not w.draining]

    def _sample(self, t: float) -> None:
        for pool in self.pools:
            # a draining prefill replica's end is known ahead (its queue empties then)
            ws = [w for w in self._workers[pool] if w.ended_at is None or w.ended_at > t]
            self._samples.append(
                PoolSample(
                    t=t,
                    pool=pool,
                    desired=sum(1 for w in ws if not w.draining),
                    ready=sum(1 for w in ws if w.ready and not w.draining),
                    billed=len(ws),
                )
            )

    def ready_counts(self) -> dict[str, int]:
        return {
            p: sum(1 for w in self._workers[p] if w.serving) for p in self.pools
        }

    def _apply(self, t: float, targets: Mapping[str, int], kind: str) -> None:
        changed = False
        for pool in self.pools:
            if pool not in targets:
                continue
            want = max(0, int(targets[pool]))
            live = self._live(pool)
            if want > len(live):
                for _ in range(want - len(live)):
                    self._add_replica(pool, t, ready_now=False)
                changed = True
            elif want < len(live):
                self._remove(pool, live, len(live) - want, t)
                changed = True
        self._decisions.append(DecisionRecord(t=t, kind=kind, targets=dict(targets), changed=changed))
        if changed:
            self._sample(t)

    def _remove(self, pool: str, live: list, count: int, t: float) -> None:
        starting = sorted((w for w in live if not w.ready), key=lambda w: -w.idx)
        ready = [w for w in live if w.ready]
        if pool == "prefill":
            ready.sort(key=lambda w: (max(w.free_at, t), w.idx))
        elif pool == "worker":
            ready.sort(key=lambda w: (w.agg_load, w.idx))
        else:
            ready.sort(key=lambda w: (w.load, w.idx))
        for w in (starting + ready)[:count]:
            w.draining = True
            if not w.ready:
                self._end(pool, w, t)
            elif pool == "prefill":
                end = max(w.free_at, t)  # its queue is known: it ends when it empties
                self._end(pool, w, end)
                if end > t:
                    self._push(end, _EV_SAMPLE)
            elif pool == "worker":
                if w.idle:
                    self._end(pool, w, t)
            elif w.n == 0 and not w.waitq:
                self._end(pool, w, t)

    # -- prefill ----------------------------------------------------------------------------
    def _service_s(self, isl: int) -> float:
        s = self._service_cache.get(isl)
        if s is None:
            s = self.model.prefill.ttft_ms(float(isl)) / 1000.0
            self._service_cache[isl] = s
        return s

    def _route_prefill(self, req: int, t: float) -> None:
        if self.agg:
            self._route_agg(req, t)
            return
        best: Optional[_PrefillWorker] = None
        best_free = math.inf
        for w in self._workers["prefill"]:
            if w.serving:
                f = w.free_at if w.free_at > t else t
                if f < best_free:
                    best, best_free = w, f
        if best is None:
            self._pending["prefill"].append(req)
            return
        end = best_free + self._service_s(self._isl[req])
        best.free_at = end
        best.queue.append((end, self._isl[req]))
        self._push(end, _EV_PREFILL_DONE, req, best)

    # -- aggregated workers -------------------------------------------------------------------
    def _route_agg(self, req: int, t: float) -> None:
        best: Optional[_AggWorker] = None
        best_load = math.inf
        for w in self._workers["worker"]:
            if w.serving:
                if w.agg_load < best_load:
                    best, best_load = w, w.agg_load
        if best is None:
            self._pending["worker"].append(req)
            return
        best.pq.append(req)
        best.pq_tokens += self._isl[req]
        if not best.prefilling:
            self._start_agg_prefill(best, t)

    def _start_agg_prefill(self, w: _AggWorker, t: float) -> None:
        req = w.pq.popleft()
        w.advance(t)         # bank the decode steps made so far, then pause decode
        w.paused = True
        w.prefilling = True
        w.version += 1       # cancels the pending decode event
        self._push(t + self._service_s(self._isl[req]), _EV_PREFILL_DONE, req, w)

    def _agg_prefill_done(self, req: int, w: _AggWorker, t: float) -> None:
        w.advance(t)         # paused: no steps, only the clock
        w.paused = False
        w.prefilling = False
        w.pq_tokens -= self._isl[req]
        if not w.pq:
            w.pq_tokens = 0.0  # drop accumulated float error
        w.last_ttft_ms = (t - self._arr[req]) * 1000.0
        w.last_isl = float(self._isl[req])
        if self._osl[req] > 1:
            # decode on the same worker: its KV cache holds the prompt
            need = float(self._isl[req] + self._osl[req])
            if w.waitq or (w.n and w.kv_reserved + need > self.max_kv):
                w.waitq.append(req)
                w.wait_kv += need
            else:
                self._admit(w, req)
        if w.pq:
            self._start_agg_prefill(w, t)  # prefill first: decode waits (no chunked prefill)
        else:
            self._reschedule(w, t)
        self._maybe_end_agg(w, t)

    def _maybe_end_agg(self, w: _AggWorker, t: float) -> None:
        if w.draining and w.ended_at is None and w.idle:
            self._end("worker", w, t)
            self._sample(t)

    def _prefill_done(self, req: int, w: _PrefillWorker, t: float) -> None:
        self.prefill_end[req] = t
        ttft_ms = (t - self._arr[req]) * 1000.0
        self._win_first += 1
        self._win_ttft_sum += ttft_ms
        if isinstance(w, _AggWorker):
            if self._osl[req] <= 1:
                self._complete(req, t)
            self._agg_prefill_done(req, w, t)
            return
        w.last_ttft_ms = ttft_ms
        w.last_isl = float(self._isl[req])
        if self._osl[req] <= 1:
            self._complete(req, t)
        else:
            self._route_decode(req, t)

    # -- decode -----------------------------------------------------------------------------
    def _route_decode(self, req: int, t: float) -> None:
        best: Optional[_DecodeWorker] = None
        best_load = math.inf
        for w in self._workers["decode"]:
            if w.serving:
                if w.load < best_load:
                    best, best_load = w, w.load
        if best is None:
            self._pending["decode"].append(req)
            return
        best.advance(t)
        need = float(self._isl[req] + self._osl[req])
        if best.waitq or (best.n and best.kv_reserved + need > self.max_kv):
            best.waitq.append(req)
            best.wait_kv += need
            return
        self._admit(best, req)
        self._reschedule(best, t)

    def _admit(self, w: _DecodeWorker, req: int) -> None:
        heapq.heappush(w.heap, (w.s + (self._osl[req] - 1), req))
        w.s0 += self._isl[req] - w.s
        w.n += 1
        w.kv_reserved += self._isl[req] + self._osl[req]

    def _reschedule(self, w: _DecodeWorker, t: float) -> None:
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

    def _decode_event(self, w: _DecodeWorker, version: int, t: float) -> None:
        if version != w.version:
            return
        w.advance(t)
        heap = w.heap
        done_any = False
        while heap and heap[0][0] <= w.s + 1e-6:
            fs, req = heapq.heappop(heap)
            w.n -= 1
            isl, osl = self._isl[req], self._osl[req]
            w.s0 -= isl - (fs - (osl - 1))  # its admission step was its finish step - (osl-1)
            w.kv_reserved -= isl + osl
            self._complete(req, t)
            done_any = True
        if w.n == 0:
            w.s0 = 0.0  # drop accumulated float error when the batch empties
            w.kv_reserved = 0.0
        if done_any:
            while w.waitq:
                req = w.waitq[0]
                need = float(self._isl[req] + self._osl[req])
                if w.n and w.kv_reserved + need > self.max_kv:
                    break
                w.waitq.popleft()
                w.wait_kv -= need
                self._admit(w, req)
        if isinstance(w, _AggWorker):
            self._reschedule(w, t)
            self._maybe_end_agg(w, t)
            return
        if w.draining and w.n == 0 and not w.waitq and w.ended_at is None:
            self._end("decode", w, t)
            self._sample(t)
        self._reschedule(w, t)

    # -- completions and windows ------------------------------------------------------------
    def _complete(self, req: int, t: float) -> None:
        self.finish[req] = t
        self._in_flight -= 1
        self._last_event_t = t
        osl = self._osl[req]
        self._win_done += 1
        self._win_osl_sum += osl
        self._win_dur_sum += t - self._arr[req]
        if osl > 1:
            self._win_decode_s += t - self.prefill_end[req]
            self._win_decode_tokens += osl - 1

    def _reset_window(self) -> None:
        self._win_first = 0
        self._win_ttft_sum = 0.0
        self._win_done = 0
        self._win_osl_sum = 0.0
        self._win_dur_sum = 0.0
        self._win_decode_s = 0.0
        self._win_decode_tokens = 0

    def traffic_window(self, t: float, seconds: float) -> TrafficWindow:
        """What the recording rules would report at time t over the last `seconds`.

        Arrivals and their mean ISL count at arrival; OSL, duration and ITL at completion;
        TTFT at the first token. ITL is token-weighted (a histogram of every token gap),
        as the frontend's inter-token-latency histogram is.
        """
        lo = bisect_left(self._arr, t - seconds)
        hi = bisect_left(self._arr, t)
        count = hi - lo
        isl = (self._isl_cum[hi] - self._isl_cum[lo]) / count if count else None
        done = self._win_done
        return TrafficWindow(
            window_seconds=seconds,
            requests=float(count),
            isl=isl,
            osl=self._win_osl_sum / done if done else None,
            ttft_ms=self._win_ttft_sum / self._win_first if self._win_first else None,
            itl_ms=1000.0 * self._win_decode_s / self._win_decode_tokens if self._win_decode_tokens else None,
            request_duration_s=self._win_dur_sum / done if done else None,
        )

    def worker_loads(self, t: float) -> tuple[WorkerLoad, ...]:
        out: list[WorkerLoad] = []
        for w in self._workers.get("worker", ()):
            if w.serving:
                w.advance(t)
                ctx = w.s0 + w.n * w.s if w.n else 0.0
                out.append(
                    WorkerLoad(
                        worker_id=f"worker-{w.idx}",
                        pool="worker",
                        active_prefill_tokens=w.pq_tokens,
                        active_decode_blocks=ctx / KV_BLOCK_TOKENS,
                        last_ttft_ms=w.last_ttft_ms,
                        last_isl=w.last_isl,
                        last_itl_ms=w.last_itl_ms,
                    )
                )
        for w in self._workers.get("prefill", ()):
            if w.serving:
                out.append(
                    WorkerLoad(
                        worker_id=f"prefill-{w.idx}",
                        pool="prefill",
                        active_prefill_tokens=w.active_tokens(t),
                        last_ttft_ms=w.last_ttft_ms,
                        last_isl=w.last_isl,
                    )
                )
        for w in self._workers.get("decode", ()):
            if w.serving:
                w.advance(t)
                ctx = w.s0 + w.n * w.s if w.n else 0.0
                out.append(
                    WorkerLoad(
                        worker_id=f"decode-{w.idx}",
                        pool="decode",
                        active_decode_blocks=ctx / KV_BLOCK_TOKENS,
                        last_itl_ms=w.last_itl_ms,
                    )
                )
        return tuple(out)

    def _busy(self, t: float) -> bool:
        if self._next_arrival < len(self._arr):
            return True
        last = self._arr[-1] if self._arr else 0.0
        return self._in_flight > 0 and t <= last + self.cfg.max_drain_s

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> SimResult:
        for pool, count in self.ctl.initial_replicas().items():
            for _ in range(int(count)):
                self._add_replica(pool, 0.0, ready_now=self.cfg.initial_ready)
        self._sample(0.0)
        # 0.0 stands for "no throughput path": no tick is ever scheduled then.
        ti = self.ctl.throughput_interval_s or 0.0
        li = self.ctl.load_interval_s
        if ti:
            self._push(ti, _EV_THROUGHPUT_TICK)
        if li:
            self._push(li, _EV_LOAD_TICK)
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
                        self._make_ready(a, b, t)
                        self._sample(t)
                elif kind == _EV_THROUGHPUT_TICK:
                    if self._busy(t):
                        window = self.traffic_window(t, ti)
                        self._reset_window()
                        targets = self.ctl.on_traffic(t, window, self.ready_counts())
                        if targets is not None:
                            self._apply(t, targets, "throughput")
                        self._push(t + ti, _EV_THROUGHPUT_TICK)
                elif kind == _EV_SAMPLE:
                    self._sample(t)
                elif kind == _EV_LOAD_TICK:
                    if self._busy(t):
                        targets = self.ctl.on_load(t, self.worker_loads(t), self.ready_counts())
                        if targets is not None:
                            self._apply(t, targets, "load")
                        self._push(t + li, _EV_LOAD_TICK)
            elif i < n:
                self._next_arrival = i + 1
                self._in_flight += 1
                self._route_prefill(i, next_arrival)
            else:
                break
        end = self._last_event_t
        for pool in self.pools:
            for w in self._workers[pool]:
                if w.ended_at is None:
                    self._end(pool, w, max(end, w.requested_at))
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
            replicas=sorted(self._lives, key=lambda r: (r.pool, r.requested_at)),
            samples=self._samples,
            decisions=self._decisions,
            gpus_per_replica=dict(self.cfg.gpus_per_replica),
        )


def simulate(
    workload: Workload, model: PerfModel, controller: Controller, config: EngineConfig
) -> SimResult:
    """Run one policy over a workload on the hardware described by `model`."""
    return Engine(workload, model, controller, config).run()


def workload_from_requests(requests: Sequence[object]) -> Workload:
    """A Workload from objects with .t (s), .isl, .osl (scaler.traces.Request): sorted, starting
    at 0, token counts of 0 taken as 1 (a request reads and makes at least one token)."""
    n = len(requests)
    t = np.fromiter((r.t for r in requests), dtype=np.float64, count=n)  # type: ignore[attr-defined]
    isl = np.maximum(np.fromiter((r.isl for r in requests), dtype=np.int64, count=n), 1)  # type: ignore[attr-defined]
    osl = np.maximum(np.fromiter((r.osl for r in requests), dtype=np.int64, count=n), 1)  # type: ignore[attr-defined]
    order = np.argsort(t, kind="stable")
    t, isl, osl = t[order], isl[order], osl[order]
    if len(t):
        t = t - t[0]
    return Workload(t=t, isl=isl, osl=osl)
