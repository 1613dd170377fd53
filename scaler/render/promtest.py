"""A `promtool test rules` file for each rendered rule set.

Input series are shaped like the source's frontend metrics (histogram `_sum`/`_count`,
counters, per-worker gauges, with the plan's selector labels plus the usual scrape labels)
and come from a synthetic scenario: per-step request arrivals, completions and per-request
values. The expected values are computed here from those per-step events (sums of events
inside each window), not from the counters promtool reads, so a wrong window, selector,
label or operator in a rule makes the test fail.

Plans sized by attainment also get the burst signals and the backlog: the peak one-minute
rate and the index of dispersion of 30-s counts are computed from the per-step arrivals
(sums over sub-windows and bins, the simulator's definitions on promtool's 30-s grid), the
backlog from the per-step levels of the frontends' stage gauges, which go stale in the last
window so that the older queued-requests gauge is read there.

Exactness: windows are whole multiples of the input interval and start at a sample, so
`increase()` needs no extrapolation; per-request values are dyadic fractions, so every sum
is exact in float64 and Python's division gives Prometheus's bit-identical result
(promtool 2.42 compares values exactly). Ratios of whole counts (peak rate, dispersion) are
computed with the same float operations in the same order as the rule's PromQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from scaler import naming, sources
from scaler.core.plan import Plan
from scaler.render.rules import RuleGroup, load_window, source_for, throughput_window

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
# Backlog gauges: the waiting stages of the newest gauge (with their phase label), a stage
# after the first token that must not count, and the levels (which wobble with the step).
_WAITING_STAGES = (("preprocess", ""), ("route", "prefill"), ("dispatch", "prefill"))
_LATER_STAGE = ("postprocess", "decode")


@dataclass(frozen=True)
class InputSeries:
    series: str
    values: tuple[Optional[float], ...]  # None: a staleness marker (the series ends)


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
    """Three windows: traffic, different (bursty) traffic, idle (arrivals stop; last
    completions drain)."""
    source = source_for(plan)
    window = throughput_window(plan)
    step = math.gcd(window, 15)
    per_window = window // step
    steps = 3 * per_window

    def phase(j: int) -> int:
        return (j - 1) // per_window

    def arrivals(f: int, j: int) -> int:
        if j < 1 or phase(j) >= 2:
            return 0
        # a burst on one frontend early in the second window: its peak is above its mean
        burst = 6 if (f, j) == (0, per_window + 2) else 0
        return 1 + (j + 2 * f) % 3 + burst

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
    count_fn = arrivals if source.requests_started else completions
    if "backlog" in rule_by_key:
        backlog_inputs, backlog_at = _backlog_inputs(plan, source, steps, per_window)
        inputs.extend(backlog_inputs)

    def counted(a: int, b: int) -> int:
        """Requests counted in (a, b] seconds (the steps whose sample falls in it)."""
        return sum(count_fn(f, j) for f in range(FRONTENDS) for j in range(max(a // step + 1, 1), b // step + 1))

    expectations: list[Expectation] = []
    for p in (1, 2, 3):
        in_window = range((p - 1) * per_window + 1, p * per_window + 1)
        t = p * window
        requests = float(sum(count_fn(f, j) for f in range(FRONTENDS) for j in in_window))
        rec = rule_by_key["requests"].record
        expectations.append(Expectation(rec, t, (_expected(plan_label, rec, requests),)))
        extra: dict[str, Callable[[], Optional[float]]] = {
            "peak_rate": lambda: _peak_rate(counted, t, window),
            "arrival_dispersion": lambda: _dispersion(counted, t, window),
            "backlog": lambda: backlog_at(p * per_window),
        }
        for key, compute in extra.items():
            rule = rule_by_key.get(key)
            got = compute() if rule is not None else None
            if rule is not None and got is not None:  # None: NaN on an idle window
                expectations.append(Expectation(rule.record, t, (_expected(plan_label, rule.record, got),)))
        n = sum(completions(f, j) for f in range(FRONTENDS) for j in in_window)
        if n == 0:
            continue  # 0/0: the mean is NaN on an idle window, which the scaler treats as idle
        for key in _PER_REQUEST:
            total = sum(completions(f, j) * value(key, f, j) for f in range(FRONTENDS) for j in in_window)
            rec = rule_by_key[key].record
            expectations.append(Expectation(rec, t, (_expected(plan_label, rec, total / n),)))
    return RuleTestCase(f"{group.name}: synthetic frontend traffic", step, tuple(inputs), tuple(expectations))


def _grid(t: int, back: int) -> list[int]:
    """Multiples of 30 s in [t - back, t], oldest first: the points of a subquery at 30-s
    resolution over `back` seconds evaluated at t (promtool's clock starts at 0)."""
    first = -(-(t - back) // sources.PEAK_STEP) * sources.PEAK_STEP
    return list(range(max(first, 0), t + 1, sources.PEAK_STEP))


def _peak_rate(counted: Callable[[int, int], int], t: int, window: int) -> float:
    """The simulator's peak rate from per-step counts: the largest count over the one-minute
    sub-windows ending on the 30-s grid inside (t - window, t], over 60; a window of at most
    one minute is its own sub-window; below 90 s the minute ending at t."""
    minute = sources.PEAK_WINDOW
    if window <= minute:
        return counted(t - window, t) / window
    if window < minute + sources.PEAK_STEP:
        return counted(t - minute, t) / minute
    return max(counted(e - minute, e) / minute for e in _grid(t, window - minute))


def _dispersion(counted: Callable[[int, int], int], t: int, window: int) -> Optional[float]:
    """Allan's index of dispersion of the 30-s counts in the window; None when it is NaN."""
    step = sources.PEAK_STEP
    bins = window // step

    def c(e: int) -> int:
        return counted(e - step, e)

    if bins == 2:
        now, before = c(t), c(t - step)
        return None if now + before == 0 else (now - before) ** 2 / (now + before)
    diffs = [float((c(e) - c(e - step)) ** 2) for e in _grid(t, (bins - 2) * step)]
    counts = [float(c(e)) for e in _grid(t, (bins - 1) * step)]
    if sum(counts) == 0:
        return None
    return (sum(diffs) / len(diffs)) / (2 * sum(counts) / len(counts))


def _backlog_inputs(
    plan: Plan, source: sources.Source, steps: int, per_window: int
) -> tuple[list[InputSeries], Callable[[int], Optional[float]]]:
    """Backlog gauges of the two frontends and the decoys; and the expected backlog at a
    sample index. The first gauge (per waiting stage) ends with a staleness marker after two
    windows, so the last window reads the second; a later stage and the decoys never count."""
    first, *rest = source.backlog
    fallback = rest[0] if rest else None
    inputs: list[InputSeries] = []
    stale_after = 2 * per_window

    def level(f: int, k: int, i: int) -> float:
        return float((f + 1) * (k + 1) + i % 5)

    def queued(f: int, i: int) -> float:
        return float(500 + 10 * f + i % 2)

    def gauge_labels(labels: Mapping[str, str], gauge: sources.GaugeRef) -> dict[str, str]:
        return {k: v for k, v in labels.items() if k not in gauge.without}

    stage_label = "stage"
    for f in range(FRONTENDS):
        labels = gauge_labels(_frontend_labels(plan, f), first)
        for k, (stage, phase) in enumerate(_WAITING_STAGES):
            values: list[Optional[float]] = [level(f, k, i) for i in range(stale_after + 1)]
            inputs.append(InputSeries(_series(first.metric, dict(labels, **{stage_label: stage}, **({"phase": phase} if phase else {}))), tuple(values + [None])))
        later, phase = _LATER_STAGE
        inputs.append(InputSeries(_series(first.metric, dict(labels, stage=later, phase=phase)), tuple(1000.0 for _ in range(steps + 1))))
        if fallback is not None:
            inputs.append(InputSeries(_series(fallback.metric, gauge_labels(_frontend_labels(plan, f), fallback)), tuple(queued(f, i) for i in range(steps + 1))))
    for key, decoy in zip(sorted(plan.spec.metrics.selector), _decoy_labels(plan)):
        if key not in first.without:
            stage, phase = _WAITING_STAGES[-1]
            inputs.append(InputSeries(_series(first.metric, dict(gauge_labels(decoy, first), stage=stage, phase=phase)), tuple(7777.0 for _ in range(steps + 1))))
        if fallback is not None and key not in fallback.without:
            inputs.append(InputSeries(_series(fallback.metric, gauge_labels(decoy, fallback)), tuple(8888.0 for _ in range(steps + 1))))

    def at(i: int) -> Optional[float]:
        if i <= stale_after:
            return sum(level(f, k, i) for f in range(FRONTENDS) for k in range(len(_WAITING_STAGES)))
        return None if fallback is None else sum(queued(f, i) for f in range(FRONTENDS))

    return inputs, at


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
