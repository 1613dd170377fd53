"""A fake Dynamo frontend for the demo and the tests: the frontend's series on /metrics.

It exports the series the scaler reads (names from `scaler.sources`), with Dynamo's
histogram buckets, and either

- replays a request trace, time-compressed by `speed`, against a small model of prefill
  and decode pools, so that latencies respond to load (`Replay`, `LoadModel`), or
- takes exact values from tests (`observe_request`, `set_worker`, `remove_worker`).

Series and labels (all carry `model` and `dynamo_namespace`):
- counters `dynamo_frontend_requests_started_total` (arrivals) and
  `dynamo_frontend_requests_total` (completions);
- histograms `dynamo_frontend_time_to_first_token_seconds`, `..._inter_token_latency_seconds`,
  `..._request_duration_seconds`, `..._input_sequence_tokens`, `..._output_sequence_tokens`;
- per-worker gauges (plus `worker_id`, `dp_rank`, `worker_type`):
  `dynamo_frontend_worker_active_prefill_tokens`, `..._active_decode_blocks`,
  `..._last_time_to_first_token_seconds`, `..._last_input_sequence_tokens`,
  `..._last_inter_token_latency_seconds`;
- requests waiting for their first token: `dynamo_frontend_stage_requests` (labels `stage`,
  `phase` and `dynamo_namespace`, no `model`, as Dynamo's stage gauge has none) in stage
  `dispatch`, and the older `dynamo_frontend_queued_requests` (`set_waiting`).
Real Dynamo also labels its request counters with `endpoint`/`request_type`/`status`; the
scaler's queries sum over them, so they are left out here.

Buckets are Dynamo's defaults (`DYN_METRICS_*_{MIN,MAX,COUNT}`): 0 followed by
count-1 log-spaced values up to MAX, rounded to 2 significant figures:
TTFT 0.001..480 s (18), ITL 0.001..2 s (13), request duration 1..512 s (10),
ISL 50..128000 tokens (12), OSL 50..32000 tokens (10). See `BUCKETS`.

Run `python -m scaler.devtools.fake_frontend --trace FILE --speed 30 --listen 127.0.0.1:0`: it prints
the port it listens on as its first stdout line and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_wsgi_server

from scaler.core.plan import POOL_NAMES_BY_MODE
from scaler.sources import SOURCES, Source
from scaler.traces import Request


def log_buckets(lo: float, hi: float, count: int) -> tuple[float, ...]:
    """Dynamo's bucket rule: 0, then count-1 log-spaced values ending at `hi`, 2 significant figures."""
    if not (0 < lo < hi and count >= 2):
        raise ValueError("need 0 < lo < hi and count >= 2")
    out = [0.0]
    for i in range(1, count):
        v = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (count - 1))
        scale = 10.0 ** (1 - math.floor(math.log10(v)))
        r = math.floor(v * scale + 0.5) / scale
        if r != out[-1]:
            out.append(r)
    return tuple(out)


# Keyed by the `Source` attribute naming each histogram.
BUCKETS: dict[str, tuple[float, ...]] = {
    "ttft_seconds": log_buckets(0.001, 480.0, 18),
    "itl_seconds": log_buckets(0.001, 2.0, 13),
    "request_duration_seconds": log_buckets(1.0, 512.0, 10),
    "input_tokens": log_buckets(50.0, 128000.0, 12),
    "output_tokens": log_buckets(50.0, 32000.0, 10),
}
HISTOGRAMS: tuple[str, ...] = tuple(BUCKETS)
NAMESPACE_LABEL = "dynamo_namespace"
DP_RANK_LABEL = "dp_rank"
_WORKER_FIELDS = {
    # keyword of set_worker -> Source attribute naming the gauge
    "active_prefill_tokens": "worker_active_prefill_tokens",
    "active_decode_blocks": "worker_active_decode_blocks",
    "last_ttft_s": "worker_last_ttft_seconds",
    "last_isl": "worker_last_isl",
    "last_itl_s": "worker_last_itl_seconds",
}


class SyntheticFrontend:
    """The frontend's metrics in a private `CollectorRegistry`, optionally served over HTTP."""

    def __init__(
        self,
        *,
        model: str = "llama-8b",
        dynamo_namespace: str = "inference-llama-8b",
        source: Source = SOURCES["dynamo"],
        buckets: Mapping[str, Sequence[float]] = BUCKETS,
    ) -> None:
        self.source = source
        self.registry = CollectorRegistry()
        self._base = {source.model_label: model, NAMESPACE_LABEL: dynamo_namespace}
        names = list(self._base)
        started = source.requests_started or source.requests_total
        self._started = Counter(started, "Requests accepted by the frontend", names, registry=self.registry)
        self._total = Counter(source.requests_total, "Requests completed", names, registry=self.registry)
        self._hist = {
            attr: Histogram(
                getattr(source, attr),
                f"Synthetic {attr}",
                names,
                buckets=list(buckets[attr]),
                registry=self.registry,
            )
            for attr in HISTOGRAMS
        }
        worker_names = names + [source.worker_id_label, DP_RANK_LABEL, source.worker_type_label]
        self._worker_labelnames = tuple(worker_names)
        self._gauges = {
            key: Gauge(getattr(source, attr), f"Synthetic {attr}", worker_names, registry=self.registry)
            for key, attr in _WORKER_FIELDS.items()
        }
        # Waiting requests, by the source's backlog gauges (newest first): the stage gauge
        # carries no model label (`without`), the older one the frontend's labels.
        self._backlog = [
            Gauge(
                g.metric,
                f"Synthetic {g.metric}",
                [n for n in names if n not in g.without] + (["stage", "phase"] if g.matchers else []),
                registry=self.registry,
            )
            for g in source.backlog
        ]
        # Export every frontend series from the start (counters at 0): an idle window then
        # reads as 0 requests, and the first request is seen by increase().
        for metric in (self._started, self._total, *self._hist.values()):
            metric.labels(**self._base)
        self._lock = threading.Lock()
        self._waiting = 0
        self.set_waiting(0)
        self._workers: dict[str, tuple[str, str]] = {}  # worker_id -> (dp_rank, worker_type)
        self._server: Optional[tuple[object, threading.Thread]] = None

    # -- values -------------------------------------------------------------------------
    def request_started(self, n: int = 1) -> None:
        """Count `n` arrivals (the started counter only)."""
        self._started.labels(**self._base).inc(n)

    def observe_request(
        self,
        isl: float,
        osl: float,
        ttft_s: float,
        itl_s: float,
        duration_s: float,
        *,
        started: bool = True,
    ) -> None:
        """Record one completed request; `started=False` when its arrival was already counted."""
        if started:
            self.request_started()
        self._total.labels(**self._base).inc()
        for attr, value in (
            ("input_tokens", isl),
            ("output_tokens", osl),
            ("ttft_seconds", ttft_s),
            ("itl_seconds", itl_s),
            ("request_duration_seconds", duration_s),
        ):
            self._hist[attr].labels(**self._base).observe(value)

    def set_waiting(self, n: int) -> None:
        """Set the requests waiting for their first token (every backlog gauge; the stage
        gauge in stage `dispatch`, phase `prefill`)."""
        with self._lock:
            self._set_waiting_locked(int(n))

    def add_waiting(self, delta: int) -> None:
        """`delta` more requests waiting (arrivals +1, first tokens -1)."""
        with self._lock:
            self._set_waiting_locked(self._waiting + delta)

    def _set_waiting_locked(self, n: int) -> None:
        self._waiting = n
        for gauge, ref in zip(self._backlog, self.source.backlog):
            labels = {k: v for k, v in self._base.items() if k not in ref.without}
            if ref.matchers:
                labels.update(stage="dispatch", phase="prefill")
            gauge.labels(**labels).set(n)

    def set_worker(
        self,
        worker_id: str,
        worker_type: str,
        *,
        dp_rank: str = "0",
        active_prefill_tokens: Optional[float] = None,
        active_decode_blocks: Optional[float] = None,
        last_ttft_s: Optional[float] = None,
        last_isl: Optional[float] = None,
        last_itl_s: Optional[float] = None,
    ) -> None:
        """Set a worker's gauges; values left as None are not touched (or not exported yet)."""
        values = {
            "active_prefill_tokens": active_prefill_tokens,
            "active_decode_blocks": active_decode_blocks,
            "last_ttft_s": last_ttft_s,
            "last_isl": last_isl,
            "last_itl_s": last_itl_s,
        }
        with self._lock:
            old = self._workers.get(worker_id)
            if old is not None and old != (dp_rank, worker_type):
                self._remove_locked(worker_id)
            self._workers[worker_id] = (dp_rank, worker_type)
            labels = self._worker_labels(worker_id, dp_rank, worker_type)
            for key, value in values.items():
                if value is not None:
                    self._gauges[key].labels(**labels).set(value)

    def remove_worker(self, worker_id: str) -> None:
        """Stop exporting every gauge of a worker (as when a pod goes away)."""
        with self._lock:
            self._remove_locked(worker_id)

    def workers(self) -> dict[str, str]:
        """worker_id -> worker_type of the workers currently exported."""
        with self._lock:
            return {w: t for w, (_, t) in self._workers.items()}

    def _worker_labels(self, worker_id: str, dp_rank: str, worker_type: str) -> dict[str, str]:
        s = self.source
        return {**self._base, s.worker_id_label: worker_id, DP_RANK_LABEL: dp_rank, s.worker_type_label: worker_type}

    def _remove_locked(self, worker_id: str) -> None:
        old = self._workers.pop(worker_id, None)
        if old is None:
            return
        labels = self._worker_labels(worker_id, *old)
        values = [labels[n] for n in self._worker_labelnames]
        for gauge in self._gauges.values():
            try:
                gauge.remove(*values)
            except KeyError:
                pass  # that gauge was never set for this worker

    # -- HTTP ---------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve /metrics on a background thread; returns the bound port."""
        if self._server is not None:
            raise RuntimeError("already serving")
        httpd, thread = start_wsgi_server(port, addr=host, registry=self.registry)
        self._server = (httpd, thread)
        return int(httpd.server_port)  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop the HTTP server (idempotent)."""
        if self._server is None:
            return
        httpd, thread = self._server
        self._server = None
        httpd.shutdown()  # type: ignore[attr-defined]
        httpd.server_close()  # type: ignore[attr-defined]
        thread.join(timeout=5)

    def __enter__(self) -> "SyntheticFrontend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class LoadModel:
    """A deliberately simple model of a disaggregated deployment, in wall-clock seconds.

    Prefill: each worker processes requests first-come-first-served at
    `prefill_tokens_per_s`, plus `prefill_overhead_s` each, so TTFT = queueing + service and
    grows once arrivals exceed `prefill_workers * prefill_tokens_per_s` tokens/s.
    Decode: a request joins the least-loaded decode worker; its ITL is
    `itl_base_s + itl_per_seq_s * (sequences on that worker)`, so ITL grows with concurrency.
    """

    prefill_workers: int = 2
    decode_workers: int = 2
    prefill_tokens_per_s: float = 40000.0
    prefill_overhead_s: float = 0.015
    itl_base_s: float = 0.008
    itl_per_seq_s: float = 0.0002
    kv_block_size: int = 16

    def __post_init__(self) -> None:
        if self.prefill_workers < 1 or self.decode_workers < 1:
            raise ValueError("need at least one prefill and one decode worker")
        if self.prefill_tokens_per_s <= 0 or self.kv_block_size < 1:
            raise ValueError("prefill_tokens_per_s and kv_block_size must be positive")


class Replay:
    """Replays requests against a `LoadModel`, feeding a `SyntheticFrontend`, on a thread.

    Arrivals happen at `request.t / speed` wall seconds after `start()`. Metrics follow
    Dynamo's timing: the started counter and the waiting gauges (+1) at arrival, the
    per-worker TTFT/ISL gauges and the waiting gauges (-1) at the first token, the completed
    counter and the histograms at completion.
    """

    def __init__(
        self,
        frontend: SyntheticFrontend,
        requests: Sequence[Request],
        *,
        speed: float = 1.0,
        model: LoadModel = LoadModel(),
        loop: bool = False,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError("speed must be a positive number")
        self.frontend = frontend
        self.requests = list(requests)
        self.speed = float(speed)
        self.model = model
        self.loop = loop
        self._stop = threading.Event()
        self.done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._size = {"prefill": model.prefill_workers, "decode": model.decode_workers}
        self.completed = 0

    def start(self) -> "Replay":
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="dynplan-replay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def set_pool_size(self, pool: str, replicas: int) -> None:
        """Change a pool's worker count while replaying (e.g. from the scaler's decisions)."""
        if pool not in self._size or replicas < 1:
            raise ValueError("pool must be prefill or decode, replicas >= 1")
        with self._lock:
            old = self._size[pool]
            self._size[pool] = replicas
        for i in range(replicas, old):
            self.frontend.remove_worker(f"{pool}-{i}")
        for i in range(old, replicas):
            self._announce(pool, i)

    def _announce(self, pool: str, i: int) -> None:
        if pool == "prefill":
            self.frontend.set_worker(f"prefill-{i}", "prefill", active_prefill_tokens=0)
        else:
            self.frontend.set_worker(f"decode-{i}", "decode", active_decode_blocks=0)

    def _run(self) -> None:
        m = self.model
        seq = itertools.count()
        prefill_free: list[float] = []
        prefill_tokens: list[float] = []
        decode_seqs: list[int] = []
        decode_blocks: list[int] = []

        def grow(lst: list, n: int, value: object) -> None:
            while len(lst) < n:
                lst.append(value)

        for pool in POOL_NAMES_BY_MODE["disagg"]:
            for i in range(self._size[pool]):
                self._announce(pool, i)
        origin = time.monotonic()
        offset = 0.0
        span = (self.requests[-1].t if self.requests else 0.0) / self.speed
        heap: list[tuple[float, int, str, tuple]] = []
        pending = iter(self.requests)
        nxt = next(pending, None)
        while not self._stop.is_set():
            arrival_at = None if nxt is None else offset + nxt.t / self.speed
            if heap and (arrival_at is None or heap[0][0] <= arrival_at):
                at, _, kind, data = heap[0]
            elif arrival_at is not None:
                at, kind, data = arrival_at, "arrive", (nxt,)
            elif self.loop and self.requests:
                offset += span + 1.0 / self.speed
                pending = iter(self.requests)
                nxt = next(pending, None)
                continue
            else:
                break
            wait = origin + at - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            if kind == "arrive":
                nxt = next(pending, None)
            else:
                heapq.heappop(heap)
            with self._lock:
                n_prefill, n_decode = self._size["prefill"], self._size["decode"]
            grow(prefill_free, n_prefill, 0.0)
            grow(prefill_tokens, n_prefill, 0.0)
            grow(decode_seqs, n_decode, 0)
            grow(decode_blocks, n_decode, 0)
            if kind == "arrive":
                (req,) = data
                self.frontend.request_started()
                self.frontend.add_waiting(1)
                i = min(range(n_prefill), key=prefill_free.__getitem__)
                begin = max(at, prefill_free[i])
                first = begin + m.prefill_overhead_s + req.isl / m.prefill_tokens_per_s
                prefill_free[i] = first
                prefill_tokens[i] += req.isl
                self.frontend.set_worker(f"prefill-{i}", "prefill", active_prefill_tokens=prefill_tokens[i])
                heapq.heappush(heap, (first, next(seq), "first", (req, at, i)))
            elif kind == "first":
                req, arrived, i = data
                ttft = at - arrived
                self.frontend.add_waiting(-1)
                prefill_tokens[i] -= req.isl
                if i < n_prefill:
                    self.frontend.set_worker(
                        f"prefill-{i}", "prefill",
                        active_prefill_tokens=prefill_tokens[i], last_ttft_s=ttft, last_isl=req.isl,
                    )
                j = min(range(n_decode), key=decode_seqs.__getitem__)
                decode_seqs[j] += 1
                blocks = -(-(req.isl + req.osl) // m.kv_block_size)
                decode_blocks[j] += blocks
                itl = m.itl_base_s + m.itl_per_seq_s * decode_seqs[j]
                self.frontend.set_worker(f"decode-{j}", "decode", active_decode_blocks=decode_blocks[j])
                end = at + max(req.osl - 1, 0) * itl
                heapq.heappush(heap, (end, next(seq), "done", (req, arrived, ttft, itl, j, blocks)))
            else:
                req, arrived, ttft, itl, j, blocks = data
                decode_seqs[j] -= 1
                decode_blocks[j] -= blocks
                if j < n_decode:
                    self.frontend.set_worker(
                        f"decode-{j}", "decode", active_decode_blocks=decode_blocks[j], last_itl_s=itl
                    )
                self.frontend.observe_request(req.isl, req.osl, ttft, itl, at - arrived, started=False)
                self.completed += 1
        self.done.set()


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("must be HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from scaler.errors import TraceError
    from scaler.traces import read_trace

    ap = argparse.ArgumentParser(prog="python -m scaler.devtools.fake_frontend", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True, help="trace file (Azure CSV or Mooncake JSONL)")
    ap.add_argument("--speed", type=float, default=30.0, help="time compression factor (default 30)")
    ap.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 0), help="HOST:PORT, port 0 = any free port")
    ap.add_argument("--model", default="llama-8b")
    ap.add_argument("--dynamo-namespace", default="inference-llama-8b")
    ap.add_argument("--prefill-workers", type=int, default=LoadModel.prefill_workers)
    ap.add_argument("--decode-workers", type=int, default=LoadModel.decode_workers)
    ap.add_argument("--prefill-tokens-per-s", type=float, default=LoadModel.prefill_tokens_per_s)
    ap.add_argument("--loop", action="store_true", help="start the trace again when it ends")
    ap.add_argument("--exit-when-done", action="store_true", help="exit once the trace has been replayed")
    args = ap.parse_args(argv)
    try:
        requests = read_trace(args.trace)
        model = LoadModel(
            prefill_workers=args.prefill_workers,
            decode_workers=args.decode_workers,
            prefill_tokens_per_s=args.prefill_tokens_per_s,
        )
        if not (args.speed > 0 and math.isfinite(args.speed)):
            raise ValueError("--speed must be a positive number")
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    frontend = SyntheticFrontend(model=args.model, dynamo_namespace=args.dynamo_namespace)
    host, port = args.listen
    port = frontend.serve(host, port)
    print(port, flush=True)
    print(f"serving http://{host}:{port}/metrics, replaying {len(requests)} requests at {args.speed}x", file=sys.stderr)
    replay = Replay(frontend, requests, speed=args.speed, model=model, loop=args.loop).start()
    try:
        while not stop.wait(0.2):
            if args.exit_when_done and replay.done.is_set():
                break
    finally:
        replay.stop()
        frontend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
