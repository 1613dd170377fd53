"""Metric names, labels and PromQL per metrics source: the one table.

Every series the scaler reads is defined once here, as a PromQL expression over a
source's metrics. The generator renders the same expression as a recording rule (with a
`dynplan_plan` label); the scaler reads the recorded series when it exists and otherwise
evaluates the raw expression itself, so both paths give the same numbers.

Adding a source (vLLM, SGLang) means adding a `Source` entry, not code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

PLAN_LABEL = "dynplan_plan"


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
    ),
}


@dataclass(frozen=True)
class SeriesDef:
    """One series the scaler reads.

    `key`: the scaler's name for it; `kind`: "throughput" (one value per plan over the
    throughput interval) or "worker" (one value per worker over the load interval);
    `scale`: multiply the Prometheus value by this to get the scaler's unit.
    """

    key: str
    kind: str
    metric: str      # the Source attribute that names the metric
    op: str          # recording-rule operation: increase | mean | avg_over_time
    scale: float = 1.0
    unit: str = ""


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
)
SERIES_BY_KEY: dict[str, SeriesDef] = {s.key: s for s in SERIES}


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


def raw_expr(source: Source, series: SeriesDef, labels: Mapping[str, str], window_seconds: int) -> str:
    """The PromQL that computes a series from the source metrics (rule `expr` and fallback).

    Means are sum(increase(_sum)) / sum(increase(_count)) across all matching series,
    never an average of per-series averages. Request counts prefer arrivals
    (`requests_started`) and fall back to completions where a source lacks them; `sum`
    over existing counters gives 0, not an empty result, on an idle window.
    """
    sel = selector(labels)
    w = window(window_seconds)
    if series.kind == "throughput":
        if series.op == "increase":
            total = f"sum(increase({source.requests_total}{sel}[{w}]))"
            if source.requests_started:
                return f"sum(increase({source.requests_started}{sel}[{w}])) or {total}"
            return total
        base = getattr(source, series.metric)
        return f"sum(increase({base}_sum{sel}[{w}])) / sum(increase({base}_count{sel}[{w}]))"
    metric = getattr(source, series.metric)
    by = f"{source.worker_id_label}, {source.worker_type_label}"
    return f"avg by ({by}) (avg_over_time({metric}{sel}[{w}]))"


def record_name(source: Source, series: SeriesDef, window_seconds: int) -> str:
    """Recording-rule name, `level:metric:operations` (Prometheus naming practice)."""
    w = window(window_seconds)
    if series.kind == "throughput":
        if series.op == "increase":
            metric = _strip_total(source.requests_started or source.requests_total)
            return f"{PLAN_LABEL}:{metric}:increase{w}"
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
