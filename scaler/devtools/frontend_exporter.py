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

`SyntheticEngines` does the same for the engine sources (vLLM, SGLang): each engine pod's
own series with the engine's names, labels and default buckets (`ENGINE_BUCKETS`), pods
told apart by their `pod` label; `engine_request_samples` and `engine_gauge_samples` say
what a request and a load level add, for the live exporter and the backfill alike.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping, Optional, Self, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_wsgi_server

from scaler.sources import DEFAULT_BUCKETS, SOURCES, Source

# Dynamo's defaults (scaler.sources.DEFAULT_BUCKETS), keyed by the `Source` attribute naming each histogram.
BUCKETS = DEFAULT_BUCKETS["dynamo"]
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


class _Served:
    """Serving a registry's /metrics on a background thread, for both exporters."""

    registry: CollectorRegistry
    _server: Optional[tuple[object, threading.Thread]]

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SyntheticFrontend(_Served):
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



# -- engine sources (vLLM, SGLang): what each engine pod exports ----------------------------
# Default buckets per source: scaler.sources.DEFAULT_BUCKETS (the sources table).
ENGINE_BUCKETS = {name: DEFAULT_BUCKETS[name] for name in ("vllm", "sglang")}
# SGLang's KV pool size behind token_usage (num_used_tokens / max_total_num_tokens)
SGLANG_MAX_TOTAL_TOKENS = 200000
# SGLang scheduler gauges are exported once per rank: two TP ranks repeat each value
SGLANG_TP_RANKS = ("0", "1")


@dataclass(frozen=True)
class EngineSample:
    """One increment an engine pod's series get: a counter (`metric` ends in _total) by
    `value`, or a histogram (`metric` is the base name) observing `value` `times` times."""

    kind: str
    metric: str
    labels: Mapping[str, str]
    value: float
    times: int = 1


def engine_labels(source: Source, pod: str, role: str, model: str, namespace: str) -> dict[str, str]:
    """The labels of an engine pod's request-level series, with the pod/namespace a scrape
    adds. vLLM: model_name, engine (the engine index in the pod); SGLang: model_name,
    engine_type (`role`: unified | prefill | decode)."""
    own = {"model_name": model, "pod": pod, "namespace": namespace}
    if source.name == "vllm":
        own["engine"] = "0"
    else:
        own["engine_type"] = role
    return own


def engine_request_samples(
    source: Source, labels: Mapping[str, str], *, isl: float, osl: float, ttft_s: float, itl_s: float, duration_s: float
) -> list[EngineSample]:
    """What one finished request adds to an engine pod's series. Both engines count a
    request when it finishes; ITL is observed once per token after the first (osl - 1)."""
    gaps = max(int(round(osl)) - 1, 0)
    if source.name == "vllm":
        return [
            EngineSample("counter", "vllm:request_success_total", dict(labels, finished_reason="stop"), 1),
            EngineSample("counter", "vllm:prompt_tokens_total", labels, isl),
            EngineSample("counter", "vllm:generation_tokens_total", labels, osl),
            # preemptions are not modelled: the counter exists and stays at 0, as on an idle engine
            EngineSample("counter", "vllm:num_preemptions_total", labels, 0),
            EngineSample("histogram", source.ttft_seconds, labels, ttft_s),
            EngineSample("histogram", source.itl_seconds, labels, itl_s, gaps),
            EngineSample("histogram", source.request_duration_seconds, labels, duration_s),
            EngineSample("histogram", "vllm:request_queue_time_seconds", labels, 0.0),
            EngineSample("histogram", source.input_tokens, labels, isl),
            EngineSample("histogram", source.output_tokens, labels, osl),
        ]
    return [
        EngineSample("counter", "sglang:num_requests_total", labels, 1),
        EngineSample("counter", "sglang:prompt_tokens_total", labels, isl),
        EngineSample("counter", "sglang:generation_tokens_total", labels, osl),
        EngineSample("histogram", source.ttft_seconds, labels, ttft_s),
        EngineSample("histogram", source.itl_seconds, labels, itl_s, gaps),
        EngineSample("histogram", source.request_duration_seconds, labels, duration_s),
        EngineSample("histogram", "sglang:queue_time_seconds", labels, 0.0),
    ]


def engine_gauge_samples(
    source: Source, labels: Mapping[str, str], *, running: float, waiting: float, kv: float, kv_metric: Optional[str] = None
) -> list[tuple[str, dict[str, str], float]]:
    """An engine pod's load gauges: (metric, labels, value). `kv`: vLLM's KV usage (0-1),
    under `kv_metric` (default kv_cache_usage_perc; gpu_cache_usage_perc for vLLM before
    0.9); SGLang's used KV tokens, once per TP rank (with token_usage)."""
    if source.name == "vllm":
        return [
            ("vllm:num_requests_running", dict(labels), running),
            ("vllm:num_requests_waiting", dict(labels), waiting),
            (kv_metric or source.worker_active_decode_blocks, dict(labels), kv),
        ]
    out = []
    for rank in SGLANG_TP_RANKS:
        ranked = dict(labels, tp_rank=rank, pp_rank="0")
        out += [
            ("sglang:num_running_reqs", ranked, running),
            ("sglang:num_queue_reqs", ranked, waiting),
            ("sglang:num_used_tokens", ranked, kv),
            ("sglang:token_usage", ranked, kv / SGLANG_MAX_TOTAL_TOKENS),
            # decode throughput is not modelled here (the scaler does not read it): 0
            ("sglang:gen_throughput", ranked, 0.0),
        ]
    return out


class SyntheticEngines(_Served):
    """Engine pods' series (vLLM or SGLang) in one private registry, optionally served on
    /metrics: each series carries its pod's `pod` and `namespace` labels, as a scrape of
    that pod adds them, so one endpoint stands in for many pods. Names, labels and buckets
    are the engine's (`engine_request_samples`, `engine_gauge_samples`, `ENGINE_BUCKETS`).

    Disaggregated requests (`observe_disagg`): the prefill pod finishes its part with one
    output token (TTFT = its prefill), the decode pod the whole request, as llm-d's P/D
    sidecar and SGLang's PD router do."""

    def __init__(self, source: Source, *, model: str = "llama-8b", namespace: str = "inference") -> None:
        if source.layout != "engine":
            raise ValueError(f"{source.name} is not an engine source")
        self.source = source
        self.model = model
        self.namespace = namespace
        self.registry = CollectorRegistry()
        self._metrics: dict[str, object] = {}
        self._pods: dict[str, tuple[str, Optional[str]]] = {}  # pod -> (role, kv metric)
        self._lock = threading.Lock()
        self._server: Optional[tuple[object, threading.Thread]] = None

    def _metric(self, kind: str, name: str, labelnames: Sequence[str]) -> object:
        m = self._metrics.get(name)
        if m is None:
            names = sorted(labelnames)
            if kind == "counter":
                m = Counter(name, f"Synthetic {name}", names, registry=self.registry)
            elif kind == "gauge":
                m = Gauge(name, f"Synthetic {name}", names, registry=self.registry)
            else:
                attr = next((a for a in HISTOGRAMS + ("queue_seconds",) if getattr(self.source, a, None) == name), "queue_seconds")
                m = Histogram(name, f"Synthetic {name}", names, buckets=list(ENGINE_BUCKETS[self.source.name][attr]), registry=self.registry)
            self._metrics[name] = m
        return m

    def add_pod(self, pod: str, role: str = "unified", *, kv_metric: Optional[str] = None) -> None:
        """Start exporting a pod (counters at 0, gauges at 0): `role` unified | prefill |
        decode; `kv_metric`: the KV gauge its vLLM version exports."""
        with self._lock:
            self._pods[pod] = (role, kv_metric)
            labels = self._labels(pod)
            for s in engine_request_samples(self.source, labels, isl=0, osl=0, ttft_s=0, itl_s=0, duration_s=0):
                self._metric(s.kind, s.metric, list(s.labels)).labels(**s.labels)  # type: ignore[attr-defined]
            self._set_gauges_locked(pod, 0.0, 0.0, 0.0)
            if self.source.name == "vllm":
                # an info-style gauge at 1 (the scaler does not read it; a real engine has it)
                info = {"engine": "0", "block_size": "16", "num_gpu_blocks": "8192", "pod": pod, "namespace": self.namespace}
                self._metric("gauge", "vllm:cache_config_info", list(info)).labels(**info).set(1)  # type: ignore[attr-defined]

    def _labels(self, pod: str) -> dict[str, str]:
        role, _ = self._pods[pod]
        return engine_labels(self.source, pod, role, self.model, self.namespace)

    def pods(self) -> dict[str, str]:
        with self._lock:
            return {p: r for p, (r, _) in self._pods.items()}

    def observe(self, pod: str, *, isl: float, osl: float, ttft_s: float, itl_s: float, duration_s: float) -> None:
        """One request finished on `pod`."""
        with self._lock:
            for s in engine_request_samples(self.source, self._labels(pod), isl=isl, osl=osl, ttft_s=ttft_s, itl_s=itl_s, duration_s=duration_s):
                child = self._metric(s.kind, s.metric, list(s.labels)).labels(**s.labels)  # type: ignore[attr-defined]
                if s.kind == "counter":
                    child.inc(s.value)
                else:
                    for _ in range(s.times):
                        child.observe(s.value)

    def observe_disagg(
        self, prefill_pod: str, decode_pod: str, *, isl: float, osl: float, ttft_s: float, itl_s: float, duration_s: float
    ) -> None:
        """One disaggregated request: its prefill part on `prefill_pod`, all of it on `decode_pod`."""
        self.observe(prefill_pod, isl=isl, osl=1, ttft_s=ttft_s, itl_s=0.0, duration_s=ttft_s)
        self.observe(decode_pod, isl=isl, osl=osl, ttft_s=ttft_s, itl_s=itl_s, duration_s=duration_s)

    def set_load(self, pod: str, *, running: float = 0.0, waiting: float = 0.0, kv: float = 0.0) -> None:
        """A pod's load gauges now (see `engine_gauge_samples` for `kv`)."""
        with self._lock:
            self._set_gauges_locked(pod, running, waiting, kv)

    def _set_gauges_locked(self, pod: str, running: float, waiting: float, kv: float) -> None:
        _, kv_metric = self._pods[pod]
        for name, labels, value in engine_gauge_samples(self.source, self._labels(pod), running=running, waiting=waiting, kv=kv, kv_metric=kv_metric):
            self._metric("gauge", name, list(labels)).labels(**labels).set(value)  # type: ignore[attr-defined]

    def remove_pod(self, pod: str) -> None:
        """Stop exporting every series of a pod (as when it goes away)."""
        with self._lock:
            if pod not in self._pods:
                return
            base = self._labels(pod)
            del self._pods[pod]
            for m in self._metrics.values():
                names = m._labelnames  # type: ignore[attr-defined]
                for values in list(m._metrics):  # type: ignore[attr-defined]
                    labels = dict(zip(names, values))
                    if all(labels.get(k) == v for k, v in base.items() if k in names):
                        m.remove(*values)  # type: ignore[attr-defined]

