"""The fake frontend's Prometheus series: a private registry, optionally served on /metrics.

`SyntheticFrontend` exports the series the scaler reads (names from `scaler.sources`), with
Dynamo's histogram buckets; tests set exact values (`observe_request`, `set_worker`,
`remove_worker`, `set_waiting`), and `scaler.devtools.fake_frontend` drives it from a trace.

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
"""

from __future__ import annotations

import math
import threading
from typing import Mapping, Optional, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_wsgi_server

from scaler.sources import SOURCES, Source


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
