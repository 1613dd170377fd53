"""A fake Dynamo frontend for the demo and the tests: the frontend's series on /metrics.

A request trace, replayed time-compressed by `speed` against a small model of prefill and
decode pools so that latencies respond to load (`Replay`, `LoadModel`), feeds a
`SyntheticFrontend` (scaler.devtools.frontend_exporter: the series the scaler reads, their
labels and Dynamo's buckets, and the setters tests use for exact values).

Run `python -m scaler.devtools.fake_frontend --trace FILE --speed 30 --listen 127.0.0.1:0`: it prints
the port it listens on as its first stdout line and stops cleanly on SIGTERM/SIGINT.
`--source vllm|sglang` exports the same replay as engine pods' series (`EngineFrontend`).
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
from typing import IO, Optional, Sequence

from scaler.core.plan import POOL_NAMES_BY_MODE
from scaler.devtools.frontend_exporter import SyntheticEngines, SyntheticFrontend
from scaler.sources import SOURCES, Source
from scaler.traces import Request


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
        frontend: "SyntheticFrontend | EngineFrontend",
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


class EngineFrontend:
    """What `Replay` drives, as engine pods' series (vLLM, SGLang) instead of a Dynamo
    frontend: worker `prefill-i` is pod `<model>-prefill-i` (`decode-j` likewise), a
    completed request is recorded on the next prefill and decode pod in turn (which pods
    served it is not modelled), queued prefill tokens become waiting requests at the last
    ISL seen, and active KV blocks become the source's KV load (vLLM: the fraction of
    `kv_blocks` blocks; SGLang: tokens)."""

    def __init__(self, source: Source, *, model: str, namespace: str, kv_blocks: int = 8192, block_size: int = 16) -> None:
        self.engines = SyntheticEngines(source, model="llama", namespace=namespace)
        self.source = source
        self.prefix = model
        self.kv_blocks, self.block_size = kv_blocks, block_size
        self._isl = 1000.0
        self._turn = {"prefill": 0, "decode": 0}

    def _pod(self, worker_id: str) -> str:
        return f"{self.prefix}-{worker_id}"

    def request_started(self, n: int = 1) -> None:
        """Engines count requests when they finish: nothing to do at arrival."""

    def add_waiting(self, delta: int) -> None:
        """Waiting requests are per pod (`set_worker`), not a frontend gauge."""

    def set_worker(self, worker_id: str, worker_type: str, *, active_prefill_tokens: Optional[float] = None,
                   active_decode_blocks: Optional[float] = None, last_isl: Optional[float] = None, **_: object) -> None:
        pod = self._pod(worker_id)
        if pod not in self.engines.pods():
            self.engines.add_pod(pod, worker_type)
        if last_isl:
            self._isl = float(last_isl)
        if worker_type == "prefill" and active_prefill_tokens is not None:
            self.engines.set_load(pod, waiting=round(active_prefill_tokens / self._isl))
        elif active_decode_blocks is not None:
            kv = active_decode_blocks / self.kv_blocks if self.source.name == "vllm" else active_decode_blocks * self.block_size
            self.engines.set_load(pod, kv=kv)

    def remove_worker(self, worker_id: str) -> None:
        self.engines.remove_pod(self._pod(worker_id))

    def _next(self, role: str) -> Optional[str]:
        pods = sorted(p for p, r in self.engines.pods().items() if r == role)
        if not pods:
            return None
        self._turn[role] += 1
        return pods[self._turn[role] % len(pods)]

    def observe_request(self, isl: float, osl: float, ttft_s: float, itl_s: float, duration_s: float, *, started: bool = True) -> None:
        prefill, decode = self._next("prefill"), self._next("decode")
        if prefill is not None and decode is not None:
            self.engines.observe_disagg(prefill, decode, isl=isl, osl=osl, ttft_s=ttft_s, itl_s=itl_s, duration_s=duration_s)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> int:
        return self.engines.serve(host, port)

    def stop(self) -> None:
        self.engines.stop()


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("must be HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _resize_from(lines: "IO[str]", replay: Replay) -> None:
    """Apply 'POOL REPLICAS' lines to the replay (what KEDA and the HPA do to a Deployment);
    a malformed line is reported and skipped."""
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        try:
            pool, count = parts[0], int(parts[1])
            replay.set_pool_size(pool, count)
        except (IndexError, ValueError) as exc:
            print(f"ignored pool-size line {line.strip()!r}: {exc}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from scaler.errors import TraceError
    from scaler.traces import read_trace

    ap = argparse.ArgumentParser(prog="python -m scaler.devtools.fake_frontend", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True, help="trace file (Azure CSV, BurstGPT CSV or Mooncake JSONL)")
    ap.add_argument("--speed", type=float, default=30.0, help="time compression factor (default 30)")
    ap.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 0), help="HOST:PORT, port 0 = any free port")
    ap.add_argument("--model", default="llama-8b")
    ap.add_argument("--dynamo-namespace", default="inference-llama-8b")
    ap.add_argument("--source", choices=sorted(SOURCES), default="dynamo",
                    help="whose series to export: the Dynamo frontend's, or vLLM/SGLang engine pods' (pods <model>-prefill-i, <model>-decode-j)")
    ap.add_argument("--namespace", default="inference", help="the engine pods' namespace label (engine sources)")
    ap.add_argument("--prefill-workers", type=int, default=LoadModel.prefill_workers)
    ap.add_argument("--decode-workers", type=int, default=LoadModel.decode_workers)
    ap.add_argument("--prefill-tokens-per-s", type=float, default=LoadModel.prefill_tokens_per_s)
    ap.add_argument("--loop", action="store_true", help="start the trace again when it ends")
    ap.add_argument("--exit-when-done", action="store_true", help="exit once the trace has been replayed")
    ap.add_argument("--pool-sizes-from-stdin", action="store_true",
                    help="read lines 'POOL REPLICAS' on stdin and resize that pool (the demo's KEDA stand-in)")
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
    source = SOURCES[args.source]
    frontend: "SyntheticFrontend | EngineFrontend" = (
        EngineFrontend(source, model=args.model, namespace=args.namespace) if source.layout == "engine"
        else SyntheticFrontend(model=args.model, dynamo_namespace=args.dynamo_namespace)
    )
    host, port = args.listen
    port = frontend.serve(host, port)
    print(port, flush=True)
    print(f"serving http://{host}:{port}/metrics, replaying {len(requests)} requests at {args.speed}x", file=sys.stderr)
    replay = Replay(frontend, requests, speed=args.speed, model=model, loop=args.loop).start()
    if args.pool_sizes_from_stdin:
        threading.Thread(target=_resize_from, args=(sys.stdin, replay), name="pool-sizes", daemon=True).start()
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
