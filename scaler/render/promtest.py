"""A `promtool test rules` file for each rendered rule set.

Input series are shaped like the source's frontend metrics (histogram `_sum`/`_count`,
counters, per-worker gauges, with the plan's selector labels plus the usual scrape labels)
and come from a synthetic scenario: per-step request arrivals, completions and per-request
values. The expected values are computed here from those per-step events (sums of events
inside each window), not from the counters promtool reads, so a wrong window, selector,
label or operator in a rule makes the test fail.

Exactness: windows are whole multiples of the input interval and start at a sample, so
`increase()` needs no extrapolation; per-request values are dyadic fractions, so every sum
is exact in float64 and Python's division gives Prometheus's bit-identical result
(promtool 2.42 compares values exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from .. import naming, sources
from ..core.plan import Plan
from .rules import RuleGroup, load_window, source_for, throughput_window

FRONTENDS = 2
# Per-request values by (frontend, phase). Dyadic fractions keep every sum exact.
_PER_REQUEST: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    # series key: ((phase 0: frontend 0, frontend 1), (phase 1: frontend 0, frontend 1))
    "isl": ((1024.0, 1536.0), (3072.0, 2048.0)),
    "osl": ((128.0, 192.0), (256.0, 64.0)),
    "ttft_ms": ((0.125, 0.25), (0.375, 0.0625)),
    "itl_ms": ((0.015625, 0.0234375), (0.03125, 0.0078125)),
    "request_duration_s": ((2.5, 3.75), (6.25, 1.5)),
}
# Per-worker gauge levels: value = base * (worker index + 1) + frontend * spread + step * wobble.
_WORKER_GAUGE: dict[str, tuple[float, float, float]] = {
    "active_prefill_tokens": (1024.0, 256.0, 512.0),
    "active_decode_blocks": (64.0, 8.0, 16.0),
    "last_ttft_ms": (0.0625, 0.015625, 0.03125),
    "last_isl": (2048.0, 128.0, 1024.0),
    "last_itl_ms": (0.0078125, 0.001953125, 0.00390625),
}
_SCRAPE_JOB = "dynamo-frontend"
_DEFAULT_MODEL = "llama"


@dataclass(frozen=True)
class InputSeries:
    series: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class Sample:
    labels: str
    value: float


@dataclass(frozen=True)
class Expectation:
    expr: str
    eval_time: int
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class RuleTestCase:
    name: str
    interval: int
    inputs: tuple[InputSeries, ...]
    expectations: tuple[Expectation, ...]


@dataclass(frozen=True)
class RuleTest:
    rule_file: str
    evaluation_interval: int
    cases: tuple[RuleTestCase, ...]


def _series(metric: str, labels: Mapping[str, str]) -> str:
    return metric + sources.selector(labels)


def _frontend_labels(plan: Plan, frontend: int) -> dict[str, str]:
    source = source_for(plan)
    labels = {
        source.model_label: _DEFAULT_MODEL,
        "job": _SCRAPE_JOB,
        "namespace": plan.namespace,
        "pod": f"frontend-{frontend}",
        "instance": f"10.0.0.{frontend + 1}:8000",
    }
    labels.update(plan.spec.metrics.selector)
    return labels


def _decoy_labels(plan: Plan) -> list[dict[str, str]]:
    """Frontends the selector must exclude: one per selector label, each differing from the
    matching frontends in that label only (so dropping any one matcher changes the result)."""
    selector = plan.spec.metrics.selector
    decoys = []
    for i, key in enumerate(sorted(selector)):
        labels = _frontend_labels(plan, FRONTENDS + i)
        labels[key] = selector[key] + "-other"
        decoys.append(labels)
    return decoys


def _cumulative(increments: Sequence[float]) -> tuple[float, ...]:
    out, total = [0.0], 0.0
    for inc in increments:
        total += inc
        out.append(total)
    return tuple(out)


def _expected(labels: Mapping[str, str], record: str, value: float) -> Sample:
    return Sample(record + sources.selector(labels), value)


def throughput_case(plan: Plan, group: RuleGroup) -> RuleTestCase:
    """Three windows: traffic, different traffic, idle (arrivals stop; last completions drain)."""
    source = source_for(plan)
    window = throughput_window(plan)
    step = math.gcd(window, 15)
    per_window = window // step
    steps = 3 * per_window

    def phase(j: int) -> int:
        return (j - 1) // per_window

    def arrivals(f: int, j: int) -> int:
        return 0 if j < 1 or phase(j) >= 2 else 1 + (j + 2 * f) % 3

    def completions(f: int, j: int) -> int:
        return arrivals(f, j - 1)  # each request completes one step after it arrived

    def value(key: str, f: int, j: int) -> float:
        return _PER_REQUEST[key][min(phase(j), 1)][f]

    inputs: list[InputSeries] = []
    frontends = [_frontend_labels(plan, f) for f in range(FRONTENDS)]
    for f, labels in enumerate(frontends):
        if source.requests_started:
            inputs.append(InputSeries(_series(source.requests_started, labels), _cumulative([arrivals(f, j) for j in range(1, steps + 1)])))
        inputs.append(InputSeries(_series(source.requests_total, labels), _cumulative([completions(f, j) for j in range(1, steps + 1)])))
        for key, per_request in _PER_REQUEST.items():
            base = getattr(source, sources.SERIES_BY_KEY[key].metric)
            counts = [completions(f, j) for j in range(1, steps + 1)]
            sums = [completions(f, j) * value(key, f, j) for j in range(1, steps + 1)]
            inputs.append(InputSeries(_series(base + "_count", labels), _cumulative(counts)))
            inputs.append(InputSeries(_series(base + "_sum", labels), _cumulative(sums)))
    for decoy in _decoy_labels(plan):
        for name in [source.requests_started, source.requests_total] if source.requests_started else [source.requests_total]:
            inputs.append(InputSeries(_series(name, decoy), _cumulative([97.0] * steps)))
        for key in _PER_REQUEST:
            base = getattr(source, sources.SERIES_BY_KEY[key].metric)
            inputs.append(InputSeries(_series(base + "_count", decoy), _cumulative([97.0] * steps)))
            inputs.append(InputSeries(_series(base + "_sum", decoy), _cumulative([99991.0] * steps)))

    rule_by_key = {r.series_key: r for r in group.rules}
    plan_label = {sources.PLAN_LABEL: plan.name}
    expectations: list[Expectation] = []
    for p in (1, 2, 3):
        in_window = range((p - 1) * per_window + 1, p * per_window + 1)
        t = p * window
        count_fn = arrivals if source.requests_started else completions
        requests = float(sum(count_fn(f, j) for f in range(FRONTENDS) for j in in_window))
        rec = rule_by_key["requests"].record
        expectations.append(Expectation(rec, t, (_expected(plan_label, rec, requests),)))
        n = sum(completions(f, j) for f in range(FRONTENDS) for j in in_window)
        if n == 0:
            continue  # 0/0: the mean is NaN on an idle window, which the scaler treats as idle
        for key in _PER_REQUEST:
            total = sum(completions(f, j) * value(key, f, j) for f in range(FRONTENDS) for j in in_window)
            rec = rule_by_key[key].record
            expectations.append(Expectation(rec, t, (_expected(plan_label, rec, total / n),)))
    return RuleTestCase(f"{group.name}: synthetic frontend traffic", step, tuple(inputs), tuple(expectations))


def worker_case(plan: Plan, group: RuleGroup) -> RuleTestCase:
    """Two workers per pool, each reported by two frontends; every gauge grows each step."""
    source = source_for(plan)
    window = load_window(plan)
    steps = 4
    workers = [
        (f"{pool}-{i}", source.worker_types[pool], i) for pool in plan.pool_names for i in range(2)
    ]

    def gauge(key: str, w: int, f: int, j: int) -> float:
        base, spread, wobble = _WORKER_GAUGE[key]
        return base * (w + 1) + f * spread + j * wobble

    inputs: list[InputSeries] = []
    for f in range(FRONTENDS):
        front = _frontend_labels(plan, f)
        for worker_id, worker_type, w in workers:
            labels = dict(front, **{source.worker_id_label: worker_id, source.worker_type_label: worker_type})
            for key in _WORKER_GAUGE:
                metric = getattr(source, sources.SERIES_BY_KEY[key].metric)
                inputs.append(InputSeries(_series(metric, labels), tuple(gauge(key, w, f, j) for j in range(steps + 1))))
    for decoy in _decoy_labels(plan):
        worker_id, worker_type, _ = workers[0]
        labels = dict(decoy, **{source.worker_id_label: worker_id, source.worker_type_label: worker_type})
        for key in _WORKER_GAUGE:
            metric = getattr(source, sources.SERIES_BY_KEY[key].metric)
            inputs.append(InputSeries(_series(metric, labels), tuple(99991.0 for _ in range(steps + 1))))

    expectations: list[Expectation] = []
    for rule in group.rules:
        for j in (1, 2, 4):
            samples = []
            for worker_id, worker_type, w in workers:
                # The window [t - L, t] holds the samples of steps j-1 and j for each frontend.
                per_frontend = [(gauge(rule.series_key, w, f, j - 1) + gauge(rule.series_key, w, f, j)) / 2 for f in range(FRONTENDS)]
                labels = {sources.PLAN_LABEL: plan.name, source.worker_id_label: worker_id, source.worker_type_label: worker_type}
                samples.append(_expected(labels, rule.record, sum(per_frontend) / FRONTENDS))
            expectations.append(Expectation(rule.record, j * window, tuple(sorted(samples, key=lambda s: s.labels))))
    return RuleTestCase(f"{group.name}: synthetic per-worker gauges", window, tuple(inputs), tuple(expectations))


def rule_test(plan: Plan, groups: tuple[RuleGroup, ...], rule_file: str) -> RuleTest:
    """The promtool test for a plan's rule file (`rule_file` is relative to the test file)."""
    cases = []
    for group in groups:
        cases.append(throughput_case(plan, group) if group.kind == naming.THROUGHPUT_GROUP else worker_case(plan, group))
    evaluation = 0
    for case in cases:
        evaluation = math.gcd(evaluation, case.interval)
    return RuleTest(rule_file=rule_file, evaluation_interval=evaluation, cases=tuple(cases))
