"""Metric names, labels and PromQL per metrics source: the one table.

Every series the scaler reads is defined once here, as a PromQL expression over a
source's metrics. The generator renders the same expression as a recording rule (with a
`dynplan_plan` label); the scaler reads the recorded series when it exists and otherwise
evaluates the raw expression itself, so both paths give the same numbers.

Plans with `sizing: attainment` (the default) also read the window's peak one-minute
arrival rate, the index of dispersion of its arrival counts (`dispersion_bin`) and the backlog waiting
for a first token (`ATTAINMENT_SERIES`), and the ready replicas of each pool from
kube-state-metrics (`ready_query`); `sizing: dynamo` plans read exactly the other series.
docs/decision-logic.md ("Signals from Prometheus") gives each expression and how it
differs from the simulator's definition.

Two layouts (`Source.layout`): "frontend" (Dynamo: every series comes from the frontend,
which labels per-worker series with the worker's type) and "engine" (vLLM, SGLang: each
engine pod exports its own series, and a pool's pods are picked by the pool's selector,
`spec.pools.<pool>.selector`, on top of `spec.metrics.selector`). In an engine layout each
plan-level series is read from one pool (`series_pool`): in a disaggregated deployment the
decode pool sees every request to its end (rate, ISL, OSL, ITL, duration), the prefill pool
gives the prefill latency and the queue before the first token (TTFT, backlog); aggregated,
the one pool gives everything. docs/metrics-sources.md lists every series per source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from scaler.core.observations import PEAK_STEP_SECONDS, PEAK_WINDOW_SECONDS, TrafficWindow

if TYPE_CHECKING:
    from scaler.core.plan import Plan

PLAN_LABEL = "dynplan_plan"
# the plan's namespace on every recorded series and alert (a rule label): plans of one name in
# two namespaces may share a Prometheus
NAMESPACE_LABEL = "dynplan_namespace"
# the pool a recorded per-worker series of an engine source belongs to (a rule label)
POOL_LABEL = "dynplan_pool"
# the label that names an engine's worker: the pod (a replica of the pool's Deployment)
POD_LABEL = "pod"
# Sub-window and bin lengths of the burst signals, in whole seconds (PromQL durations).
PEAK_WINDOW = int(PEAK_WINDOW_SECONDS)
PEAK_STEP = int(PEAK_STEP_SECONDS)
# The range of every rate/increase/avg_over_time is at least this many scrape intervals
# (Prometheus's guidance for rate(): four, so that a missed or late scrape still leaves two
# samples); a shorter decision window is read over this longer range (`query_range`).
RANGE_SCRAPES = 4
# The burst signals' sub-windows and bins are fixed by their definition (the simulator's):
# they are read only when each holds at least this many scrapes (`defined`).
MIN_SCRAPES = 2


def query_range(window_seconds: int, scrape_seconds: int) -> int:
    """The range (s) the PromQL of a window of `window_seconds` reads over: the window, or
    RANGE_SCRAPES scrape intervals when that is longer. The one place the scrape interval
    shapes a query: rules, the raw fallback and the doctor all come through here."""
    return max(int(window_seconds), RANGE_SCRAPES * int(scrape_seconds))


@dataclass(frozen=True)
class GaugeRef:
    """A gauge read as a sum over the plan's selector, with extra raw `matchers`, minus the
    selector labels the gauge does not carry (`without`: matching on them finds nothing)."""

    metric: str
    matchers: str = ""
    without: tuple[str, ...] = ()
    # labels whose values repeat one request-level value (tensor/pipeline ranks): collapsed
    # with max before the sum, so that a TP=4 engine counts its queue once, not four times
    repeats: tuple[str, ...] = ()
    # a plan-wide gauge (a gateway in front of the pools): read with the plan's selector only
    plan_wide: bool = False


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
    # waiting requests in a gateway in front of the engines, added to `backlog` when they
    # have a series (requests queued there are invisible to the engines)
    gateway_backlog: tuple[GaugeRef, ...] = ()
    # "frontend" (Dynamo) or "engine" (vLLM, SGLang: per-pod series, pools by selector)
    layout: str = "frontend"
    # means given by two counters rather than a histogram: Source attribute -> (sum, count)
    ratios: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # engine layout, disaggregated plans without pool selectors: the matcher per pool
    pool_matchers: Mapping[str, str] = field(default_factory=dict)
    # engine layout: rank labels that repeat a request-level value (see GaugeRef.repeats)
    rank_labels: tuple[str, ...] = ()
    # engine layout: per-worker KV gauges after `worker_active_decode_blocks`, tried per pod
    # in order (renamed across versions), and how one pod's engines combine (avg | sum)
    kv_fallbacks: tuple[str, ...] = ()
    kv_combine: str = "avg"
    # the versions whose names this entry follows (docs/metrics-sources.md)
    versions: str = ""
    # `dynplan profile learn` (engine layout): the running-requests gauge, the KV-usage
    # gauges as a fraction of the cache (tried per pod in order), and the cache's size in
    # tokens: an info gauge whose labels multiply to it (vLLM), else (no info gauge) the
    # used-tokens gauge (`worker_active_decode_blocks`) over the usage fraction (SGLang)
    worker_running_requests: Optional[str] = None
    kv_usage_fraction: tuple[str, ...] = ()
    kv_capacity_info: Optional[str] = None
    kv_capacity_labels: tuple[str, ...] = ()


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
        versions="Dynamo 0.4 and later (stage gauge from 0.6)",
    ),
    # vLLM V1 engine (vllm/v1/metrics/loggers.py): labels model_name, engine (the engine
    # index inside the pod), plus the scrape's pod/namespace. No arrivals counter: requests
    # are counted when they finish (request_success_total, label finished_reason).
    "vllm": Source(
        name="vllm",
        ttft_seconds="vllm:time_to_first_token_seconds",
        itl_seconds="vllm:inter_token_latency_seconds",
        request_duration_seconds="vllm:e2e_request_latency_seconds",
        input_tokens="vllm:request_prompt_tokens",
        output_tokens="vllm:request_generation_tokens",
        requests_total="vllm:request_success_total",
        requests_started=None,
        worker_active_prefill_tokens="vllm:num_requests_waiting",
        worker_active_decode_blocks="vllm:kv_cache_usage_perc",
        worker_last_ttft_seconds="vllm:time_to_first_token_seconds",
        worker_last_isl="vllm:request_prompt_tokens",
        worker_last_itl_seconds="vllm:inter_token_latency_seconds",
        worker_id_label=POD_LABEL,
        worker_type_label=POOL_LABEL,
        worker_types={"prefill": "prefill", "decode": "decode", "worker": "worker"},
        model_label="model_name",
        backlog=(GaugeRef("vllm:num_requests_waiting"),),
        # llm-d's endpoint picker (EPP): requests held in its flow-control queue
        gateway_backlog=(GaugeRef("llm_d_epp_flow_control_queue_size", without=("model_name",), plan_wide=True),),
        layout="engine",
        # kv_cache_usage_perc replaced gpu_cache_usage_perc (deprecated 0.9, removed 0.13)
        kv_fallbacks=("vllm:gpu_cache_usage_perc",),
        kv_combine="avg",
        versions="vLLM 0.11 and later, V1 engine (inter_token_latency_seconds is new in 0.11)",
        worker_running_requests="vllm:num_requests_running",
        kv_usage_fraction=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        # an info gauge (value 1) without the model label: KV blocks x tokens per block
        kv_capacity_info="vllm:cache_config_info",
        kv_capacity_labels=("num_gpu_blocks", "block_size"),
    ),
    # SGLang (python/sglang/srt/metrics/collector.py): tokenizer series (TTFT, ITL, e2e,
    # token and request counters) carry model_name and engine_type; scheduler gauges also
    # tp_rank, pp_rank (and dp_rank with DP attention). No ISL/OSL histogram by default:
    # the means are token counters over the request counter, all counted at finish.
    "sglang": Source(
        name="sglang",
        ttft_seconds="sglang:time_to_first_token_seconds",
        itl_seconds="sglang:inter_token_latency_seconds",
        request_duration_seconds="sglang:e2e_request_latency_seconds",
        input_tokens="sglang:prompt_tokens",
        output_tokens="sglang:generation_tokens",
        requests_total="sglang:num_requests_total",
        requests_started=None,
        worker_active_prefill_tokens="sglang:num_queue_reqs",
        worker_active_decode_blocks="sglang:num_used_tokens",
        worker_last_ttft_seconds="sglang:time_to_first_token_seconds",
        worker_last_isl="sglang:prompt_tokens",
        worker_last_itl_seconds="sglang:inter_token_latency_seconds",
        worker_id_label=POD_LABEL,
        worker_type_label=POOL_LABEL,
        worker_types={"prefill": "prefill", "decode": "decode", "worker": "worker"},
        model_label="model_name",
        backlog=(GaugeRef("sglang:num_queue_reqs", repeats=("tp_rank", "pp_rank")),),
        layout="engine",
        ratios={
            "input_tokens": ("sglang:prompt_tokens_total", "sglang:num_requests_total"),
            "output_tokens": ("sglang:generation_tokens_total", "sglang:num_requests_total"),
        },
        # --disaggregation-mode prefill|decode labels every series engine_type
        pool_matchers={"prefill": 'engine_type="prefill"', "decode": 'engine_type="decode"'},
        rank_labels=("tp_rank", "pp_rank"),
        kv_combine="sum",
        versions="SGLang releases whose series carry engine_type (checked against sglang main, 2026)",
        worker_running_requests="sglang:num_running_reqs",
        # num_used_tokens / max_total_num_tokens (collector.py), per rank
        kv_usage_fraction=("sglang:token_usage",),
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
    # | over_bound (the fraction of a histogram's observations above the plan's SLA bucket)
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
    # the measured outcome the prefill tail is calibrated on: TTFTs above the SLA bucket
    SeriesDef("ttft_miss", "throughput", "ttft_seconds", "over_bound", unit="fraction", sizing="attainment"),
)
SERIES_BY_KEY: dict[str, SeriesDef] = {s.key: s for s in SERIES}
ATTAINMENT_SERIES: tuple[SeriesDef, ...] = tuple(s for s in SERIES if s.sizing == "attainment")


def dispersion_bin(scrape_seconds: int) -> int:
    """The bin the index of dispersion counts arrivals in: the shortest multiple of PEAK_STEP
    that holds MIN_SCRAPES scrapes (30 s up to 15-s scrapes, 60 s at kube-prometheus-stack's
    30 s), so that every scrape interval the burst signals allow has a count. Longer bins
    count more of the rate's drift as clumping; the miss calibration sheds what the tail does
    not need."""
    need = MIN_SCRAPES * max(int(scrape_seconds), 1)
    return PEAK_STEP * max(1, -(-need // PEAK_STEP))


def defined(series: SeriesDef, window_seconds: int, scrape_seconds: int = 1) -> bool:
    """Whether the series can have a value for a window of this length at this scrape
    interval: the index of dispersion needs two of its bins (`dispersion_bin`; the
    simulator's definition gives None below that, and so does the reader); the peak rate's
    minute (or the window itself when shorter) must hold MIN_SCRAPES scrapes, else its
    increase() is empty at every evaluation."""
    need = MIN_SCRAPES * int(scrape_seconds)
    if series.op == "dispersion":
        return int(window_seconds) // dispersion_bin(scrape_seconds) >= 2
    if series.op == "peak_rate":
        return min(int(window_seconds), PEAK_WINDOW) >= need
    return True


def series_for(kind: str, sizing: str, window_seconds: int, scrape_seconds: int = 1) -> tuple[SeriesDef, ...]:
    """The series of `kind` a plan with throughput sizing `sizing` reads (and records) over
    windows of `window_seconds` at scrapes every `scrape_seconds`, in table order."""
    return tuple(
        s for s in SERIES
        if s.kind == kind and (s.sizing is None or s.sizing == sizing) and defined(s, window_seconds, scrape_seconds)
    )


def plan_series(plan: "Plan", kind: str) -> tuple[SeriesDef, ...]:
    """The series of `kind` a plan reads and records: the attainment sizing's signals only
    when its throughput scaling is on and sizes by attainment; `sizing: dynamo` and
    load-only plans read exactly what Dynamo's planner reads."""
    tp = plan.spec.scaling.throughput
    sizing = tp.sizing if tp.enabled else ""
    return series_for(kind, sizing, plan_window(plan, kind), plan.spec.metrics.scrape_interval_seconds)


def plan_window(plan: "Plan", kind: str) -> int:
    """The decision window of a plan's `kind` series: the throughput or load interval."""
    scaling = plan.spec.scaling
    return scaling.throughput.interval_seconds if kind == "throughput" else scaling.load.interval_seconds


def plan_range(plan: "Plan", kind: str) -> int:
    """`query_range` of the plan's `kind` window at its spec.metrics.scrapeIntervalSeconds."""
    return query_range(plan_window(plan, kind), plan.spec.metrics.scrape_interval_seconds)


def escape_label_value(value: str) -> str:
    """Escape a string for use inside a double-quoted PromQL label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(labels: Mapping[str, str], extra: str = "") -> str:
    """`{a="x",b="y"}` from exact-match labels (sorted, escaped), plus optional raw matchers."""
    parts = [f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items())]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def series_selector(metric: str, sel: str) -> str:
    """`metric{sel}`; for a name with a colon (vLLM's `vllm:...`, SGLang's `sglang:...`),
    `{__name__=~"vllm[:_]...",sel}`: prometheus_client's OpenMetrics exposition escapes the
    colon to `_` in sample names (client_python issue #1177, open in 2026), so a Prometheus
    that negotiates OpenMetrics stores `vllm_...`. One pod's series carry one of the two."""
    if ":" not in metric:
        return metric + sel
    inner = sel[1:-1]
    pattern = metric.replace(":", "[:_]")
    return "{" + _join(f'__name__=~"{pattern}"', inner) + "}"


MATCH_OPERATORS = ("=~", "!~", "!=")


def matcher(label: str, value: str) -> str:
    """One matcher of a pool selector: `value` exactly, or with the operator it starts with
    (`=~regex`, `!~regex`, `!=value`), escaped. Prometheus anchors regular expressions."""
    op = value[:2] if value[:2] in MATCH_OPERATORS else "="
    rest = value[2:] if op != "=" else value
    return f'{label}{op}"{escape_label_value(rest)}"'


def matchers(labels: Mapping[str, str]) -> str:
    """`a="x",b=~"y.*"` from a pool selector (sorted), for `selector(..., extra=)`."""
    return ",".join(matcher(k, v) for k, v in sorted(labels.items()))


def _join(*parts: str) -> str:
    return ",".join(p for p in parts if p)


def _collapse(repeats: tuple[str, ...], inner: str) -> str:
    """`max without (ranks) (inner)`: one value per engine where ranks repeat it."""
    return f"max without ({', '.join(repeats)}) ({inner})" if repeats else inner


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
    total = f"sum(increase({series_selector(source.requests_total, sel)}{tail}))"
    if source.requests_started:
        return f"(sum(increase({series_selector(source.requests_started, sel)}{tail})) or {total})"
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


def dispersion_expr(source: Source, sel: str, window_seconds: int, bin_seconds: int = PEAK_STEP) -> str:
    """The index of dispersion of the window's arrival counts in bins of `bin_seconds`
    (`dispersion_bin`) by Allan's estimator: the mean squared difference of neighbouring
    bins over twice the mean bin.

    n = floor(W / B) bins end at t, t - B, ... (the simulator's bins, on the B grid of the
    subqueries: window ends are multiples of B); the n - 1 differences are `increase[B] -
    increase[B] offset B` at the n - 1 bin ends that have a bin before them inside the
    window. Means are sum_over_time / count_over_time (exact for whole counts in every
    Prometheus version). An idle window is 0/0 = NaN (no value). Two bins: (c2 - c1)^2 /
    (c2 + c1), no subquery."""
    W, B = int(window_seconds), int(bin_seconds)
    bins = W // B
    if bins < 2:
        raise ValueError(f"the index of dispersion needs a window of at least {2 * B}s, not {W}s")
    now = _arrivals(source, sel, B)
    before = _arrivals(source, sel, B, B)
    if bins == 2:
        return f"({now} - {before}) ^ 2 / ({now} + {before})"
    step = window(B)
    diff = f"(({now} - {before}) ^ 2)[{subquery_range((bins - 2) * B)}:{step}]"
    count = f"({now})[{subquery_range((bins - 1) * B)}:{step}]"
    return (
        f"(sum_over_time({diff}) / count_over_time({diff}))"
        f" / (2 * sum_over_time({count}) / count_over_time({count}))"
    )


def le_matcher(bound_ms: float) -> str:
    """A histogram bucket's `le` matcher at a bound in ms, as exporters write the bound in
    seconds: Go's client `1`, Python's `1.0`."""
    seconds = bound_ms / 1000
    if seconds == int(seconds):
        return f'le=~"{int(seconds)}|{int(seconds)}\\\\.0"'
    return f'le="{seconds!r}"'


def over_bound_expr(source: Source, attr: str, sel_labels: Mapping[str, str], extra: str, w: str, bound_ms: float) -> str:
    """The fraction of a histogram's observations over the window above `bound_ms`:
    1 - increase(bucket{le=bound}) / increase(count). Empty (no value) when the histogram
    has no bucket at exactly that bound, NaN when nothing was observed."""
    base = getattr(source, attr)
    bucket = series_selector(base + "_bucket", selector(sel_labels, _join(extra, le_matcher(bound_ms))))
    count = series_selector(base + "_count", selector(sel_labels, extra))
    return f"1 - sum(increase({bucket}[{w}])) / sum(increase({count}[{w}]))"


def _gauge_sum(g: GaugeRef, labels: Mapping[str, str], extra: str) -> str:
    sel = selector({k: v for k, v in labels.items() if k not in g.without}, _join(g.matchers, "" if g.plan_wide else extra))
    return f"sum({_collapse(g.repeats, series_selector(g.metric, sel))})"


def gauge_sum_expr(
    gauges: tuple[GaugeRef, ...],
    labels: Mapping[str, str],
    extra: str = "",
    gateway: tuple[GaugeRef, ...] = (),
) -> str:
    """`sum(first{sel}) or sum(second{sel}) ...`: the first gauge that has a series; `sum`
    of nothing is empty, so a missing gauge falls through and all missing stays empty.

    With `gateway` gauges: `(sum(gateway) + (engines)) or (engines)`, the gateway's queue
    added while it has a series (an empty side makes the sum empty, and `or` falls back)."""
    if not gauges:
        raise ValueError("no gauge to read")
    engines = " or ".join(_gauge_sum(g, labels, extra) for g in gauges)
    if not gateway:
        return engines
    front = " or ".join(_gauge_sum(g, labels, extra) for g in gateway)
    return f"(({front}) + ({engines})) or ({engines})"


def _mean(source: Source, attr: str, sel: str, w: str, by: str = "") -> str:
    """sum(increase(sum)) / sum(increase(count)) of a histogram, or of the two counters a
    source gives the mean by (`Source.ratios`); `by`: e.g. `by (pod) ` for per-pod means."""
    num, den = source.ratios.get(attr, (f"{getattr(source, attr)}_sum", f"{getattr(source, attr)}_count"))
    agg = f"sum {by}" if by else "sum"
    return f"{agg}(increase({series_selector(num, sel)}[{w}])) / {agg}(increase({series_selector(den, sel)}[{w}]))"


def _engine_worker_expr(source: Source, series: SeriesDef, sel: str, w: str) -> str:
    """One engine pool's per-pod value over the load window: the latency means from the
    pod's own histogram rates; queued prefill tokens = waiting requests x the pod's mean
    ISL; the KV load from the first KV gauge the pod exports (renamed across versions)."""
    by = f"by ({POD_LABEL}) "
    if series.key == "last_ttft_ms":
        return _mean(source, "ttft_seconds", sel, w, by)
    if series.key == "last_itl_ms":
        return _mean(source, "itl_seconds", sel, w, by)
    if series.key == "last_isl":
        return _mean(source, "input_tokens", sel, w, by)
    if series.key == "active_prefill_tokens":
        waiting = _collapse(source.rank_labels, f"avg_over_time({series_selector(source.worker_active_prefill_tokens, sel)}[{w}])")
        return f"sum {by}({waiting}) * on ({POD_LABEL}) ({_mean(source, 'input_tokens', sel, w, by)})"
    if series.key == "active_decode_blocks":
        gauges = (source.worker_active_decode_blocks,) + source.kv_fallbacks
        return " or ".join(
            f"{source.kv_combine} {by}({_collapse(source.rank_labels, f'avg_over_time({series_selector(g, sel)}[{w}])')})" for g in gauges
        )
    raise ValueError(f"no per-worker expression for {series.key!r} in source {source.name!r}")


def raw_expr(
    source: Source,
    series: SeriesDef,
    labels: Mapping[str, str],
    window_seconds: int,
    extra: str = "",
    range_seconds: Optional[int] = None,
    bound_ms: Optional[float] = None,
    bin_seconds: int = PEAK_STEP,
) -> str:
    """The PromQL that computes a series from the source metrics (rule `expr` and fallback).

    Means are sum(increase(_sum)) / sum(increase(_count)) across all matching series,
    never an average of per-series averages. Request counts prefer arrivals
    (`requests_started`) and fall back to completions where a source lacks them; `sum`
    over existing counters gives 0, not an empty result, on an idle window. The burst
    signals are `peak_rate_expr` and `dispersion_expr`, the backlog `gauge_sum_expr`.
    `extra`: raw matchers added to every selector (an engine pool's, `pool_extra`).
    `range_seconds` (`query_range`; default: the window): the range of every increase and
    avg_over_time. Longer than the window, a mean or an average is taken over the range,
    and the request count is the range's, scaled to the window (`* W / R`: the window's
    share at the range's mean rate). The burst signals keep their own sub-windows.
    `bound_ms`: the histogram bucket an `over_bound` series counts above (the plan's SLA);
    `bin_seconds`: the index of dispersion's bin (`dispersion_bin`).
    """
    sel = selector(labels, extra)
    W = int(window_seconds)
    R = W if range_seconds is None else int(range_seconds)
    if R < W:
        raise ValueError(f"a query range ({R}s) shorter than its window ({W}s)")
    w = window(R)
    if series.kind == "throughput":
        if series.op == "increase":
            total = f"sum(increase({series_selector(source.requests_total, sel)}[{w}]))"
            if source.requests_started:
                total = f"sum(increase({series_selector(source.requests_started, sel)}[{w}])) or {total}"
            return total if R == W else f"({total}) * {W} / {R}"
        if series.op == "peak_rate":
            return peak_rate_expr(source, sel, window_seconds)
        if series.op == "dispersion":
            return dispersion_expr(source, sel, window_seconds, bin_seconds)
        if series.op == "gauge_sum":
            return gauge_sum_expr(getattr(source, series.metric), labels, extra, source.gateway_backlog)
        if series.op == "over_bound":
            if bound_ms is None:
                raise ValueError(f"series {series.key} needs the bucket bound it counts above")
            return over_bound_expr(source, series.metric, labels, extra, w, bound_ms)
        return _mean(source, series.metric, sel, w)
    if source.layout == "engine":
        return _engine_worker_expr(source, series, sel, w)
    metric = getattr(source, series.metric)
    by = f"{source.worker_id_label}, {source.worker_type_label}"
    return f"avg by ({by}) (avg_over_time({metric}{sel}[{w}]))"


def record_name(
    source: Source, series: SeriesDef, window_seconds: int, range_seconds: Optional[int] = None, bin_seconds: int = PEAK_STEP
) -> str:
    """Recording-rule name, `level:metric:operations` (Prometheus naming practice). The
    duration in a name is the range the rule reads over (`raw_expr`): the window unless the
    scrape interval needs a longer one; the request count, a count per window, names both
    then (`increase60s_over120s`). Names of windows of at least RANGE_SCRAPES scrapes are
    the same as before ranges depended on the scrape interval."""
    R = int(window_seconds) if range_seconds is None else int(range_seconds)
    w = window(R)
    if series.kind == "throughput":
        arrivals = _strip_total(source.requests_started or source.requests_total)
        if series.op == "increase":
            if R != int(window_seconds):
                return f"{PLAN_LABEL}:{arrivals}:increase{window(window_seconds)}_over{w}"
            return f"{PLAN_LABEL}:{arrivals}:increase{w}"
        if series.op == "peak_rate":
            # the highest 1-minute rate over the window (its own sub-windows: no range)
            return f"{PLAN_LABEL}:{arrivals}:max_rate{window(PEAK_WINDOW)}_{window(window_seconds)}"
        if series.op == "dispersion":
            # the index of dispersion of the bins' increases over the window
            return f"{PLAN_LABEL}:{arrivals}:dispersion_increase{window(bin_seconds)}_{window(window_seconds)}"
        if series.op == "gauge_sum":
            # an instant: no window in the name (named after the first gauge tried)
            return f"{PLAN_LABEL}:{getattr(source, series.metric)[0].metric}:sum"
        if series.op == "over_bound":
            # the plan's own bound (its SLA bucket): the plan label tells plans apart
            return f"{PLAN_LABEL}:{getattr(source, series.metric)}:over_sla_fraction{w}"
        return f"{PLAN_LABEL}:{getattr(source, series.metric)}:mean{w}"
    if source.layout == "engine":
        # per pod (one rule per pool, told apart by the pool label)
        op = {"active_prefill_tokens": "queued_tokens", "active_decode_blocks": "avg_over_time"}.get(series.key, "mean")
        return f"{PLAN_LABEL}_{POD_LABEL}:{getattr(source, series.metric)}:{op}{w}"
    level = f"{PLAN_LABEL}_{source.worker_id_label}_{source.worker_type_label}"
    return f"{level}:{getattr(source, series.metric)}:avg_over_time{w}"


def recorded_query(
    source: Source,
    series: SeriesDef,
    plan_name: str,
    window_seconds: int,
    pool: Optional[str] = None,
    range_seconds: Optional[int] = None,
    namespace: Optional[str] = None,
    bin_seconds: int = PEAK_STEP,
) -> str:
    """The instant query that reads a recorded series back for one plan (and pool); with
    `namespace`, only the series the plan's own rules wrote (`dynplan_namespace`: two
    namespaces' plans of one name may share a Prometheus)."""
    labels = {
        PLAN_LABEL: plan_name,
        **({NAMESPACE_LABEL: namespace} if namespace is not None else {}),
        **({POOL_LABEL: pool} if pool is not None else {}),
    }
    return record_name(source, series, window_seconds, range_seconds, bin_seconds) + selector(labels)


def read_query(
    source: Source,
    series: SeriesDef,
    labels: Mapping[str, str],
    plan_name: str,
    window_seconds: int,
    use_recording_rules: bool,
    extra: str = "",
    pool: Optional[str] = None,
    range_seconds: Optional[int] = None,
    namespace: Optional[str] = None,
    bound_ms: Optional[float] = None,
    bin_seconds: int = PEAK_STEP,
) -> str:
    """The query the scaler sends for one series: recorded when it exists, raw otherwise.

    `recorded or on() (raw)` returns the recorded series whenever it has a sample at the
    evaluation time (`on()` matches everything, so the raw side is dropped), and the raw
    expression otherwise; the choice is made per evaluation (per step in a range query).
    The two are told apart by the `dynplan_plan` label, which only recorded series carry.
    """
    raw = raw_expr(source, series, labels, window_seconds, extra, range_seconds, bound_ms, bin_seconds)
    if not use_recording_rules:
        return raw
    recorded = recorded_query(source, series, plan_name, window_seconds, pool, range_seconds, namespace, bin_seconds)
    return f"{recorded} or on() ({raw})"


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


@dataclass(frozen=True)
class SharedQuery:
    """One query that answers the same series for every plan at once, and the labels that
    pick one plan's samples out of its answer (`scaler.prom.batch.SharedReads`).

    For a recorded series, `expr` is the bare record name (every plan's series) and `match`
    the plan (and pool) labels the per-plan `recorded_query` selects on; a plan's samples
    are the ones whose labels carry every `match` pair. For an aggregate (`ready_shared`),
    `expr` keeps the match labels as its `by` clause, so each group is one plan's value.
    `complete`: the answer holds every plan's value, so a plan missing from it has none
    (an aggregate); otherwise (a recorded series) such a plan reads its own query, whose
    raw side may have one."""

    expr: str
    match: tuple[tuple[str, str], ...]
    complete: bool = False


def ready_shared(api_version: str, kind: str, namespace: str, name: str) -> Optional[SharedQuery]:
    """`ready_query` for every scale target at once: `max by (namespace, <kind>)`, one group
    per object, the same value as the per-object `max(...)`."""
    found = READY_METRICS.get((api_version, kind))
    if found is None:
        return None
    metric, label = found
    return SharedQuery(f"max by (namespace, {label}) ({metric})", (("namespace", namespace), (label, name)), complete=True)


# -- a plan's view of the table ------------------------------------------------------------
# Engine layout, disaggregated: the series read from the prefill pool (the rest from decode).
PREFILL_SERIES = frozenset({"ttft_ms", "backlog", "ttft_miss"})


def plan_source(plan: "Plan") -> Source:
    return SOURCES[plan.spec.metrics.source]


def series_pool(plan: "Plan", series: SeriesDef) -> Optional[str]:
    """The pool whose pods give a plan-level (throughput) series in an engine layout, None
    for a frontend source. Disaggregated: every request is finished by a decode engine
    (rate, ISL, OSL, ITL, duration: the prefill engines see each request with one output
    token, and llm-d's decode sidecar keeps short prompts to itself); the TTFT the profile
    predicts and the queue before the first token are the prefill engines'. Aggregated:
    the one pool."""
    if plan_source(plan).layout != "engine":
        return None
    if plan.spec.mode == "agg":
        return "worker"
    return "prefill" if series.key in PREFILL_SERIES else "decode"


def pool_extra(plan: "Plan", pool: Optional[str]) -> str:
    """The raw matchers that pick a pool's series: its `selector`, else the source's own
    pool label in a disaggregated plan (SGLang's engine_type), else none."""
    if pool is None:
        return ""
    own = plan.pool(pool).selector
    if own:
        return matchers(own)
    if plan.spec.mode == "disagg":
        return plan_source(plan).pool_matchers.get(pool, "")
    return ""


def worker_pools(plan: "Plan") -> tuple[Optional[str], ...]:
    """The per-worker reads of a plan: one for a frontend source (workers carry their type),
    one per pool for an engine source (pods are told apart by the pool's selector)."""
    return plan.pool_names if plan_source(plan).layout == "engine" else (None,)


def plan_raw_expr(plan: "Plan", series: SeriesDef, window_seconds: int, pool: Optional[str] = None) -> str:
    """`raw_expr` with the plan's selector, the pool's matchers (throughput series: the
    pool of `series_pool`; worker series: the `pool` given) and the range its scrape
    interval needs (`query_range`)."""
    if series.kind == "throughput":
        pool = series_pool(plan, series)
    rng = query_range(window_seconds, plan.spec.metrics.scrape_interval_seconds)
    return raw_expr(
        plan_source(plan), series, plan.spec.metrics.selector, window_seconds, pool_extra(plan, pool), rng, plan.bucket_bound_ms("ttft"),
        dispersion_bin(plan.spec.metrics.scrape_interval_seconds),
    )


def plan_record_name(plan: "Plan", series: SeriesDef, window_seconds: int) -> str:
    """`record_name` at the range the plan's scrape interval needs."""
    rng = query_range(window_seconds, plan.spec.metrics.scrape_interval_seconds)
    return record_name(plan_source(plan), series, window_seconds, rng, dispersion_bin(plan.spec.metrics.scrape_interval_seconds))


def plan_read_query(plan: "Plan", series: SeriesDef, window_seconds: int, pool: Optional[str] = None) -> str:
    """`read_query` for a plan: recorded (per pool for an engine's worker series) or raw."""
    m = plan.spec.metrics
    source = plan_source(plan)
    if series.kind == "throughput":
        pool, rec_pool = series_pool(plan, series), None
    else:
        rec_pool = pool
    return read_query(
        source, series, m.selector, plan.name, window_seconds, m.use_recording_rules, pool_extra(plan, pool), rec_pool,
        query_range(window_seconds, m.scrape_interval_seconds), plan.namespace, plan.bucket_bound_ms("ttft"),
        dispersion_bin(m.scrape_interval_seconds),
    )


def plan_shared_query(plan: "Plan", series: SeriesDef, window_seconds: int, pool: Optional[str] = None) -> Optional[SharedQuery]:
    """The query that reads this series' recorded form for every plan at once, or None when
    the plan reads raw PromQL (`useRecordingRules: false`: its selector is its own)."""
    if not plan.spec.metrics.use_recording_rules:
        return None
    rec_pool = None if series.kind == "throughput" else pool
    match = ((PLAN_LABEL, plan.name), (NAMESPACE_LABEL, plan.namespace)) + (((POOL_LABEL, rec_pool),) if rec_pool is not None else ())
    return SharedQuery(plan_record_name(plan, series, window_seconds), match)


def source_errors(plan: "Plan") -> list[tuple[str, str]]:
    """(field, message) for what the plan's source cannot read as configured."""
    source = plan_source(plan)
    out: list[tuple[str, str]] = []
    present = {n: getattr(plan.spec.pools, n) for n in plan.pool_names}
    pools = {n: p for n, p in present.items() if p is not None}
    if len(pools) < len(present):
        return out  # semantic_errors names the missing pool
    if source.layout != "engine":
        for name, pool in pools.items():
            if pool.selector:
                out.append((f"spec.pools.{name}.selector", f"applies to the engine sources (vllm, sglang); {source.name}'s "
                            "series come from its frontend, which tells workers apart by their worker_type label"))
        return out
    if plan.spec.mode == "disagg":
        for name, pool in pools.items():
            if not pool.selector and name not in source.pool_matchers:
                out.append((f"spec.pools.{name}.selector", f"is required with source {source.name} in mode disagg: "
                            f"{source.name}'s series do not say which pool a pod serves (e.g. {{pod: \"=~llama-{name}-.*\"}})"))
        extras = [pool_extra(plan, name) for name in pools]
        if len(extras) == 2 and extras[0] and extras[0] == extras[1]:
            out.append(("spec.pools.decode.selector", "is the same as spec.pools.prefill.selector: each pod would count in both pools"))
    return out


# -- the exporters' default histogram buckets (upper bounds, `le`), per source ---------------
# Keyed by the `Source` attribute naming each histogram. A bound the plan counts above
# (`spec.rules.ttftBucketMs` / `itlBucketMs`, default the SLA) must be one of them unless the
# deployment configures its own buckets (`source_warnings`). Dynamo: the frontend's
# DYN_METRICS_<NAME> (min, max, count) defaults, spaced by `log_buckets`; vLLM:
# vllm/v1/metrics/loggers.py (token histograms: 1-2-5 steps up to max_model_len, here 8192;
# ITL has the buckets of the TPOT histogram it replaced); SGLang: metrics/collector.py.


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


_VLLM_LATENCY = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
_VLLM_TOKENS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
DEFAULT_BUCKETS: dict[str, dict[str, tuple[float, ...]]] = {
    "dynamo": {
        "ttft_seconds": log_buckets(0.001, 480.0, 18),
        "itl_seconds": log_buckets(0.001, 2.0, 13),
        "request_duration_seconds": log_buckets(1.0, 512.0, 10),
        "input_tokens": log_buckets(50.0, 128000.0, 12),
        "output_tokens": log_buckets(50.0, 32000.0, 10),
    },
    "vllm": {
        "ttft_seconds": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                         20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
        "itl_seconds": (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0),
        "request_duration_seconds": _VLLM_LATENCY,
        "queue_seconds": _VLLM_LATENCY,
        "input_tokens": _VLLM_TOKENS,
        "output_tokens": _VLLM_TOKENS,
    },
    "sglang": {
        "ttft_seconds": (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400),
        "itl_seconds": (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080,
                        0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000),
        "request_duration_seconds": (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600,
                                     1200, 1800, 2400),
        "queue_seconds": (0.0, 0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300),
    },
}


def bounds_either_side(bounds: Sequence[float], seconds: float) -> tuple[Optional[float], Optional[float]]:
    """The bucket bounds nearest below and above `seconds` that a plan can count above (None
    where there is none): positive (Dynamo's first bucket is le=0) and finite (+Inf). For
    `bucket_warnings` (the defaults) and `dynplan doctor` (the exporter's own)."""
    below = [b for b in bounds if 0 < b < seconds]
    above = [b for b in bounds if b > seconds and math.isfinite(b)]
    return (max(below) if below else None), (min(above) if above else None)


def _default_bounds_near(source: Source, attr: str, seconds: float) -> Optional[tuple[Optional[float], Optional[float]]]:
    """None when `seconds` is one of the source's default bucket bounds for histogram `attr`
    (or no defaults are known), else the nearest default bounds below and above it."""
    bounds = DEFAULT_BUCKETS.get(source.name, {}).get(attr)
    if not bounds or any(abs(b - seconds) <= 1e-9 * max(1.0, seconds) for b in bounds):
        return None
    return bounds_either_side(bounds, seconds)


def bucket_warnings(plan: "Plan") -> list[tuple[str, str]]:
    """(field, message) for a bound the plan counts above (the TTFT-miss fraction, the SLO
    alerts' SLIs) that the source's exporter does not have among its default buckets: with
    default buckets those series stay empty (the sizing then runs on the counted dispersion
    alone, the SLI has no value). A deployment with its own buckets can ignore it."""
    tp, rules = plan.spec.scaling.throughput, plan.spec.rules
    source = plan_source(plan)
    uses = {
        "ttft": [what for what, on in (("the fraction of TTFTs over it the attainment sizing calibrates on",
                                        tp.enabled and tp.sizing == "attainment"),
                                       ("the TTFT SLI of the SLO alerts", rules.alerts)) if on],
        "itl": ["the ITL SLI of the SLO alerts"] if rules.alerts else [],
    }
    out: list[tuple[str, str]] = []
    for sli, attr, bucket_field, sla_field in (("ttft", "ttft_seconds", "ttftBucketMs", "ttftMs"),
                                               ("itl", "itl_seconds", "itlBucketMs", "itlMs")):
        if not uses[sli]:
            continue
        bound_ms = plan.bucket_bound_ms(sli)
        near = _default_bounds_near(source, attr, bound_ms / 1000.0)
        if near is None:
            continue
        below, above = near
        shown = " and ".join(f"{b * 1000:g} ms" for b in (below, above) if b is not None)
        given = getattr(rules, f"{sli}_bucket_ms") is not None
        path = f"spec.rules.{bucket_field}" if given else f"spec.sla.{sla_field}"
        fix = (f"set spec.rules.{bucket_field} to one of them (the one below counts every request over the SLA, "
               f"the safe side where it is well above the service time; the one above makes the SLI that bound's; "
               f"docs/plan-spec.md)")
        out.append((path, f"{bound_ms:g} ms is not a bucket bound of {source.name}'s default {sli.upper()} histogram "
                          f"({getattr(source, attr)}; nearest {shown}): with the default buckets "
                          f"{' and '.join(uses[sli])} {'stay' if len(uses[sli]) > 1 else 'stays'} empty; {fix}, or give the "
                          f"exporter a bucket at {bound_ms:g} ms"))
    return out


def unreadable_series(plan: "Plan") -> tuple[str, ...]:
    """Keys of the series the plan's attainment sizing would read that its scrape interval
    leaves without a value (`defined`): the scaler does not read them, and the simulator
    drops them from its windows, so both decide on the same signals."""
    tp, scrape = plan.spec.scaling.throughput, plan.spec.metrics.scrape_interval_seconds
    if not (tp.enabled and tp.sizing == "attainment"):
        return ()
    return tuple(s.key for s in ATTAINMENT_SERIES
                 if defined(s, tp.interval_seconds) and not defined(s, tp.interval_seconds, scrape))


def as_read(plan: "Plan", window: TrafficWindow) -> TrafficWindow:
    """`window` without the series the plan's scrape interval leaves unread
    (`unreadable_series`): what the scaler would have decided on."""
    unread: dict[str, Any] = {key: None for key in unreadable_series(plan)}
    return replace(window, **unread) if unread else window


def source_warnings(plan: "Plan") -> list[tuple[str, str]]:
    """(field, message) for windows read over a longer range than themselves (shorter than
    RANGE_SCRAPES scrapes), burst signals the scrape interval leaves without a value, and
    matchers on a label the source does not use."""
    m = plan.spec.metrics
    scrape = m.scrape_interval_seconds
    out: list[tuple[str, str]] = []
    tp, ld = plan.spec.scaling.throughput, plan.spec.scaling.load
    windows = [("spec.scaling.throughput.intervalSeconds", tp.interval_seconds, tp.enabled),
               ("spec.scaling.load.intervalSeconds", ld.interval_seconds, ld.enabled)]
    for path, seconds, enabled in windows:
        rng = query_range(seconds, scrape)
        if enabled and rng > seconds:
            out.append((path, f"{seconds}s is shorter than {RANGE_SCRAPES} scrapes ({rng}s at spec.metrics.scrapeIntervalSeconds "
                        f"{scrape}): its rates and averages are read over the last {rng}s (decisions still every {seconds}s, "
                        f"each smoothed over {rng}s and lagging a change by up to {rng}s); set spec.metrics.scrapeIntervalSeconds "
                        f"to the real scrape interval"))
    lost = unreadable_series(plan)
    if lost:
        out.append(("spec.metrics.scrapeIntervalSeconds", f"{scrape}s scrapes leave {', '.join(lost)} without a value (the "
                    f"peak rate's {PEAK_WINDOW}-s sub-windows need {MIN_SCRAPES} scrapes each, the dispersion two bins of "
                    f"{MIN_SCRAPES} scrapes within the {tp.interval_seconds}s interval): not read, the attainment sizing keeps "
                    f"what it learned, and holds far fewer requests within the SLA on bursty traffic (README, attainment "
                    f"benchmark); scrape the {'frontends' if plan_source(plan).layout != 'engine' else 'engines'} every "
                    f"{PEAK_WINDOW // MIN_SCRAPES}s or less"))
    source = plan_source(plan)
    out += bucket_warnings(plan)
    for label in m.selector:
        if label in ("model", "model_name") and label != source.model_label:
            out.append((f"spec.metrics.selector.{label}", f"{source.name} puts the model in label {source.model_label!r}, "
                        f"not {label!r}: this matcher finds nothing"))
    return out


# Known renames across engine versions: metric -> (its other name, what to tell the user).
RENAMES: dict[str, tuple[str, str]] = {
    "vllm:kv_cache_usage_perc": ("vllm:gpu_cache_usage_perc", "vLLM before 0.9 names it gpu_cache_usage_perc (read per pod as a fallback)"),
    "vllm:gpu_cache_usage_perc": ("vllm:kv_cache_usage_perc", "vLLM 0.13 removed gpu_cache_usage_perc; kv_cache_usage_perc is read first"),
    "vllm:inter_token_latency_seconds": ("vllm:time_per_output_token_seconds",
                                         "vLLM before 0.11 exports only time_per_output_token_seconds: upgrade to 0.11 or later"),
    "dynamo_frontend_stage_requests": ("dynamo_frontend_queued_requests", "Dynamo before 0.6 has only the queued-requests gauge (read as a fallback)"),
}


def series_inputs(plan: "Plan", series: SeriesDef, pool: Optional[str] = None) -> tuple[tuple[str, str], ...]:
    """The source metrics a series is computed from, as (metric, selector) alternatives (any
    one with series is enough): what `dynplan doctor` looks for when a series reads
    nothing. Throughput series use their `series_pool`."""
    source = plan_source(plan)
    if series.kind == "throughput":
        pool = series_pool(plan, series)
    labels, extra = plan.spec.metrics.selector, pool_extra(plan, pool)
    sel = selector(labels, extra)
    if series.op in ("increase", "peak_rate", "dispersion"):
        return tuple((m, sel) for m in (source.requests_started, source.requests_total) if m)
    if series.op == "gauge_sum":
        refs: tuple[GaugeRef, ...] = getattr(source, series.metric)
        return tuple(
            (g.metric, selector({k: v for k, v in labels.items() if k not in g.without}, _join(g.matchers, extra))) for g in refs
        )
    if series.op == "over_bound":
        return ((f"{getattr(source, series.metric)}_bucket", sel),)
    if series.op == "mean":
        num, den = source.ratios.get(series.metric, (f"{getattr(source, series.metric)}_sum", f"{getattr(source, series.metric)}_count"))
        return ((den, sel),)
    if source.layout != "engine":
        return ((getattr(source, series.metric), sel),)
    attr = {"last_ttft_ms": "ttft_seconds", "last_itl_ms": "itl_seconds", "last_isl": "input_tokens"}.get(series.key)
    if attr is not None:
        num, den = source.ratios.get(attr, (f"{getattr(source, attr)}_sum", f"{getattr(source, attr)}_count"))
        return ((den, sel),)
    if series.key == "active_decode_blocks":
        return tuple((m, sel) for m in (source.worker_active_decode_blocks,) + source.kv_fallbacks)
    return ((source.worker_active_prefill_tokens, sel),)


# -- `dynplan profile learn`: per-pod values per step --------------------------------------
# key -> the scale to the fit's unit; every expression gives one value per pod per step.
LEARN_SCALE: dict[str, float] = {
    "ttft_ms": 1000.0, "isl": 1.0, "waiting": 1.0, "itl_ms": 1000.0, "osl": 1.0, "kv_usage": 1.0, "running": 1.0,
    # frontend layout (Dynamo): per worker, and the plan's ISL/OSL means per step (no worker label)
    "isl_max": 1.0, "prefill_tokens_max": 1.0, "kv_blocks": 1.0, "plan_isl": 1.0, "plan_osl": 1.0,
}
# below this KV usage, SGLang's used tokens / usage is too coarse to give the cache size
LEARN_MIN_USAGE_FOR_CAPACITY = 0.05


def learn_exprs(plan: "Plan", pool: str, step_seconds: int) -> dict[str, str]:
    """The PromQL `dynplan profile learn` reads over a range at `step_seconds` for one pool
    (a frontend source: `_learn_frontend_exprs`). An engine source: per pod, the means of the requests finished in each step (TTFT, ITL
    in seconds; ISL, OSL) and the gauges over it (most requests waiting, mean running, mean
    KV usage 0-1), plus "kv_capacity" (tokens per pod: see `Source.kv_capacity_info`).

    Gauges are read over the step minus one millisecond: the scrape at the step's left end
    belongs to the step before (Prometheus 2 includes a range's left end, 3 does not)."""
    source = plan_source(plan)
    R = query_range(step_seconds, plan.spec.metrics.scrape_interval_seconds)
    w, g = window(R), f"{R * 1000 - 1}ms"
    if source.layout == "frontend":
        return _learn_frontend_exprs(plan, source, pool, w, g)
    if source.worker_running_requests is None or not source.kv_usage_fraction:
        raise ValueError(f"source {source.name} has no per-pod series for learning a profile")
    extra = pool_extra(plan, pool)
    sel = selector(plan.spec.metrics.selector, extra)
    by = f"by ({POD_LABEL}) "

    def gauge(op: str, metric: str, agg: str = "sum") -> str:
        return f"{agg} {by}({_collapse(source.rank_labels, f'{op}({series_selector(metric, sel)}[{g}])')})"

    out = {
        "ttft_ms": _mean(source, "ttft_seconds", sel, w, by),
        "isl": _mean(source, "input_tokens", sel, w, by),
        "waiting": gauge("max_over_time", source.worker_active_prefill_tokens),
        "itl_ms": _mean(source, "itl_seconds", sel, w, by),
        "osl": _mean(source, "output_tokens", sel, w, by),
        "kv_usage": " or ".join(gauge("avg_over_time", m, "avg") for m in source.kv_usage_fraction),
        "running": gauge("avg_over_time", source.worker_running_requests),
    }
    if source.kv_capacity_info is not None:
        own = selector({k: v for k, v in plan.spec.metrics.selector.items() if k != source.model_label}, extra)
        out["kv_capacity"] = f"last_over_time({series_selector(source.kv_capacity_info, own)}[{g}])"
    else:
        used = _collapse(source.rank_labels, series_selector(source.worker_active_decode_blocks, sel))
        usage = _collapse(source.rank_labels, series_selector(source.kv_usage_fraction[0], sel))
        out["kv_capacity"] = f"max {by}({used} / ({usage} > {LEARN_MIN_USAGE_FOR_CAPACITY}))"
    return out


def _learn_frontend_exprs(plan: "Plan", source: Source, pool: str, w: str, g: str) -> dict[str, str]:
    """`learn_exprs` for a frontend source (Dynamo): the router's per-worker gauges of the
    pool's worker type averaged over the step (the last request's TTFT, ISL and ITL, the
    active decode KV blocks), their maxima (prompt tokens queued or in prefill against the
    last ISL: more than one prompt is a queue), and the plan's ISL and OSL means per step
    (the frontend has no per-worker lengths: the decode context is the plan's)."""
    labels = plan.spec.metrics.selector
    sel = selector(labels)
    wsel = selector(labels, f'{source.worker_type_label}="{escape_label_value(source.worker_types[pool])}"')
    by = f"by ({source.worker_id_label}) "

    def gauge(op: str, metric: str, agg: str = "avg") -> str:
        return f"{agg} {by}({op}({metric}{wsel}[{g}]))"

    return {
        "ttft_ms": gauge("avg_over_time", source.worker_last_ttft_seconds),
        "isl": gauge("avg_over_time", source.worker_last_isl),
        "isl_max": gauge("max_over_time", source.worker_last_isl, "max"),
        "prefill_tokens_max": gauge("max_over_time", source.worker_active_prefill_tokens, "max"),
        "itl_ms": gauge("avg_over_time", source.worker_last_itl_seconds),
        "kv_blocks": gauge("avg_over_time", source.worker_active_decode_blocks),
        "plan_isl": _mean(source, "input_tokens", sel, w),
        "plan_osl": _mean(source, "output_tokens", sel, w),
    }


def learn_capacity(source: Source, labels: Mapping[str, str], value: float) -> Optional[float]:
    """The KV cache size (tokens) one "kv_capacity" sample of `learn_exprs` gives, or None."""
    if source.kv_capacity_info is None:
        return value
    try:
        product = 1.0
        for name in source.kv_capacity_labels:
            product *= float(labels[name])
    except (KeyError, ValueError):
        return None
    return product


def bound_bucket(plan: "Plan", series: SeriesDef, pool: Optional[str] = None) -> tuple[str, str, str]:
    """An `over_bound` series' histogram buckets, for `dynplan doctor`: (the `_bucket`
    metric, the plan's selector for it, that selector with the `le` matcher at the plan's
    `bucket_bound_ms("ttft")`, as `over_bound_expr` reads it). When the last matches
    nothing the series has no value at any time. Throughput series use their `series_pool`."""
    if series.op != "over_bound":
        raise ValueError(f"series {series.key} counts no histogram bucket")
    if series.kind == "throughput":
        pool = series_pool(plan, series)
    labels, extra = plan.spec.metrics.selector, pool_extra(plan, pool)
    metric = f"{getattr(plan_source(plan), series.metric)}_bucket"
    return metric, selector(labels, extra), selector(labels, _join(extra, le_matcher(plan.bucket_bound_ms("ttft"))))
