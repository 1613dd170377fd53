"""OpenMetrics text for a synthetic history, for `promtool tsdb create-blocks-from openmetrics`.

`OpenMetricsWriter` holds counters, gauges and histograms as time series (timestamps in
Unix seconds) and renders them family by family, each series in time order, ending in
`# EOF`. `frontend_history` turns completed requests into the Dynamo frontend's series as a
scrape every `step` seconds would have seen them (same names, labels and buckets as
`scaler.devtools.frontend_exporter`), so backfilled history and live scraping are
interchangeable; `frontend_backlog` does the same for the gauges of requests waiting for a first token.
`engine_history` gives the engine sources' per-pod series (vLLM, SGLang) the same way, from
the samples `frontend_exporter.SyntheticEngines` exports live.

Sample timing: a request at time t is counted by every scrape at time >= t. With scrapes on
a grid and a window (a, b] whose ends are scrape times, `increase()` over it is exactly the
requests with a < t <= b (Prometheus 2.x range selectors include both ends, and no
extrapolation happens when the first and last samples sit on the window's ends).
"""

from __future__ import annotations

import bisect
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

from prometheus_client.utils import floatToGoString

from scaler import naming
from scaler.core.observations import TrafficWindow
from scaler.devtools.frontend_exporter import (
    BUCKETS,
    ENGINE_BUCKETS,
    engine_gauge_samples,
    engine_labels,
    engine_request_samples,
)
from scaler.sources import SOURCES, Source
from scaler.traces import Request


@dataclass(frozen=True)
class HistogramPoint:
    """One histogram observation state: cumulative bucket counts (one per bound, +Inf last)."""

    t: float
    buckets: tuple[float, ...]
    count: float
    sum: float


@dataclass
class _Series:
    labels: tuple[tuple[str, str], ...]
    points: list  # (t, value) or HistogramPoint


@dataclass
class _Family:
    name: str
    type: str
    help: str
    bounds: tuple[float, ...] = ()
    series: Optional[dict[tuple[tuple[str, str], ...], _Series]] = None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(labels: Sequence[tuple[str, str]]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _num(v: float) -> str:
    if isinstance(v, int) or (math.isfinite(v) and float(v).is_integer() and abs(v) < 1e15):
        return str(int(v))
    return floatToGoString(v)


def _ts(t: float) -> str:
    return f"{t:.3f}"


class OpenMetricsWriter:
    """Accumulates metric families; `text()` renders them, `write(path)` writes atomically."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _family(self, name: str, type_: str, help_: str, bounds: tuple[float, ...] = ()) -> _Family:
        if not naming.PROM_METRIC_NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        fam = self._families.get(name)
        if fam is None:
            fam = _Family(name, type_, help_, bounds, {})
            self._families[name] = fam
        elif fam.type != type_ or fam.bounds != bounds:
            raise ValueError(f"metric {name!r} already defined as a different {fam.type}")
        return fam

    @staticmethod
    def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        for k in labels:
            if not naming.PROM_LABEL_NAME_RE.match(k) or k == "le":
                raise ValueError(f"invalid label name {k!r}")
        return tuple(sorted((k, str(v)) for k, v in labels.items()))

    def _add(self, fam: _Family, labels: Mapping[str, str], points: Iterable) -> None:
        key = self._key(labels)
        assert fam.series is not None
        series = fam.series.setdefault(key, _Series(key, []))
        last = series.points[-1] if series.points else None
        for p in points:
            t = p.t if isinstance(p, HistogramPoint) else p[0]
            prev = None if last is None else (last.t if isinstance(last, HistogramPoint) else last[0])
            if prev is not None and t <= prev:
                raise ValueError(f"{fam.name}{_labels_text(key)}: timestamps must increase ({t} after {prev})")
            series.points.append(p)
            last = p

    def counter(self, name: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]], help: str = "") -> None:
        """A counter; `name` ends in `_total` (the family is named without it)."""
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        self._add(self._family(name[: -len("_total")], "counter", help), labels, points)

    def gauge(self, name: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]], help: str = "") -> None:
        self._add(self._family(name, "gauge", help), labels, points)

    def histogram(
        self,
        name: str,
        labels: Mapping[str, str],
        bounds: Sequence[float],
        points: Iterable[HistogramPoint],
        help: str = "",
    ) -> None:
        """A histogram with finite upper `bounds` (+Inf is added); points carry len(bounds)+1 counts."""
        b = tuple(float(x) for x in bounds)
        fam = self._family(name, "histogram", help, b)
        checked = []
        for p in points:
            if len(p.buckets) != len(b) + 1:
                raise ValueError(f"{name}: expected {len(b) + 1} bucket counts, got {len(p.buckets)}")
            checked.append(p)
        self._add(fam, labels, checked)

    def text(self) -> str:
        out: list[str] = []
        for fam in self._families.values():
            out.append(f"# TYPE {fam.name} {fam.type}")
            if fam.help:
                out.append(f"# HELP {fam.name} {_escape(fam.help)}")
            assert fam.series is not None
            for series in fam.series.values():
                lbl = _labels_text(series.labels)
                if fam.type == "counter":
                    for t, v in series.points:
                        out.append(f"{fam.name}_total{lbl} {_num(v)} {_ts(t)}")
                elif fam.type == "gauge":
                    for t, v in series.points:
                        out.append(f"{fam.name}{lbl} {_num(v)} {_ts(t)}")
                else:
                    les = [floatToGoString(x) for x in fam.bounds] + ["+Inf"]
                    bucket_lbls = [_labels_text(series.labels + (("le", le),)) for le in les]
                    for p in series.points:
                        ts = _ts(p.t)
                        for bl, c in zip(bucket_lbls, p.buckets):
                            out.append(f"{fam.name}_bucket{bl} {_num(c)} {ts}")
                        out.append(f"{fam.name}_count{lbl} {_num(p.count)} {ts}")
                        out.append(f"{fam.name}_sum{lbl} {_num(p.sum)} {ts}")
        out.append("# EOF")
        return "\n".join(out) + "\n"

    def write(self, path: Union[str, Path]) -> Path:
        """Write the text atomically (temp file + rename): never a half-written file."""
        p = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=".om-", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.text())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return p


@dataclass(frozen=True)
class CompletedRequest:
    """A request as the frontend records it: arrival `started_t`, completion `t` (Unix s)."""

    t: float
    isl: float
    osl: float
    ttft_s: float
    itl_s: float
    duration_s: float
    started_t: Optional[float] = None  # None: arrived at `t`


def scrape_times(start: float, end: float, step: float) -> list[float]:
    """start, start+step, ..., up to end inclusive (computed by multiplication: no drift)."""
    if step <= 0 or end < start:
        raise ValueError("need step > 0 and end >= start")
    n = int(math.floor((end - start) / step + 1e-9))
    return [start + i * step for i in range(n + 1)]


def frontend_history(
    requests: Iterable[CompletedRequest],
    *,
    start: float,
    end: float,
    step: float,
    labels: Mapping[str, str],
    source: Source = SOURCES["dynamo"],
    buckets: Optional[Mapping[str, Sequence[float]]] = None,
    writer: Optional[OpenMetricsWriter] = None,
) -> OpenMetricsWriter:
    """The frontend's counters and histograms, scraped every `step` s over [start, end].

    `labels` go on every series (e.g. model and dynamo_namespace). Requests outside the
    range still count towards later scrapes (counters are cumulative from `start`).
    """
    if buckets is None:
        buckets = BUCKETS
    w = writer or OpenMetricsWriter()
    times = scrape_times(start, end, step)
    reqs = sorted(requests, key=lambda r: r.t)
    arrivals = sorted(r.t if r.started_t is None else r.started_t for r in reqs)
    done_t = [r.t for r in reqs]
    started_name = source.requests_started or source.requests_total
    if source.requests_started:
        w.counter(started_name, labels, [(s, bisect.bisect_right(arrivals, s)) for s in times])
    w.counter(source.requests_total, labels, [(s, bisect.bisect_right(done_t, s)) for s in times])
    fields = {
        "input_tokens": lambda r: r.isl,
        "output_tokens": lambda r: r.osl,
        "ttft_seconds": lambda r: r.ttft_s,
        "itl_seconds": lambda r: r.itl_s,
        "request_duration_seconds": lambda r: r.duration_s,
    }
    for attr, get in fields.items():
        bounds = tuple(float(b) for b in buckets[attr])
        counts = [0] * (len(bounds) + 1)
        total = 0.0
        n = 0
        i = 0
        points: list[HistogramPoint] = []
        for s in times:
            while i < len(reqs) and reqs[i].t <= s:
                v = float(get(reqs[i]))
                for k in range(bisect.bisect_left(bounds, v), len(bounds) + 1):
                    counts[k] += 1
                total += v
                n += 1
                i += 1
            points.append(HistogramPoint(s, tuple(counts), n, total))
        w.histogram(getattr(source, attr), labels, bounds, points)
    return w


def frontend_backlog(
    levels: Iterable[tuple[float, float]],
    *,
    start: float,
    end: float,
    step: float,
    labels: Mapping[str, str],
    source: Source = SOURCES["dynamo"],
    gauges: Optional[Sequence[int]] = None,
    writer: Optional[OpenMetricsWriter] = None,
) -> OpenMetricsWriter:
    """The frontend's waiting-requests gauges (`source.backlog`, by index in `gauges`;
    default all), scraped every `step` s over [start, end]: `levels` are (time, requests
    waiting from then on), 0 before the first. The stage gauge is in stage `dispatch`, phase
    `prefill`, without the labels it does not carry (as `frontend_exporter` exports it)."""
    w = writer or OpenMetricsWriter()
    changes = sorted(levels)
    times = [t for t, _ in changes]
    points = []
    for s in scrape_times(start, end, step):
        i = bisect.bisect_right(times, s)
        points.append((s, float(changes[i - 1][1]) if i else 0.0))
    for k in range(len(source.backlog)) if gauges is None else gauges:
        ref = source.backlog[k]
        own = {n: v for n, v in labels.items() if n not in ref.without}
        if ref.matchers:
            own.update(stage="dispatch", phase="prefill")
        w.gauge(ref.metric, own, points)
    return w


def requests_from_windows(windows: Sequence[TrafficWindow], start: float) -> list[CompletedRequest]:
    """Requests that reproduce each window's count and means exactly.

    Window k covers (start + k*T, start + (k+1)*T] (T = its window_seconds, all equal);
    its round(requests) requests are spread evenly inside it, each carrying the window's
    means. A window with requests but a missing mean is rejected (nothing to reproduce).
    """
    out: list[CompletedRequest] = []
    t0 = start
    for k, w in enumerate(windows):
        n = int(round(w.requests))
        T = w.window_seconds
        if n:
            means = (w.isl, w.osl, w.ttft_ms, w.itl_ms, w.request_duration_s)
            if any(m is None for m in means):
                raise ValueError(f"window {k} has requests but a missing mean")
            for i in range(n):
                out.append(
                    CompletedRequest(
                        t=t0 + (i + 0.5) * T / n,
                        isl=w.isl,  # type: ignore[arg-type]
                        osl=w.osl,  # type: ignore[arg-type]
                        ttft_s=w.ttft_ms / 1000.0,  # type: ignore[operator]
                        itl_s=w.itl_ms / 1000.0,  # type: ignore[operator]
                        duration_s=w.request_duration_s,  # type: ignore[arg-type]
                    )
                )
        t0 += T
    return out


def requests_from_trace(
    trace: Iterable[Request], start: float, *, ttft_s: float = 0.1, itl_s: float = 0.01
) -> list[CompletedRequest]:
    """A trace as completed requests with fixed latencies, arriving at start + request.t."""
    out = []
    for r in trace:
        duration = ttft_s + max(r.osl - 1, 0) * itl_s
        arrive = start + r.t
        out.append(CompletedRequest(arrive + duration, r.isl, r.osl, ttft_s, itl_s, duration, started_t=arrive))
    return out


def engine_history(
    requests: Iterable[tuple[str, CompletedRequest]],
    *,
    pods: Mapping[str, str],
    start: float,
    end: float,
    step: float,
    source: Source,
    model: str = "llama-8b",
    namespace: str = "inference",
    load: Iterable[tuple[str, float, float, float, float]] = (),
    kv_metric: Optional[Mapping[str, str]] = None,
    writer: Optional[OpenMetricsWriter] = None,
) -> OpenMetricsWriter:
    """Engine pods' series scraped every `step` s over [start, end]: `requests` are (pod,
    finished request) pairs, `pods` pod -> role (unified | prefill | decode), `load`
    (pod, time, running, waiting, kv) levels from then on (0 before), `kv_metric` the KV
    gauge per pod (version drift). Names, labels and buckets as `SyntheticEngines`."""
    w = writer or OpenMetricsWriter()
    times = scrape_times(start, end, step)
    labels = {pod: engine_labels(source, pod, role, model, namespace) for pod, role in pods.items()}
    events: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[tuple[float, float, int]]] = {}
    for pod in pods:  # every series exists from the start (counters at 0)
        for smp in engine_request_samples(source, labels[pod], isl=0, osl=0, ttft_s=0, itl_s=0, duration_s=0):
            events.setdefault((smp.kind, smp.metric, OpenMetricsWriter._key(smp.labels)), [])
    for pod, r in sorted(requests, key=lambda pr: pr[1].t):
        for smp in engine_request_samples(
            source, labels[pod], isl=r.isl, osl=r.osl, ttft_s=r.ttft_s, itl_s=r.itl_s, duration_s=r.duration_s
        ):
            events[(smp.kind, smp.metric, OpenMetricsWriter._key(smp.labels))].append((r.t, smp.value, smp.times))
    attr_of = {getattr(source, a): a for a in ("ttft_seconds", "itl_seconds", "request_duration_seconds", "input_tokens", "output_tokens")}
    for (kind, metric, key), evs in events.items():
        if kind == "counter":
            total, i, cpoints = 0.0, 0, []
            for s in times:
                while i < len(evs) and evs[i][0] <= s:
                    total += evs[i][1]
                    i += 1
                cpoints.append((s, total))
            w.counter(metric, dict(key), cpoints)
            continue
        bounds = tuple(float(b) for b in ENGINE_BUCKETS[source.name][attr_of.get(metric, "queue_seconds")])
        counts = [0] * (len(bounds) + 1)
        hsum, n, i = 0.0, 0, 0
        hpoints: list[HistogramPoint] = []
        for s in times:
            while i < len(evs) and evs[i][0] <= s:
                _, v, k = evs[i]
                for b in range(bisect.bisect_left(bounds, v), len(bounds) + 1):
                    counts[b] += k
                hsum += v * k
                n += k
                i += 1
            hpoints.append(HistogramPoint(s, tuple(counts), n, hsum))
        w.histogram(metric, dict(key), bounds, hpoints)
    levels: dict[str, list[tuple[float, float, float, float]]] = {pod: [] for pod in pods}
    for pod, t, running, waiting, kv in load:
        levels[pod].append((t, running, waiting, kv))
    for pod in pods:
        changes = sorted(levels[pod])
        at = [c[0] for c in changes]
        series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
        for s in times:
            j = bisect.bisect_right(at, s)
            running, waiting, kv = changes[j - 1][1:] if j else (0.0, 0.0, 0.0)
            for name, lbl, value in engine_gauge_samples(
                source, labels[pod], running=running, waiting=waiting, kv=kv, kv_metric=(kv_metric or {}).get(pod)
            ):
                series.setdefault((name, OpenMetricsWriter._key(lbl)), []).append((s, value))
        for (name, key), gpoints in series.items():
            w.gauge(name, dict(key), gpoints)
    return w
