"""The scaler's own /metrics (prometheus-client), on a private registry (no global state),
and the small asyncio HTTP server that exposes it (and the read-only /decisions documents)."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any, Callable, Generic, Optional, TypeVar, Union

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from scaler.core.decision import Decision, Reason
from scaler.naming import DNS1123_LABEL_RE

_PLAN = ("namespace", "plan")
_POOL = ("namespace", "plan", "pool")
# Decision durations are milliseconds normally; the buckets reach seconds for slow queries.
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
M = TypeVar("M", Gauge, Enum)
_MAX_REQUEST_HEAD = 16 * 1024  # request line + headers; a scrape sends a few hundred bytes
# (namespace, plan), or None for the index -> a function building that /decisions document
# (run in a worker thread), or None: no such plan
DecisionSource = Callable[[Optional[tuple[str, str]]], Optional[Callable[[], dict[str, Any]]]]


class _PerPlan(Generic[M]):
    """A metric of the latest decision, labelled (namespace, plan, ...), that remembers the
    label sets written per plan: `forget` removes exactly those, with no list to keep in
    step with `record_decision`."""

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._written: dict[tuple[str, str], set[tuple[str, ...]]] = {}

    def labels(self, namespace: str, plan: str, *rest: str) -> M:
        values = (namespace, plan, *rest)
        self._written.setdefault((namespace, plan), set()).add(values)
        return self.metric.labels(*values)

    def forget(self, namespace: str, plan: str) -> None:
        for values in self._written.pop((namespace, plan), set()):
            try:
                self.metric.remove(*values)
            except KeyError:
                pass


class ServiceMetrics:
    """Every metric `dynplan serve` exports, labelled by plan (and pool)."""

    def __init__(self, registry: Optional[CollectorRegistry] = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.desired = _PerPlan(
            Gauge("dynplan_desired_replicas", "Desired replicas of the latest good decision.", _POOL, registry=r)
        )
        self.requested = _PerPlan(Gauge(
            "dynplan_requested_replicas", "Replicas the formulas asked for, before bounds and budget.", _POOL, registry=r
        ))
        self.observed = _PerPlan(Gauge(
            "dynplan_observed",
            "Observed traffic of the latest window (quantity: rate req/s, isl, osl tokens, ttft_ms, itl_ms).",
            _PLAN + ("quantity",),
            registry=r,
        ))
        self.predicted = _PerPlan(Gauge(
            "dynplan_predicted",
            "Predicted next-interval traffic (rate, isl, osl) and the profiled latency at the chosen operating point (ttft_ms, itl_ms).",
            _PLAN + ("quantity",),
            registry=r,
        ))
        self.correction = _PerPlan(Gauge(
            "dynplan_correction_factor", "Observed / profiled latency correction factor.", _POOL, registry=r
        ))
        self.queueing = _PerPlan(Gauge(
            "dynplan_queueing_factor",
            "Learned traffic variability of queueing-aware prefill sizing (1 = Poisson arrivals).",
            _PLAN,
            registry=r,
        ))
        self.attainment = _PerPlan(Gauge(
            "dynplan_attainment_sizing",
            "What the attainment sizing used (quantity: target, planned_rate req/s, burst, dispersion, backlog "
            "requests, prefill_service_ms, prefill_slowdown, prefill_wait_tail, decode_slowdown, "
            "decode_sequences_mean, decode_sequences_sized, decode_sequences_per_replica).",
            _PLAN + ("quantity",),
            registry=r,
        ))
        self.load_fit = _PerPlan(Gauge(
            "dynplan_load_regression",
            "Load-based scaling per pool and signal (ttft|itl): the fit's slope and intercept, "
            "points in the window, capacity per worker at the SLA, and the busiest worker's load.",
            _POOL + ("signal", "param"),
            registry=r,
        ))
        self.load_reason = _PerPlan(Enum(
            "dynplan_load_decision_reason",
            "Reason of the latest load-based verdict per pool and signal.",
            _POOL + ("signal",),
            states=[reason.value for reason in Reason],
            registry=r,
        ))
        self.reason = _PerPlan(Enum(
            "dynplan_decision_reason",
            "Reason of the latest good decision.",
            _PLAN,
            states=[reason.value for reason in Reason],
            registry=r,
        ))
        self.duration = Histogram(
            "dynplan_decision_duration_seconds",
            "Time to make one decision (Prometheus queries + planner).",
            _PLAN + ("kind",),
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "dynplan_decision_compute_seconds",
            "Time the planner core took for one decision (no I/O).",
            _PLAN,
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.query_errors = Counter(
            "dynplan_prometheus_query_errors",
            "Decision ticks that failed because Prometheus could not answer.",
            _PLAN + ("kind",),
            registry=r,
        )
        self.windows_rejected = Counter(
            "dynplan_windows_rejected",
            "Throughput windows skipped without a decision (reason: a value outside the physical limits, "
            "e.g. absurd_requests, negative_isl; or decide_error). The plan moves on to the next window.",
            _PLAN + ("reason",),
            registry=r,
        )
        self.windows_caught_up = Counter(
            "dynplan_windows_caught_up",
            "Throughput windows folded in from one history read, without a decision of their own, because "
            "the loop was more than one interval behind (it decides the newest window instead of queueing).",
            _PLAN,
            registry=r,
        )
        self.decision_lag = _PerPlan(Gauge(
            "dynplan_decision_lag_seconds",
            "How late the latest throughput decision was: made at - window end - settle delay.",
            _PLAN,
            registry=r,
        ))
        self.last_good = _PerPlan(Gauge(
            "dynplan_last_good_decision_timestamp_seconds", "Unix time of the latest good decision.", _PLAN, registry=r
        ))
        self.plan_load_errors = Counter(
            "dynplan_plan_load_errors", "Times a plan file failed to load (the last good version keeps serving).", ("file",), registry=r
        )
        self.plan_load_failing = Gauge(
            "dynplan_plan_load_failing", "1 while a plan file's current content is invalid.", ("file",), registry=r
        )
        self.plans = Gauge("dynplan_plans_loaded", "Plans currently served.", registry=r)
        self.rpcs = Counter("dynplan_grpc_requests", "External scaler RPCs answered.", ("method", "code"), registry=r)
        self.decider_restarts = Gauge(
            "dynplan_decider_restarts",
            "Times the serving process has started the decider process again since it started (0 in one process).",
            registry=r,
        )

    # -- decisions ----------------------------------------------------------------------
    def record_decision(self, namespace: str, decision: Decision, made_at: float) -> None:
        plan = decision.plan
        for pool, pd in decision.pools.items():
            self.desired.labels(namespace, plan, pool).set(pd.replicas)
            self.requested.labels(namespace, plan, pool).set(pd.requested)
        self.reason.labels(namespace, plan).state(decision.reason.value)
        self.last_good.labels(namespace, plan).set(made_at)
        for pool, by_signal in decision.load.items():
            for signal, li in by_signal.items():
                values = {"slope": li.slope, "intercept": li.intercept, "observations": float(li.observations),
                          "capacity": li.capacity_per_worker, "max_worker_load": li.max_worker_load}
                for param, value in values.items():
                    # No fit yet is NaN, never a made-up 0.
                    self.load_fit.labels(namespace, plan, pool, signal, param).set(float("nan") if value is None else value)
                self.load_reason.labels(namespace, plan, pool, signal).state(li.reason.value)
        tp = decision.throughput
        if tp is None:
            return
        observed = {"rate": tp.observed_rate, "isl": tp.observed_isl, "osl": tp.observed_osl,
                    "ttft_ms": tp.observed_ttft_ms, "itl_ms": tp.observed_itl_ms}
        predicted = {"rate": tp.predicted_rate, "isl": tp.predicted_isl, "osl": tp.predicted_osl,
                     "ttft_ms": tp.profiled_ttft_ms, "itl_ms": tp.decode_itl_at_point_ms}
        for quantity, value in observed.items():
            # No value (idle window's mean) is exported as NaN, never as a made-up 0.
            self.observed.labels(namespace, plan, quantity).set(float("nan") if value is None else value)
        for quantity, value in predicted.items():
            self.predicted.labels(namespace, plan, quantity).set(float("nan") if value is None else value)
        self.correction.labels(namespace, plan, "prefill").set(tp.correction_prefill)
        self.correction.labels(namespace, plan, "decode").set(tp.correction_decode)
        if tp.queueing_factor is not None:
            self.queueing.labels(namespace, plan).set(tp.queueing_factor)
        a = tp.attainment
        if a is not None:
            values = {
                "target": a.target, "planned_rate": a.planned_rate, "burst": a.burst_factor,
                "dispersion": a.dispersion, "backlog": a.backlog, "prefill_service_ms": a.prefill_service_ms,
                "prefill_slowdown": a.prefill_slowdown, "prefill_wait_tail": a.prefill_wait_tail,
                "decode_slowdown": a.decode_slowdown, "decode_sequences_mean": a.decode_sequences_mean,
                "decode_sequences_sized": a.decode_sequences_quantile,
                "decode_sequences_per_replica": a.decode_sequences_per_replica,
            }
            for quantity, value in values.items():
                self.attainment.labels(namespace, plan, quantity).set(float("nan") if value is None else value)

    def forget_plan(self, namespace: str, plan: str) -> None:
        """Drop a removed plan's series so dashboards do not show ghosts: every series
        labelled with the plan, in every family (gauges, histograms, counters), and no other."""
        for series in vars(self).values():
            if isinstance(series, _PerPlan):
                series.forget(namespace, plan)
        match = {"namespace": namespace, "plan": plan}
        for metric in vars(self).values():
            # Every other family labelled by plan (histograms, counters, whatever is added
            # later): found by its label names, so no list has to be kept in step.
            names = tuple(getattr(metric, "_labelnames", ()))  # prometheus_client has no public accessor
            if isinstance(metric, (Counter, Gauge, Histogram, Enum)) and set(_PLAN) <= set(names):
                _remove_matching(metric, names, match)

    def forget_file(self, file: str) -> None:
        """Drop a removed plan file's load-error series."""
        for metric in (self.plan_load_errors, self.plan_load_failing):
            _remove_matching(metric, ("file",), {"file": file})


def _remove_matching(metric: Union[Counter, Gauge, Histogram, Enum], names: tuple[str, ...], match: dict[str, str]) -> None:
    """Remove every child of a metric labelled `names` whose labels include `match`. The
    label sets come from the metric's own samples, so nothing has to be remembered."""
    found: set[tuple[str, ...]] = set()
    for family in metric.collect():
        for sample in family.samples:
            if all(sample.labels.get(k) == v for k, v in match.items()):
                found.add(tuple(sample.labels[n] for n in names))
    for values in found:
        try:
            metric.remove(*values)
        except KeyError:
            pass


class MetricsServer:
    """/metrics over HTTP/1.1 on the asyncio event loop.

    No thread per connection (prometheus_client's server spends one per connection, held
    as long as the client keeps it open: 300 idle connections were 300 threads). Every
    connection must send its request within `read_timeout` seconds and is closed after one
    answer; at most `max_connections` are open, and a new one evicts the oldest that has
    not sent its request yet, so idle connections cannot lock scrapes out. The exposition
    itself is built in a worker thread (it walks every plan's series).

    With `decisions`, also `GET /decisions` and `/decisions/<namespace>/<plan>` (JSON, read
    only), under the same limits: the plans are looked up on the event loop, the document
    is built and encoded in a worker thread (the index of 1,000 plans is ~15 ms of work).
    """

    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        read_timeout: float = 10.0,
        max_connections: int = 64,
        decisions: Optional[DecisionSource] = None,
    ) -> None:
        self.metrics = metrics
        self.decisions = decisions
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.port: Optional[int] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._waiting: dict[asyncio.Task[Any], None] = {}  # connections before their request, oldest first
        self._open: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> int:
        """Bind and serve; return the bound port (OSError when the address is taken)."""
        server = await asyncio.start_server(self._connection, host, port, limit=_MAX_REQUEST_HEAD)
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._open):
            task.cancel()
        if self._open:
            await asyncio.wait(list(self._open), timeout=1.0)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        self._waiting[task] = None
        if len(self._open) > self.max_connections:
            oldest = next((t for t in self._waiting if t is not task), None)
            if oldest is not None:
                oldest.cancel()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout)
            self._waiting.pop(task, None)
            status, headers, body = await self._answer(head)
            lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()),
                     f"Content-Length: {len(body)}", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1") + (b"" if head.startswith(b"HEAD ") else body))
            await asyncio.wait_for(writer.drain(), self.read_timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # too slow, too long, or gone: just close
        except asyncio.CancelledError:
            pass  # evicted by a newer connection, or shutting down
        finally:
            self._waiting.pop(task, None)
            self._open.discard(task)
            writer.close()

    async def _answer(self, head: bytes) -> tuple[str, dict[str, str], bytes]:
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", {"Content-Type": "text/plain"}, b"bad request\n"
        method, target, _version = parts
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", {"Content-Type": "text/plain", "Allow": "GET, HEAD"}, b"GET only\n"
        path = target.split("?", 1)[0]
        if self.decisions is not None and (path == "/decisions" or path.startswith("/decisions/")):
            return await self._decision(path)
        if path != "/metrics":
            return "404 Not Found", {"Content-Type": "text/plain"}, b"the metrics are at /metrics\n"
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        body = await asyncio.to_thread(encoder, self.metrics.registry)
        out = {"Content-Type": content_type}
        if "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            out["Content-Encoding"] = "gzip"
        return "200 OK", out, body

    async def _decision(self, path: str) -> tuple[str, dict[str, str], bytes]:
        assert self.decisions is not None
        parts = path.split("/")[2:]  # "", "decisions", then namespace and plan
        key: Optional[tuple[str, str]] = None
        if parts:
            # names are DNS-1123 labels: anything else is no plan, and nothing of the
            # request is echoed back
            if len(parts) != 2 or not all(len(p) <= 253 and DNS1123_LABEL_RE.match(p) for p in parts):
                return _json_answer("404 Not Found", {"error": "not a plan: use /decisions/<namespace>/<plan>"})
            key = (parts[0], parts[1])
        build = self.decisions(key)
        if build is None:
            assert key is not None
            # the same text as GetMetrics' NOT_FOUND
            return _json_answer("404 Not Found", {"error": f"no plan {key[1]!r} in namespace {key[0]!r}"})
        body = await asyncio.to_thread(lambda: _encode(build()))
        return "200 OK", {"Content-Type": "application/json", "Cache-Control": "no-store"}, body


def _encode(doc: dict[str, Any]) -> bytes:
    # allow_nan=False: the documents carry NaN as null (Decision.to_dict); a NaN here is a bug
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode() + b"\n"


def _json_answer(status: str, doc: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, _encode(doc)
