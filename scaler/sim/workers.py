"""The simulated workers: their state and how it changes, without the clock or the event queue.

scaler.sim.engine owns time, events and the request arrays; it calls these methods and passes
token counts in. Each class holds its pool's differences, so the engine treats the three alike:

- `backlog(t)`: the outstanding work the router compares (least first) and scale-down
  drains last (most last);
- `drain_end(t)`: when a removed worker will end, if that is known now (else it ends when
  `idle`);
- `load_report(t)`: what the load path would scrape from it (scaler.core.observations).

A worker `serving` takes new requests: it is up, not draining and not ended. That flag is
kept by `make_ready`, `drain` and `end`, the only places that change those states.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import ClassVar, Optional, Sequence

from scaler.core.observations import WorkerLoad

# KV cache block size used to report `active_decode_blocks` to the load path.
KV_BLOCK_TOKENS = 16


class Worker:
    """A replica: requested at `requested_at`, serving from `ready_at` until drained or ended."""

    pool: ClassVar[str]
    __slots__ = ("idx", "requested_at", "ready_at", "ready", "draining", "ended_at", "serving",
                 "last_ttft_ms", "last_isl")

    def __init__(self, idx: int, requested_at: float, ready_at: float) -> None:
        self.idx = idx
        self.requested_at = requested_at
        self.ready_at = ready_at
        self.ready = False
        self.draining = False
        self.ended_at: Optional[float] = None
        self.serving = False  # takes new requests: ready, not draining, not ended
        # the last prefill it finished (prefill and aggregated workers report them)
        self.last_ttft_ms: Optional[float] = None
        self.last_isl: Optional[float] = None

    @property
    def worker_id(self) -> str:
        return f"{self.pool}-{self.idx}"

    def make_ready(self, t: float) -> None:
        self.ready = True
        self.serving = not self.draining and self.ended_at is None

    def drain(self) -> None:
        """Take no new requests; finish what it holds."""
        self.draining = True
        self.serving = False

    def end(self, t: float) -> None:
        self.ended_at = t
        self.serving = False

    @property
    def idle(self) -> bool:
        raise NotImplementedError

    def backlog(self, t: float) -> float:
        raise NotImplementedError

    def drain_end(self, t: float) -> Optional[float]:
        """When this ready, draining worker ends, if known at t (None: when it is idle)."""
        return t if self.idle else None

    def load_report(self, t: float) -> WorkerLoad:
        raise NotImplementedError


class PrefillWorker(Worker):
    """A FIFO queue served one request at a time: every request's end is known on arrival."""

    pool = "prefill"
    __slots__ = ("free_at", "queue")

    def __init__(self, idx: int, requested_at: float, ready_at: float) -> None:
        super().__init__(idx, requested_at, ready_at)
        self.free_at = ready_at
        self.queue: deque[tuple[float, int]] = deque()  # (prefill end, isl), in FIFO order

    def backlog(self, t: float) -> float:
        """When its queue empties (t if it is free)."""
        return self.free_at if self.free_at > t else t

    def drain_end(self, t: float) -> Optional[float]:
        return self.backlog(t)  # its queue is known: it ends when it empties

    def enqueue(self, t: float, isl: int, service_seconds: float) -> float:
        """Queue a request arriving at t; returns its prefill end."""
        end = self.backlog(t) + service_seconds
        self.free_at = end
        self.queue.append((end, isl))
        return end

    def _pop_done(self, t: float) -> deque[tuple[float, int]]:
        q = self.queue
        while q and q[0][0] <= t:
            q.popleft()
        return q

    def active_tokens(self, t: float) -> float:
        return float(sum(isl for _, isl in self._pop_done(t)))

    def waiting(self, t: float) -> int:
        """Requests queued at t that have not started prefill: all but the head, which is in
        service (it arrived and the one before it ended, both by t)."""
        return max(0, len(self._pop_done(t)) - 1)

    def load_report(self, t: float) -> WorkerLoad:
        return WorkerLoad(
            worker_id=self.worker_id,
            pool=self.pool,
            active_prefill_tokens=self.active_tokens(t),
            last_ttft_ms=self.last_ttft_ms,
            last_isl=self.last_isl,
        )


class DecodeWorker(Worker):
    """A continuous batch: every request advances one token per step.

    Steps are counted, not simulated: `s` is the (fractional) number of steps made since
    creation, brought up to date by `advance`, and each request in the batch finishes at a
    known step (`heap`). A request is admitted when its ISL+OSL fits in the KV cache still
    unreserved, else it waits in `waitq` (FIFO).
    """

    pool = "decode"
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
        self.heap: list[tuple[float, int]] = []  # (finish step, request index)
        self.kv_reserved = 0.0
        self.waitq: deque[int] = deque()
        self.wait_kv = 0.0
        self.version = 0        # bumped to cancel the pending decode event
        self.last_itl_ms: Optional[float] = None
        self.paused = False     # an aggregated worker's decode stops while it runs a prefill

    def make_ready(self, t: float) -> None:
        super().make_ready(t)
        self.t_last = t

    def advance(self, t: float) -> None:
        if self.n and self.tau > 0 and not self.paused:
            self.s += (t - self.t_last) / self.tau
        self.t_last = t

    def backlog(self, t: float) -> float:
        """KV tokens reserved by the batch and wanted by the requests waiting for it."""
        return self.kv_reserved + self.wait_kv

    @property
    def idle(self) -> bool:
        return self.n == 0 and not self.waitq

    @property
    def context_tokens(self) -> float:
        """Sum of the contexts in the batch (as of the last `advance`)."""
        return self.s0 + self.n * self.s if self.n else 0.0

    def admit(self, req: int, isl: int, osl: int) -> None:
        heapq.heappush(self.heap, (self.s + (osl - 1), req))
        self.s0 += isl - self.s
        self.n += 1
        self.kv_reserved += isl + osl

    def offer(self, req: int, isl: int, osl: int, max_kv: float) -> bool:
        """Admit the request if it fits behind the waiting ones, else queue it; True if admitted."""
        need = float(isl + osl)
        if self.waitq or (self.n and self.kv_reserved + need > max_kv):
            self.waitq.append(req)
            self.wait_kv += need
            return False
        self.admit(req, isl, osl)
        return True

    def finish_due(self, isl: Sequence[int], osl: Sequence[int], max_kv: float) -> list[int]:
        """Take the requests whose last step is made (as of the last `advance`) out of the
        batch, admit the waiting requests that now fit, and return the finished ones."""
        heap = self.heap
        done: list[int] = []
        while heap and heap[0][0] <= self.s + 1e-6:
            fs, req = heapq.heappop(heap)
            self.n -= 1
            i, o = isl[req], osl[req]
            self.s0 -= i - (fs - (o - 1))  # its admission step was its finish step - (osl-1)
            self.kv_reserved -= i + o
            done.append(req)
        if self.n == 0:
            self.s0 = 0.0  # drop accumulated float error when the batch empties
            self.kv_reserved = 0.0
        if done:
            waitq = self.waitq
            while waitq:
                req = waitq[0]
                need = float(isl[req] + osl[req])
                if self.n and self.kv_reserved + need > max_kv:
                    break
                waitq.popleft()
                self.wait_kv -= need
                self.admit(req, isl[req], osl[req])
        return done

    def load_report(self, t: float) -> WorkerLoad:
        self.advance(t)
        return WorkerLoad(
            worker_id=self.worker_id,
            pool=self.pool,
            active_decode_blocks=self.context_tokens / KV_BLOCK_TOKENS,
            last_itl_ms=self.last_itl_ms,
        )


class AggWorker(DecodeWorker):
    """A decode worker that also runs its own FIFO prefill queue (aggregated serving): while
    a prefill runs, the decode batch is paused (no chunked prefill)."""

    pool = "worker"
    __slots__ = ("pq", "pq_tokens", "prefilling")

    def __init__(self, idx: int, requested_at: float, ready_at: float) -> None:
        super().__init__(idx, requested_at, ready_at)
        self.pq: deque[int] = deque()   # requests waiting for prefill, FIFO
        self.pq_tokens = 0.0       # ISL of the queued requests plus the one in prefill
        self.prefilling = False

    def backlog(self, t: float) -> float:
        """Queued prefill tokens plus the decode KV tokens reserved and wanted."""
        return self.pq_tokens + self.kv_reserved + self.wait_kv

    @property
    def idle(self) -> bool:
        return not self.prefilling and not self.pq and self.n == 0 and not self.waitq

    def enqueue(self, req: int, isl: int) -> None:
        self.pq.append(req)
        self.pq_tokens += isl

    def begin_prefill(self, t: float) -> int:
        """Start the next queued prefill at t, pausing decode; returns the request."""
        req = self.pq.popleft()
        self.advance(t)         # bank the decode steps made so far, then pause decode
        self.paused = True
        self.prefilling = True
        self.version += 1       # cancels the pending decode event
        return req

    def end_prefill(self, t: float, isl: int) -> None:
        self.advance(t)         # paused: no steps, only the clock
        self.paused = False
        self.prefilling = False
        self.pq_tokens -= isl
        if not self.pq:
            self.pq_tokens = 0.0  # drop accumulated float error

    def load_report(self, t: float) -> WorkerLoad:
        self.advance(t)
        return WorkerLoad(
            worker_id=self.worker_id,
            pool=self.pool,
            active_prefill_tokens=self.pq_tokens,
            active_decode_blocks=self.context_tokens / KV_BLOCK_TOKENS,
            last_ttft_ms=self.last_ttft_ms,
            last_isl=self.last_isl,
            last_itl_ms=self.last_itl_ms,
        )


WORKER_CLASSES: dict[str, type[Worker]] = {cls.pool: cls for cls in (PrefillWorker, DecodeWorker, AggWorker)}
