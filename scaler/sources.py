"""Metric names, labels and PromQL per metrics source: the one table.

Every series the scaler reads is defined once here, as a PromQL expression over a
source's metrics. The generator renders the same expression as a recording rule (with a
`dynplan_plan` label); the scaler reads the recorded series when it exists and otherwise
evaluates the raw expression itself, so both paths give the same numbers.

Plans with `sizing: attainment` (the default) also read the window's peak one-minute
arrival rate, the index of dispersion of its 30-s arrival counts and the backlog waiting
for a first token (`ATTAINMENT_SERIES`), and the ready replicas of each pool from
kube-state-metrics (`ready_query`); `sizing: dynamo` plans read exactly the other series.
docs/decision-logic.md ("Signals from Prometheus") gives each expression and how it
differs from the simulator's definition.

Adding a source (vLLM, SGLang) means adding a `Source` entry, not code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional

from scaler.core.observations import PEAK_STEP_SECONDS, PEAK_WINDOW_SECONDS

if TYPE_CHECKING:
    from scaler.core.plan import Plan

PLAN_LABEL = "dynplan_plan"
# Sub-window and bin lengths of the burst signals, in whole seconds (PromQL durations).
PEAK_WINDOW = int(PEAK_WINDOW_SECONDS)
PEAK_STEP = int(PEAK_STEP_SECONDS)


@dataclass(frozen=True)
class GaugeRef:
    """A gauge read as a sum over the plan's selector, with extra raw `matchers`, minus the
    selector labels the gauge does not carry (`without`: matching on them finds nothing)."""

    metric: str
    matchers: str = ""
    without: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """Names of one metrics source. Histograms are base names (`_sum`/`_count` appended)."""

    name: str
    ttft_seconds: str
    itl_seconds: str
    request_duration_seconds: str
    input_tokens: str
    output_tokens: str
    requests_total: str                  # completed requests (counter, with _total)
    requests_started: Optional[str]      # arrivals (counter, with _total), when exported
    worker_active_prefill_tokens: str
    worker_active_decode_blocks: str
    worker_last_ttft_seconds: str
    worker_last_isl: str
    worker_last_itl_seconds: str
    worker_id_label: str
    worker_type_label: str
    # worker_type label value per pool
    worker_types: Mapping[str, str]
    # label the source puts the model name in (matched case-insensitively)
    model_label: str = "model"
    # requests waiting for their first token, summed over the frontends: the gauges in the
    # order they are tried (the first with a series wins)
    backlog: tuple[GaugeRef, ...] = ()


SOURCES: dict[str, Source] = {
    "dynamo": Source(
        name="dynamo",
        ttft_seconds="dynamo_frontend_time_to_first_token_seconds",
        itl_seconds="dynamo_frontend_inter_token_latency_seconds",
        request_duration_seconds="dynamo_frontend_request_duration_seconds",
        input_tokens="dynamo_frontend_input_sequence_tokens",
        output_tokens="dynamo_frontend_output_sequence_tokens",
        requests_total="dynamo_frontend_requests_total",
        requests_started="dynamo_frontend_requests_started_total",
        worker_active_prefill_tokens="dynamo_frontend_worker_active_prefill_tokens",
        worker_active_decode_blocks="dynamo_frontend_worker_active_decode_blocks",
        worker_last_ttft_seconds="dynamo_frontend_worker_last_time_to_first_token_seconds",
        worker_last_isl="dynamo_frontend_worker_last_input_sequence_tokens",
        worker_last_itl_seconds="dynamo_frontend_worker_last_inter_token_latency_seconds",
        worker_id_label="worker_id",
        worker_type_label="worker_type",
        # Dynamo labels aggregated engines "decode".
        worker_types={"prefill": "prefill", "decode": "decode", "worker": "decode"},
        backlog=(
            # Dynamo >= 0.6 (frontend-metrics rework): requests in a stage before their first
            # token; the gauge has no model label. `stage=~` rather than the stage names'
            # sum, so that stages added after the first token (postprocess) stay out.
            GaugeRef(
                "dynamo_frontend_stage_requests",
                matchers='stage=~"preprocess|route|dispatch"',
                without=("model",),
            ),
            # the older gauge of the same requests (deprecated, still exported)
            GaugeRef("dynamo_frontend_queued_requests"),
        ),
    ),
}

# Ready replicas of a scale target, by (apiVersion, kind): the kube-state-metrics gauge and
# the label that names the object (plus `namespace`). Other kinds (Dynamo's scaling
# adapters) have no such series: their pools fall back to the workers reporting.
READY_METRICS: dict[tuple[str, str], tuple[str, str]] = {
    ("apps/v1", "Deployment"): ("kube_deployment_status_replicas_ready", "deployment"),
    ("apps/v1", "StatefulSet"): ("kube_statefulset_status_replicas_ready", "statefulset"),
}


@dataclass(frozen=True)
class SeriesDef:
    """One series the scaler reads.

    `key`: the scaler's name for it; `kind`: "throughput" (one value per plan over the
    throughput interval) or "worker" (one value per worker over the load interval);
    `scale`: multiply the Prometheus value by this to get the scaler's unit; `sizing`: read
    only by plans with that `spec.scaling.throughput.sizing` (None: by every plan).
    """

    key: str
    kind: str
    metric: str      # the Source attribute that names the metric
    # recording-rule operation: increase | mean | avg_over_time | peak_rate | dispersion | gauge_sum
    op: str
    scale: float = 1.0
    unit: str = ""
    sizing: Optional[str] = None


SERIES: tuple[SeriesDef, ...] = (
    SeriesDef("requests", "throughput", "requests_started", "increase", unit="requests"),
    SeriesDef("isl", "throughput", "input_tokens", "mean", unit="tokens"),
    SeriesDef("osl", "throughput", "output_tokens", "mean", unit="tokens"),
    SeriesDef("ttft_ms", "throughput", "ttft_seconds", "mean", scale=1000.0, unit="ms"),
    SeriesDef("itl_ms", "throughput", "itl_seconds", "mean", scale=1000.0, unit="ms"),
    SeriesDef("request_duration_s", "throughput", "request_duration_seconds", "mean", unit="s"),
    SeriesDef("active_prefill_tokens", "worker", "worker_active_prefill_tokens", "avg_over_time", unit="tokens"),
    SeriesDef("active_decode_blocks", "worker", "worker_active_decode_blocks", "avg_over_time", unit="blocks"),
    SeriesDef("last_ttft_ms", "worker", "worker_last_ttft_seconds", "avg_over_time", scale=1000.0, unit="ms"),
    SeriesDef("last_isl", "worker", "worker_last_isl", "avg_over_time", unit="tokens"),
    SeriesDef("last_itl_ms", "worker", "worker_last_itl_seconds", "avg_over_time", scale=1000.0, unit="ms"),
    # what the attainment sizing learns bursts, clumping and the backlog from
    SeriesDef("peak_rate", "throughput", "requests_started", "peak_rate", unit="requests/s", sizing="attainment"),
    SeriesDef("arrival_dispersion", "throughput", "requests_started", "dispersion", sizing="attainment"),
    SeriesDef("backlog", "throughput", "backlog", "gauge_sum", unit="requests", sizing="attainment"),
)
SERIES_BY_KEY: dict[str, SeriesDef] = {s.key: s for s in SERIES}
ATTAINMENT_SERIES: tuple[SeriesDef, ...] = tuple(s for s in SERIES if s.sizing == "attainment")


def defined(series: SeriesDef, window_seconds: int) -> bool:
    """Whether the series exists for a window of this length: the index of dispersion needs
    two 30-s bins (the simulator's definition gives None below that, and so does the reader)."""
    if series.op == "dispersion":
        return int(window_seconds) // PEAK_STEP >= 2
    return True


def series_for(kind: str, sizing: str, window_seconds: int) -> tuple[SeriesDef, ...]:
    """The series of `kind` a plan with throughput sizing `sizing` reads (and records) over
    windows of `window_seconds`, in table order."""
    return tuple(
        s for s in SERIES
        if s.kind == kind and (s.sizing is None or s.sizing == sizing) and defined(s, window_seconds)
    )


def plan_series(plan: "Plan", kind: str) -> tuple[SeriesDef, ...]:
    """The series of `kind` a plan reads and records: the attainment sizing's signals only
    when its throughput scaling is on and sizes by attainment; `sizing: dynamo` and
    load-only plans read exactly what Dynamo's planner reads."""
    tp = plan.spec.scaling.throughput
    sizing = tp.sizing if tp.enabled else ""
    window = tp.interval_seconds if kind == "throughput" else plan.spec.scaling.load.interval_seconds
    return series_for(kind, sizing, window)


def escape_label_value(value: str) -> str:
    """Escape a string for use inside a double-quoted PromQL label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(labels: Mapping[str, str], extra: str = "") -> str:
    """`{a="x",b="y"}` from exact-match labels (sorted, escaped), plus optional raw matchers."""
    parts = [f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items())]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def _strip_total(metric: str) -> str:
    return metric[: -len("_total")] if metric.endswith("_total") else metric


def window(seconds: int) -> str:
    return f"{int(seconds)}s"


def subquery_range(seconds: int) -> str:
    """A subquery range that takes the points at exactly t - seconds, ..., t on its step:
    `seconds` plus one millisecond. Prometheus 2 includes a range's left end and Prometheus 3
    excludes it; a point one millisecond inside is taken by both, and no point of a
    whole-second grid lies in between."""
    return f"{int(seconds)}s1ms"


def _arrivals(source: Source, sel: str, range_seconds: int, offset_seconds: int = 0) -> str:
    """Requests that arrived in the `range_seconds` before t - `offset_seconds`: the summed
    increase of the arrivals counter, or of the completions counter where it has no series."""
    tail = f"[{window(range_seconds)}]" + (f" offset {window(offset_seconds)}" if offset_seconds else "")
    total = f"sum(increase({source.requests_total}{sel}{tail}))"
    if source.requests_started:
        return f"(sum(increase({source.requests_started}{sel}{tail})) or {total})"
    return f"({total})"


def peak_rate_expr(source: Source, sel: str, window_seconds: int) -> str:
    """The highest one-minute arrival rate (requests/s) inside the window, sliding by 30 s.

    Sub-windows end at t, t - 30 s, ... as long as they fit in (t - W, t]: from W = 90 s on,
    max_over_time of a subquery at 30-s resolution over W - 60 s (Prometheus aligns subquery
    steps to multiples of 30 s since the epoch, which the window ends are whenever W is a
    multiple of 30 s). A window of at most 60 s has one sub-window, itself (its mean rate,
    as in the simulator); up to 90 s, the one minute ending at t."""
    W = int(window_seconds)
    if W <= PEAK_WINDOW:
        return f"{_arrivals(source, sel, W)} / {W}"
    minute = f"{_arrivals(source, sel, PEAK_WINDOW)} / {PEAK_WINDOW}"
    if W < PEAK_WINDOW + PEAK_STEP:
        return minute
    return f"max_over_time(({minute})[{subquery_range(W - PEAK_WINDOW)}:{window(PEAK_STEP)}])"


def dispersion_expr(source: Source, sel: str, window_seconds: int) -> str:
    """The index of dispersion of the window's 30-s arrival counts by Allan's estimator: the
    mean squared difference of neighbouring bins over twice the mean bin.

    n = floor(W / 30) bins end at t, t - 30 s, ... (the simulator's bins, on the 30-s grid
    of the subqueries); the n - 1 differences are `increase[30s] - increase[30s] offset 30s`
    at the n - 1 bin ends that have a bin before them inside the window. Means are
    sum_over_time / count_over_time (exact for whole counts in every Prometheus version). An
    idle window is 0/0 = NaN (no value). Two bins: (c2 - c1)^2 / (c2 + c1), no subquery."""
    W = int(window_seconds)
    bins = W // PEAK_STEP
    if bins < 2:
        raise ValueError(f"the index of dispersion needs a window of at least {2 * PEAK_STEP}s, not {W}s")
    now = _arrivals(source, sel, PEAK_STEP)
    before = _arrivals(source, sel, PEAK_STEP, PEAK_STEP)
    if bins == 2:
        return f"({now} - {before}) ^ 2 / ({now} + {before})"
    step = window(PEAK_STEP)
    diff = f"(({now} - {before}) ^ 2)[{subquery_range((bins - 2) * PEAK_STEP)}:{step}]"
    count = f"({now})[{subquery_range((bins - 1) * PEAK_STEP)}:{step}]"
    return (
        f"(sum_over_time({diff}) / count_over_time({diff}))"
        f" / (2 * sum_over_time({count}) / count_over_time({count}))"
    )


def gauge_sum_expr(gauges: tuple[GaugeRef, ...], labels: Mapping[str, str]) -> str:
    """`sum(first{sel}) or sum(second{sel}) ...`: the first gauge that has a series; `sum`
    of nothing is empty, so a missing gauge falls through and all missing stays empty."""
    if not gauges:
        raise ValueError("no gauge to read")
    parts = []
    for g in gauges:
        sel = selector({k: v for k, v in labels.items() if k not in g.without}, g.matchers)
        parts.append(f"sum({g.metric}{sel})")
    return " or ".join(parts)


def raw_expr(source: Source, series: SeriesDef, labels: Mapping[str, str], window_seconds: int) -> str:
    """The PromQL that computes a series from the source metrics (rule `expr` and fallback).

    Means are sum(increase(_sum)) / sum(increase(_count)) across all matching series,
    never an average of per-series averages. Request counts prefer arrivals
    (`requests_started`) and fall back to completions where a source lacks them; `sum`
    over existing counters gives 0, not an empty result, on an idle window. The burst
    signals are `peak_rate_expr` and `dispersion_expr`, the backlog `gauge_sum_expr`.
    """
    sel = selector(labels)
    w = window(window_seconds)
    if series.kind == "throughput":
        if series.op == "increase":
            total = f"sum(increase({source.requests_total}{sel}[{w}]))"
            if source.requests_started:
                return f"sum(increase({source.requests_started}{sel}[{w}])) or {total}"
            return total
        if series.op == "peak_rate":
            return peak_rate_expr(source, sel, window_seconds)
        if series.op == "dispersion":
            return dispersion_expr(source, sel, window_seconds)
        if series.op == "gauge_sum":
            return gauge_sum_expr(getattr(source, series.metric), labels)
        base = getattr(source, series.metric)
        return f"sum(increase({base}_sum{sel}[{w}])) / sum(increase({base}_count{sel}[{w}]))"
    metric = getattr(source, series.metric)
    by = f"{source.worker_id_label}, {source.worker_type_label}"
    return f"avg by ({by}) (avg_over_time({metric}{sel}[{w}]))"


def record_name(source: Source, series: SeriesDef, window_seconds: int) -> str:
    """Recording-rule name, `level:metric:operations` (Prometheus naming practice)."""
    w = window(window_seconds)
    if series.kind == "throughput":
        arrivals = _strip_total(source.requests_started or source.requests_total)
        if series.op == "increase":
            return f"{PLAN_LABEL}:{arrivals}:increase{w}"
        if series.op == "peak_rate":
            # the highest 1-minute rate over the window
            return f"{PLAN_LABEL}:{arrivals}:max_rate{window(PEAK_WINDOW)}_{w}"
        if series.op == "dispersion":
            # the index of dispersion of 30-s increases over the window
            return f"{PLAN_LABEL}:{arrivals}:dispersion_increase{window(PEAK_STEP)}_{w}"
        if series.op == "gauge_sum":
            # an instant: no window in the name (named after the first gauge tried)
            return f"{PLAN_LABEL}:{getattr(source, series.metric)[0].metric}:sum"
        return f"{PLAN_LABEL}:{getattr(source, series.metric)}:mean{w}"
    level = f"{PLAN_LABEL}_{source.worker_id_label}_{source.worker_type_label}"
    return f"{level}:{getattr(source, series.metric)}:avg_over_time{w}"


def recorded_query(source: Source, series: SeriesDef, plan_name: str, window_seconds: int) -> str:
    """The instant query that reads a recorded series back for one plan."""
    return record_name(source, series, window_seconds) + selector({PLAN_LABEL: plan_name})


def read_query(
    source: Source,
    series: SeriesDef,
    labels: Mapping[str, str],
    plan_name: str,
    window_seconds: int,
    use_recording_rules: bool,
) -> str:
    """The query the scaler sends for one series: recorded when it exists, raw otherwise.

    `recorded or on() (raw)` returns the recorded series whenever it has a sample at the
    evaluation time (`on()` matches everything, so the raw side is dropped), and the raw
    expression otherwise; the choice is made per evaluation (per step in a range query).
    The two are told apart by the `dynplan_plan` label, which only recorded series carry.
    """
    raw = raw_expr(source, series, labels, window_seconds)
    if not use_recording_rules:
        return raw
    return f"{recorded_query(source, series, plan_name, window_seconds)} or on() ({raw})"


def is_recorded(labels: Mapping[str, str]) -> bool:
    """Whether a query result came from a recorded series (see `read_query`)."""
    return PLAN_LABEL in labels


def ready_query(api_version: str, kind: str, namespace: str, name: str) -> Optional[str]:
    """The ready replicas of one scale target from kube-state-metrics, or None for a kind it
    does not report. `max`, not `sum`: two kube-state-metrics replicas (or two scrape jobs)
    report the same object twice."""
    found = READY_METRICS.get((api_version, kind))
    if found is None:
        return None
    metric, label = found
    return f"max({metric}{selector({'namespace': namespace, label: name})})"
