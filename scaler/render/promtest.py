"""A `promtool test rules` file for each rendered rule set.

Input series are shaped like the source's frontend metrics (histogram `_sum`/`_count`, the
TTFT's `_bucket`, counters, per-worker gauges, with the plan's selector labels plus the
usual scrape labels) and come from a synthetic scenario: per-step request arrivals,
completions and per-request values. The expected values are computed here from those
per-step events (sums of events inside each window), not from the counters promtool reads,
so a wrong window, selector, label or operator in a rule makes the test fail.

Plans sized by attainment also get the burst signals and the backlog: the peak one-minute
rate and the index of dispersion of 30-s counts are computed from the per-step arrivals
(sums over sub-windows and bins, the simulator's definitions on promtool's 30-s grid), the
backlog from the per-step levels of the frontends' stage gauges, which go stale in the last
window so that the older queued-requests gauge is read there. Their `ttft_miss` (the fraction
of TTFTs over the SLA bucket) reads TTFT `_bucket` series at half the bound, the bound, twice
the bound and +Inf, from per-step misses that differ by frontend (pool) and phase; a
whole-second bound is written `1` by one frontend and `1.0` by the other (Go's and Python's
clients; engines write `1.0`), and the decoys' buckets hold only good TTFTs.

Engine sources (vLLM, SGLang; `engine_throughput_case`, `engine_worker_case`): two pods per
pool carry the plan's selector and a value each pool matcher selects (sampled from its
regular expression for the usual forms), with values of their own per pool, plus decoy
pods that differ in one matched label; gauges repeat per rank where the source's ranks
repeat them, one pod per pool exports the older KV gauge, and the gateway's queue goes
stale after two windows. A pool regex no sample matches gives a case without expectations
(its name says so).

Blocks are each rule's range (`sources.query_range`: the window, or four scrape intervals
when longer), so a plan whose windows are read over a longer range is tested over that
range, and its request count scaled back to the window as the rule does.

Exactness: windows are whole multiples of the input interval and start at a sample, so
`increase()` needs no extrapolation; per-request values are dyadic fractions, so every sum
is exact in float64 and Python's division gives Prometheus's bit-identical result
(promtool 2.42 compares values exactly). Ratios of whole counts (peak rate, dispersion,
`1 - good / all` of `ttft_miss`) are computed with the same float operations in the same
order as the rule's PromQL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from scaler import naming, sources
from scaler.core.plan import Plan
from scaler.render import rules
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
    text: str = ""  # promtool's expanding notation instead of `values` (long, even series)


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
class FiringAlert:
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AlertExpectation:
    eval_time: int
    alertname: str
    alerts: tuple[FiringAlert, ...]  # empty: the alert must be silent


@dataclass(frozen=True)
class RuleTestCase:
    name: str
    interval: int
    inputs: tuple[InputSeries, ...]
    expectations: tuple[Expectation, ...]
    alerts: tuple[AlertExpectation, ...] = ()


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


# TTFTs over the `ttft_miss` bound: quarters of a step's completions (rounded up) by
# (phase 0: frontend 0, frontend 1), (phase 1: ...), so the fraction differs by window.
_TTFT_MISS_QUARTERS = ((1, 2), (3, 0))


def _ttft_misses(completions: int, quarters: int) -> int:
    return -(-completions * quarters // 4)


def _le_text(seconds: float, python: bool) -> str:
    """A bucket bound as exporters write it: Go's and Rust's clients `1`, Python's `1.0`."""
    return str(int(seconds)) if seconds == int(seconds) and not python else repr(seconds)


def _ttft_bucket_inputs(
    base: str, labels: Mapping[str, str], bound_ms: float, counts: Sequence[int], misses: Sequence[int], python: bool
) -> list[InputSeries]:
    """A TTFT histogram's buckets for per-step completions and misses: at half the bound,
    at the bound (the good ones), at twice the bound (half the misses fall below it) and
    +Inf, so a matcher that picks any other bucket than the bound's reads other counts."""
    seconds = bound_ms / 1000
    good = [c - m for c, m in zip(counts, misses)]
    buckets = {
        _le_text(seconds / 2, python): [g // 2 for g in good],
        _le_text(seconds, python): good,
        _le_text(seconds * 2, python): [g + m // 2 for g, m in zip(good, misses)],
        "+Inf": list(counts),
    }
    return [InputSeries(_series(base + "_bucket", dict(labels, le=le)), _cumulative([float(v) for v in values]))
            for le, values in buckets.items()]


def _ttft_bound_ms(plan: Plan) -> float:
    """The bucket `ttft_miss` counts above, restated: `spec.rules.ttftBucketMs`, else the SLA."""
    bucket = plan.spec.rules.ttft_bucket_ms
    return float(bucket if bucket is not None else plan.spec.sla.ttft_ms)


def _ttft_miss_fraction(good: int, observed: int) -> Optional[float]:
    """The rule's `1 - good / all`, in its float operations; None (NaN) with no observation."""
    return None if observed == 0 else 1 - float(good) / float(observed)


def throughput_case(plan: Plan, group: RuleGroup) -> RuleTestCase:
    """Three windows: traffic, different (bursty) traffic, idle (arrivals stop; last
    completions drain)."""
    source = source_for(plan)
    W, window = _windows(plan, "throughput")
    step = math.gcd(math.gcd(window, W), 15)
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

    def misses(f: int, j: int) -> int:
        return _ttft_misses(completions(f, j), _TTFT_MISS_QUARTERS[min(phase(j), 1)][f])

    rule_by_key = {r.series_key: r for r in group.rules}
    miss_rule = rule_by_key.get("ttft_miss")
    bound_ms = _ttft_bound_ms(plan)
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
        if miss_rule is not None:
            # one frontend writes whole-second bounds as Go does (`1`), the other as Python (`1.0`)
            inputs.extend(_ttft_bucket_inputs(source.ttft_seconds, labels, bound_ms, [completions(f, j) for j in range(1, steps + 1)],
                                              [misses(f, j) for j in range(1, steps + 1)], python=f == 1))
    for decoy in _decoy_labels(plan):
        for name in [source.requests_started, source.requests_total] if source.requests_started else [source.requests_total]:
            inputs.append(InputSeries(_series(name, decoy), _cumulative([97.0] * steps)))
        for key in _PER_REQUEST:
            base = getattr(source, sources.SERIES_BY_KEY[key].metric)
            inputs.append(InputSeries(_series(base + "_count", decoy), _cumulative([97.0] * steps)))
            inputs.append(InputSeries(_series(base + "_sum", decoy), _cumulative([99991.0] * steps)))
        if miss_rule is not None:  # all good: a selector that lets one in lowers the fraction
            inputs.extend(_ttft_bucket_inputs(source.ttft_seconds, decoy, bound_ms, [97] * steps, [0] * steps, python=False))

    plan_label = rules.own_labels(plan)
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
        requests = _per_window(float(sum(count_fn(f, j) for f in range(FRONTENDS) for j in in_window)), W, window)
        rec = rule_by_key["requests"].record
        expectations.append(Expectation(rec, t, (_expected(plan_label, rec, requests),)))
        extra: dict[str, Callable[[], Optional[float]]] = {
            "peak_rate": lambda: _peak_rate(counted, t, W),
            "arrival_dispersion": lambda: _dispersion(counted, t, W, sources.dispersion_bin(plan.spec.metrics.scrape_interval_seconds)),
            "backlog": lambda: backlog_at(p * per_window),
        }
        for key, compute in extra.items():
            rule = rule_by_key.get(key)
            got = compute() if rule is not None else None
            if rule is not None and got is not None:  # None: NaN on an idle window
                expectations.append(Expectation(rule.record, t, (_expected(plan_label, rule.record, got),)))
        n = sum(completions(f, j) for f in range(FRONTENDS) for j in in_window)
        if miss_rule is not None:
            good = sum(completions(f, j) - misses(f, j) for f in range(FRONTENDS) for j in in_window)
            fraction = _ttft_miss_fraction(good, n)
            if fraction is not None:
                expectations.append(Expectation(miss_rule.record, t, (_expected(plan_label, miss_rule.record, fraction),)))
        if n == 0:
            continue  # 0/0: the mean is NaN on an idle window, which the scaler treats as idle
        for key in _PER_REQUEST:
            total = sum(completions(f, j) * value(key, f, j) for f in range(FRONTENDS) for j in in_window)
            rec = rule_by_key[key].record
            expectations.append(Expectation(rec, t, (_expected(plan_label, rec, total / n),)))
    return RuleTestCase(f"{group.name}: synthetic frontend traffic", step, tuple(inputs), tuple(expectations))


def _windows(plan: Plan, kind: str) -> tuple[int, int]:
    """(decision window W, range R) of a plan's `kind` rules: a case's blocks are R long
    (each rule's range holds exactly one block), the burst signals span W."""
    window = throughput_window(plan) if kind == "throughput" else load_window(plan)
    return window, sources.plan_range(plan, kind)


def _per_window(count: float, window: int, rng: int) -> float:
    """A range's request count as the rule scales it to the window (`* W / R`, in PromQL's
    order of operations, so that the float result is the same)."""
    return count if rng == window else count * window / rng


def _grid(t: int, back: int, step: int = sources.PEAK_STEP) -> list[int]:
    """Multiples of `step` in [t - back, t], oldest first: the points of a subquery at that
    resolution over `back` seconds evaluated at t (promtool's clock starts at 0)."""
    first = -(-(t - back) // step) * step
    return list(range(max(first, 0), t + 1, step))


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


def _dispersion(counted: Callable[[int, int], int], t: int, window: int, step: int = sources.PEAK_STEP) -> Optional[float]:
    """Allan's index of dispersion of the counts in `step`-s bins (the plan's
    `sources.dispersion_bin`) in the window; None when it is NaN."""
    bins = window // step

    def c(e: int) -> int:
        return counted(e - step, e)

    if bins == 2:
        now, before = c(t), c(t - step)
        return None if now + before == 0 else (now - before) ** 2 / (now + before)
    diffs = [float((c(e) - c(e - step)) ** 2) for e in _grid(t, (bins - 2) * step, step)]
    counts = [float(c(e)) for e in _grid(t, (bins - 1) * step, step)]
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
    _, window = _windows(plan, "worker")  # one input step per range: [t - R, t] holds two
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
                labels = dict(rules.own_labels(plan), **{source.worker_id_label: worker_id, source.worker_type_label: worker_type})
                samples.append(_expected(labels, rule.record, sum(per_frontend) / FRONTENDS))
            expectations.append(Expectation(rule.record, j * window, tuple(sorted(samples, key=lambda s: s.labels))))
    return RuleTestCase(f"{group.name}: synthetic per-worker gauges", window, tuple(inputs), tuple(expectations))


def rule_test(plan: Plan, groups: tuple[RuleGroup, ...], rule_file: str) -> RuleTest:
    """The promtool test for a plan's rule file (`rule_file` is relative to the test file)."""
    cases = []
    engine = source_for(plan).layout == "engine"
    for group in groups:
        if group.kind == naming.THROUGHPUT_GROUP:
            cases.append(engine_throughput_case(plan, group) if engine else throughput_case(plan, group))
        elif group.kind == rules.SLO_GROUP:
            cases.extend(alert_cases(plan, group))
        else:
            cases.append(engine_worker_case(plan, group) if engine else worker_case(plan, group))
    evaluation = 0
    for case in cases:
        evaluation = math.gcd(evaluation, case.interval)
    return RuleTest(rule_file=rule_file, evaluation_interval=evaluation, cases=tuple(cases))


# -- engine sources (vLLM, SGLang): each pool's pods export their own series ---------------
def _regex_sample(regex: str, i: int) -> Optional[str]:
    """A value Prometheus' anchored `regex` matches, unique per `i`, for the common forms
    (`prefix-.*`, `a|b`, `x-[0-9]+`); None when none of the candidates matches."""
    core = regex[1:] if regex.startswith("^") else regex
    core = core[:-1] if core.endswith("$") else core
    first = core.split("|")[0]
    candidates = [
        re.sub(r"\[0-9\][+*]|\\d[+*]", str(i), re.sub(r"\.[*+]", str(i), first)).replace("\\.", ".").replace("\\-", "-"),
        first + str(i),
        first,
    ]
    for c in candidates:
        try:
            if re.fullmatch(regex, c):
                return c
        except re.error:
            return None
    return None


def _matching(label: str, value: str, i: int) -> Optional[str]:
    """A label value the pool matcher `value` (operator form) selects, unique per `i`."""
    if value.startswith("=~"):
        return _regex_sample(value[2:], i)
    if value.startswith("!="):
        return f"{value[2:]}-x{i}"
    if value.startswith("!~"):
        c = f"dynplan-test-{i}"
        return None if re.fullmatch(value[2:], c) else c
    return value


def _not_matching(value: str) -> Optional[str]:
    """A label value the pool matcher `value` excludes (for a decoy pod)."""
    if value.startswith("=~"):
        c = "dynplan-decoy"
        return None if re.fullmatch(value[2:], c) else c
    if value.startswith(("!=", "!~")):
        return value[2:] if value.startswith("!=") else _regex_sample(value[2:], 0)
    return value + "-other"


def _pool_matchers(plan: Plan, pool: str) -> dict[str, str]:
    """The pool's matchers as label -> operator-form value (its selector, or the source's
    default `label="value"`)."""
    own = dict(plan.pool(pool).selector)
    if own:
        return own
    raw = sources.pool_extra(plan, pool)
    out = {}
    for part in filter(None, raw.split(",")):
        key, _, val = part.partition("=")
        out[key] = val.strip('"')
    return out


def _engine_pods(plan: Plan, pods_per_pool: int = 2) -> Optional[list[tuple[str, str, dict[str, str]]]]:
    """(pool, pod, labels) of the synthetic engine pods: the plan's selector, the pool's
    matchers satisfied, scrape labels; None when a matcher's value cannot be sampled."""
    source = source_for(plan)
    out: list[tuple[str, str, dict[str, str]]] = []
    for pool in plan.pool_names:
        matchers = _pool_matchers(plan, pool)
        for i in range(pods_per_pool):
            labels = {source.model_label: _DEFAULT_MODEL, "job": "engines", "namespace": plan.namespace,
                      "instance": f"10.1.{len(out)}.1:8000", sources.POD_LABEL: f"{pool}-{i}"}
            labels.update(plan.spec.metrics.selector)
            for key, value in matchers.items():
                v = _matching(key, value, i)
                if v is None:
                    return None
                labels[key] = v
            out.append((pool, labels[sources.POD_LABEL], labels))
    if len({pod for _, pod, _ in out}) != len(out):
        return None
    return out


def _engine_decoys(plan: Plan) -> list[dict[str, str]]:
    """Pods each matcher must exclude: one per plan selector label and per pool matcher,
    differing from a matching pod in that label only."""
    pods = _engine_pods(plan, 1) or []
    decoys: list[dict[str, str]] = []
    for pool, _, labels in pods:
        pod_matcher = _pool_matchers(plan, pool).get(sources.POD_LABEL)

        def pod_name() -> str:
            # a pod the pool's own matcher selects, so that only the changed label excludes it
            sample = _matching(sources.POD_LABEL, pod_matcher, 100 + len(decoys)) if pod_matcher else None
            return sample or f"decoy-{len(decoys)}"

        for key, value in sorted(plan.spec.metrics.selector.items()):
            decoys.append(dict(labels, **{key: value + "-other", sources.POD_LABEL: pod_name()}))
        for key, value in sorted(_pool_matchers(plan, pool).items()):
            other = _not_matching(value)
            if other is not None and key != sources.POD_LABEL:
                decoys.append(dict(labels, **{key: other, sources.POD_LABEL: f"decoy-{len(decoys)}"}))
            elif other is not None:
                decoys.append(dict(labels, **{key: other}))
    return decoys


def _ranked(source: sources.Source, labels: Mapping[str, str]) -> list[dict[str, str]]:
    """A gauge's series: once per rank where the source repeats values per rank."""
    if not source.rank_labels:
        return [dict(labels)]
    return [dict(labels, **{r: "0" for r in source.rank_labels}), dict(labels, **{source.rank_labels[0]: "1"}, **{r: "0" for r in source.rank_labels[1:]})]


def _mean_inputs(source: sources.Source, attr: str, labels: Mapping[str, str], counts: Sequence[float], sums: Sequence[float]) -> list[InputSeries]:
    """The cumulative series a mean of `attr` is computed from: histogram _sum/_count, or
    the source's two counters (the count counter is the requests counter)."""
    if attr in source.ratios:
        num, _ = source.ratios[attr]
        return [InputSeries(_series(num, labels), _cumulative(sums))]
    base = getattr(source, attr)
    return [InputSeries(_series(base + "_count", labels), _cumulative(counts)),
            InputSeries(_series(base + "_sum", labels), _cumulative(sums))]


_ENGINE_MEANS = {"isl": "input_tokens", "osl": "output_tokens", "ttft_ms": "ttft_seconds", "itl_ms": "itl_seconds",
                 "request_duration_s": "request_duration_seconds"}


def engine_throughput_case(plan: Plan, group: RuleGroup) -> RuleTestCase:
    """Three windows of completions on every pod (traffic, bursty traffic, idle); each
    pool's pods report values of their own, so a series read from the wrong pool, or a
    pod the selectors must exclude, changes the result. The backlog is the backlog pool's
    waiting gauges (once per pod, whatever its ranks) plus the gateway's queue, which goes
    stale after two windows."""
    source = source_for(plan)
    W, window = _windows(plan, "throughput")
    step = math.gcd(math.gcd(window, W), 15)
    per_window = window // step
    steps = 3 * per_window
    pods = _engine_pods(plan)
    if pods is None:
        return RuleTestCase(f"{group.name}: engine pods (a pool selector's regex could not be sampled: inputs only)", step, (), ())

    def phase(j: int) -> int:
        return (j - 1) // per_window

    def completions(p: int, j: int) -> int:
        if j < 2 or phase(j - 1) >= 2:
            return 0
        burst = 6 if (p, j) == (0, per_window + 2) else 0
        return 1 + (j + 2 * p) % 3 + burst

    def value(key: str, pool: str, p: int, j: int) -> float:
        v = _PER_REQUEST[key][min(phase(j), 1)][p % 2]
        return v * (2.0 if pool == "prefill" else 1.0)  # each pool's own values

    def misses(pool: str, p: int, j: int) -> int:
        quarters = _TTFT_MISS_QUARTERS[min(phase(j), 1)][p % 2]
        return _ttft_misses(completions(p, j), quarters if pool == "prefill" else (quarters + 1) % 4)

    series_pool = {r.series_key: sources.series_pool(plan, sources.SERIES_BY_KEY[r.series_key]) for r in group.rules}
    rule_by_key = {r.series_key: r for r in group.rules}
    miss_rule = rule_by_key.get("ttft_miss")
    bound_ms = _ttft_bound_ms(plan)
    inputs: list[InputSeries] = []
    for n, (pool, _, labels) in enumerate(pods):
        p = n % 2
        counts = [float(completions(p, j)) for j in range(1, steps + 1)]
        inputs.append(InputSeries(_series(source.requests_total, labels), _cumulative(counts)))
        for key, attr in _ENGINE_MEANS.items():
            sums = [completions(p, j) * value(key, pool, p, j) for j in range(1, steps + 1)]
            inputs.extend(_mean_inputs(source, attr, labels, counts, sums))
        if miss_rule is not None:
            inputs.extend(_ttft_bucket_inputs(source.ttft_seconds, labels, bound_ms, [completions(p, j) for j in range(1, steps + 1)],
                                              [misses(pool, p, j) for j in range(1, steps + 1)], python=True))
    for decoy in _engine_decoys(plan):
        inputs.append(InputSeries(_series(source.requests_total, decoy), _cumulative([97.0] * steps)))
        for attr in _ENGINE_MEANS.values():
            inputs.extend(_mean_inputs(source, attr, decoy, [97.0] * steps, [99991.0] * steps))
        if miss_rule is not None:
            inputs.extend(_ttft_bucket_inputs(source.ttft_seconds, decoy, bound_ms, [97] * steps, [0] * steps, python=True))
    backlog_at: Callable[[int], Optional[float]] = lambda i: None  # noqa: E731
    if "backlog" in rule_by_key:
        backlog_pool = series_pool["backlog"]
        gauge = source.backlog[0]

        def waiting(n: int, i: int) -> float:
            return float(n + 1 + i % 3)

        def gateway(i: int) -> float:
            return float(40 + i % 2)

        for n, (pool, _, labels) in enumerate(pods):
            for lbl in _ranked(source, labels):
                inputs.append(InputSeries(_series(gauge.metric, lbl), tuple(waiting(n, i) for i in range(steps + 1))))
        for decoy in _engine_decoys(plan):
            inputs.append(InputSeries(_series(gauge.metric, decoy), tuple(7777.0 for _ in range(steps + 1))))
        stale_after = 2 * per_window
        for g in source.gateway_backlog:
            glabels = {k: v for k, v in plan.spec.metrics.selector.items() if k not in g.without}
            glabels.update(job="gateway", pod="epp-0")
            values: list[Optional[float]] = [gateway(i) for i in range(stale_after + 1)]
            inputs.append(InputSeries(_series(g.metric, glabels), tuple(values + [None])))

        def backlog_value(i: int) -> Optional[float]:
            engines = sum(waiting(n, i) for n, (pool, _, _) in enumerate(pods) if pool == backlog_pool)
            front = gateway(i) if source.gateway_backlog and i <= stale_after else 0.0
            return engines + front

        backlog_at = backlog_value

    plan_label = rules.own_labels(plan)
    counting_pool = series_pool["requests"]

    def counted(a: int, b: int) -> int:
        return sum(completions(n % 2, j) for n, (pool, _, _) in enumerate(pods) if pool == counting_pool
                   for j in range(max(a // step + 1, 1), b // step + 1))

    expectations: list[Expectation] = []
    for w_i in (1, 2, 3):
        in_window = range((w_i - 1) * per_window + 1, w_i * per_window + 1)
        t = w_i * window
        rec = rule_by_key["requests"].record
        expectations.append(Expectation(rec, t, (_expected(plan_label, rec, _per_window(float(counted(t - window, t)), W, window)),)))
        extra: dict[str, Callable[[], Optional[float]]] = {
            "peak_rate": lambda: _peak_rate(counted, t, W),
            "arrival_dispersion": lambda: _dispersion(counted, t, W, sources.dispersion_bin(plan.spec.metrics.scrape_interval_seconds)),
            "backlog": lambda: backlog_at(w_i * per_window),
        }
        for key, compute in extra.items():
            rule = rule_by_key.get(key)
            got = compute() if rule is not None else None
            if rule is not None and got is not None:
                expectations.append(Expectation(rule.record, t, (_expected(plan_label, rule.record, got),)))
        for key in _ENGINE_MEANS:
            pool_of = series_pool[key]
            members = [(n % 2, pool) for n, (pool, _, _) in enumerate(pods) if pool == pool_of]
            n_done = sum(completions(p, j) for p, _ in members for j in in_window)
            if n_done == 0:
                continue
            total = sum(completions(p, j) * value(key, pool, p, j) for p, pool in members for j in in_window)
            rec = rule_by_key[key].record
            expectations.append(Expectation(rec, t, (_expected(plan_label, rec, total / n_done),)))
        if miss_rule is not None:
            members = [(n % 2, pool) for n, (pool, _, _) in enumerate(pods) if pool == series_pool["ttft_miss"]]
            observed = sum(completions(p, j) for p, _ in members for j in in_window)
            good = sum(completions(p, j) - misses(pool, p, j) for p, pool in members for j in in_window)
            fraction = _ttft_miss_fraction(good, observed)
            if fraction is not None:
                expectations.append(Expectation(miss_rule.record, t, (_expected(plan_label, miss_rule.record, fraction),)))
    return RuleTestCase(f"{group.name}: synthetic engine pods", step, tuple(inputs), tuple(expectations))


def engine_worker_case(plan: Plan, group: RuleGroup) -> RuleTestCase:
    """Two pods per pool: waiting and KV gauges (one pod per pool exports the older KV
    gauge where the source has one), per-pod latency and ISL series; each rule's samples
    per pod of its pool, with the pool label."""
    source = source_for(plan)
    _, window = _windows(plan, "worker")  # one input step per range, as in worker_case
    steps = 4
    pods = _engine_pods(plan)
    if pods is None:
        return RuleTestCase(f"{group.name}: engine pods (a pool selector's regex could not be sampled: inputs only)", window, (), ())

    def count(n: int) -> float:
        return float(n % 3 + 1)

    def level(key: str, n: int, j: int) -> float:
        base, spread, wobble = _WORKER_GAUGE[key]
        return base * (n + 1) + j * wobble + spread

    def per_request(key: str, n: int, j: int) -> float:
        return _PER_REQUEST[key][j % 2][n % 2] * (n + 1)

    inputs: list[InputSeries] = []
    for n, (pool, _, labels) in enumerate(pods):
        counts = [count(n)] * steps
        inputs.append(InputSeries(_series(source.requests_total, labels), _cumulative(counts)))
        for key, attr in (("ttft_ms", "ttft_seconds"), ("itl_ms", "itl_seconds"), ("isl", "input_tokens")):
            inputs.extend(_mean_inputs(source, attr, labels, counts, [count(n) * per_request(key, n, j) for j in range(1, steps + 1)]))
        kv_metric = (source.worker_active_decode_blocks,) + source.kv_fallbacks
        kv_name = kv_metric[n % len(kv_metric)]
        for lbl in _ranked(source, labels):
            inputs.append(InputSeries(_series(source.worker_active_prefill_tokens, lbl), tuple(level("last_isl", n, j) / 256 for j in range(steps + 1))))
            inputs.append(InputSeries(_series(kv_name, lbl), tuple(level("active_decode_blocks", n, j) for j in range(steps + 1))))
    for decoy in _engine_decoys(plan):
        inputs.append(InputSeries(_series(source.requests_total, decoy), _cumulative([97.0] * steps)))
        for attr in ("ttft_seconds", "itl_seconds", "input_tokens"):
            inputs.extend(_mean_inputs(source, attr, decoy, [97.0] * steps, [99991.0] * steps))
        for metric in (source.worker_active_prefill_tokens, source.worker_active_decode_blocks):
            inputs.append(InputSeries(_series(metric, decoy), tuple(99991.0 for _ in range(steps + 1))))
    expectations: list[Expectation] = []
    for rule in group.rules:
        pool_of = dict(rule.labels).get(sources.POOL_LABEL)
        for j in (1, 2, 4):
            samples = []
            for n, (pool, pod, _) in enumerate(pods):
                if pool != pool_of:
                    continue
                isl = per_request("isl", n, j)
                want = {
                    "last_ttft_ms": per_request("ttft_ms", n, j),
                    "last_itl_ms": per_request("itl_ms", n, j),
                    "last_isl": isl,
                    "active_prefill_tokens": (level("last_isl", n, j - 1) + level("last_isl", n, j)) / 2 / 256 * isl,
                    "active_decode_blocks": (level("active_decode_blocks", n, j - 1) + level("active_decode_blocks", n, j)) / 2,
                }[rule.series_key]
                labels = dict(rules.own_labels(plan), **{sources.POOL_LABEL: pool, sources.POD_LABEL: pod})
                samples.append(_expected(labels, rule.record, want))
            # one rule per pool shares the record name: each is checked through its pool label
            expr = rule.record + sources.selector({sources.POOL_LABEL: pool_of or ""})
            expectations.append(Expectation(expr, j * window, tuple(sorted(samples, key=lambda s: s.labels))))
    return RuleTestCase(f"{group.name}: synthetic engine pods' load", window, tuple(inputs), tuple(expectations))


# -- SLO alerts: the alerts' conditions evaluated here from the per-step events -------------
_SLO_STEP = 60  # input interval of the burn-rate case: a 5m window holds 6 samples
_PER_STEP = 100000  # observations per step: 1 - attainment >= 1e-4 leaves >= 10 bad ones at 1x
_SCALER_JOB = {"job": "dynplan-scaler", "instance": "10.0.9.1:9091"}


@dataclass(frozen=True)
class _Sli:
    """One SLI's histogram over a case: observations and bad ones (above the bound) per step."""

    step: int
    bad: tuple[int, ...]  # bad[j - 1]: bad observations in step j

    def error(self, t: int, window: int) -> Optional[float]:
        """1 - good/all over the samples in [t - window, t] (Prometheus 2's closed range);
        None with fewer than two samples or no observations. Every sample lies on the
        step grid, so `increase()`'s extrapolation scales both sums alike."""
        first = max(-(-(t - window) // self.step), 0)
        last = min(t // self.step, len(self.bad))
        if last - first < 1:
            return None
        bad = sum(self.bad[first:last])
        total = _PER_STEP * (last - first)
        return 1 - (total - bad) / total


def _le(bound_ms: float) -> str:
    seconds = bound_ms / 1000
    return str(int(seconds)) if seconds == int(seconds) else repr(seconds)


def _sli_inputs(plan: Plan, sli: str, attr: str, key: str, model: _Sli) -> list[InputSeries]:
    """The histogram's _count, its bucket at the bound, +Inf and a bucket below the bound
    (all bad observations fall above the bound): one pod or frontend, and the decoys."""
    source = source_for(plan)
    base = getattr(source, attr)
    if source.layout == "engine":
        pool = sources.series_pool(plan, sources.SERIES_BY_KEY[key])
        pods = [labels for p, _, labels in (_engine_pods(plan, 1) or []) if p == pool]
        decoys = _engine_decoys(plan)
    else:
        pods, decoys = [_frontend_labels(plan, 0)], _decoy_labels(plan)

    def text(increments: Sequence[int]) -> str:
        # runs of equal increments in promtool's expanding notation: `a+bxn` is the n + 1
        # values a, a+b, ..., a+nb; so the first run starts at the 0 sample, the others
        # one increment past the previous run's last value
        out, total, i = ["0"], 0, 0
        while i < len(increments):
            j = i
            while j < len(increments) and increments[j] == increments[i]:
                j += 1
            out.append(f"{total + increments[i]}+{increments[i]}x{j - i - 1}")
            total += increments[i] * (j - i)
            i = j
        return " ".join(out)

    n = len(model.bad)
    all_ = [_PER_STEP] * n
    good = [_PER_STEP - b for b in model.bad]
    bound = _le(plan.bucket_bound_ms(sli))
    inputs = []
    for labels in pods:
        inputs.append(InputSeries(_series(base + "_count", labels), (), text(all_)))
        inputs.append(InputSeries(_series(base + "_bucket", dict(labels, le="+Inf")), (), text(all_)))
        inputs.append(InputSeries(_series(base + "_bucket", dict(labels, le=bound)), (), text(good)))
        inputs.append(InputSeries(_series(base + "_bucket", dict(labels, le="0.0001")), (), text([0] * n)))
    for labels in decoys:  # all good, many: a selector that lets one in hides the burn
        inputs.append(InputSeries(_series(base + "_count", labels), (), text([7 * _PER_STEP] * n)))
        inputs.append(InputSeries(_series(base + "_bucket", dict(labels, le=bound)), (), text([7 * _PER_STEP] * n)))
    return inputs


@dataclass(frozen=True)
class _ScalerState:
    """The scaler's series at one instant (None: absent)."""

    last_good: Optional[float]
    desired: Mapping[str, float]
    requested: Mapping[str, float]


def _alert_conditions(
    plan: Plan, slis: Mapping[str, _Sli], scaler: Callable[[int], Optional[_ScalerState]], t: int
) -> dict[str, list[dict[str, str]]]:
    """Each alert's firing label sets at t, from the models (the rules' conditions restated)."""
    b = 1 - plan.spec.sla.attainment
    own = rules.own_labels(plan)
    out: dict[str, list[dict[str, str]]] = {}

    def burning(sli: _Sli, windows: Sequence[rules.BurnWindow]) -> bool:
        for w in windows:
            long, short = sli.error(t, w.long_seconds), sli.error(t, w.short_seconds)
            if long is not None and short is not None and long > w.factor * b and short > w.factor * b:
                return True
        return False

    for key, windows in (("page", rules.PAGE_WINDOWS), ("ticket", rules.TICKET_WINDOWS)):
        out[key] = [dict(own, sli=name) for name, sli in sorted(slis.items()) if burning(sli, windows)]
    state = scaler(t)
    scaler_labels = dict(_SCALER_JOB, namespace=plan.namespace, plan=plan.name)
    out["stale"] = [scaler_labels] if state and state.last_good is not None and t - state.last_good > rules.stale_seconds(plan) else []
    out["absent"] = [{"namespace": plan.namespace, "plan": plan.name}] if not state or state.last_good is None else []
    short = [e for e in (s.error(t, rules.PAGE_WINDOWS[0].short_seconds) for s in slis.values()) if e is not None]
    violated = bool(short) and max(short) > 1.0 * b
    out["at_max"] = [
        dict(scaler_labels, pool=p) for p in plan.pool_names
        if violated and state and p in state.desired and state.desired[p] >= plan.pool(p).max_replicas
    ]
    budget = plan.spec.budget.max_gpus
    if budget is not None:
        have = state is not None and all(p in state.requested for p in plan.pool_names)
        gpus = sum(state.requested[p] * plan.pool(p).gpus_per_replica for p in plan.pool_names) if state and have else 0.0
        out["gpu_budget"] = [{}] if have and gpus > budget else []
    return out


def _expect_alerts(
    plan: Plan, group: RuleGroup, evaluation: int, times: Sequence[int],
    slis: Mapping[str, _Sli], scaler: Callable[[int], Optional[_ScalerState]],
) -> tuple[AlertExpectation, ...]:
    """Alert states at `times`: a label set fires at T when its condition held at every
    evaluation (every `evaluation` seconds from 0) since it became true, for at least `for`."""
    active: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    firing_at: dict[int, dict[str, list[dict[str, str]]]] = {}
    by_key = {a.key: a for a in group.alerts}
    for t in range(0, max(times) + 1, evaluation):
        now = _alert_conditions(plan, slis, scaler, t)
        seen = set()
        for key, sets in now.items():
            for labels in sets:
                k = (key, tuple(sorted(labels.items())))
                seen.add(k)
                active.setdefault(k, t)
        for k in list(active):
            if k not in seen:
                del active[k]
        if t in times:
            firing_at[t] = {}
            for (key, label_items), since in active.items():
                if t - since >= by_key[key].for_seconds:
                    firing_at[t].setdefault(key, []).append(dict(label_items))
    out = []
    names = sorted({a.alert for a in group.alerts})
    for t in times:
        for name in names:
            fired = []
            for a in group.alerts:
                if a.alert != name:
                    continue
                for labels in firing_at[t].get(a.key, []):
                    fired.append(FiringAlert(tuple(sorted(dict(labels, **dict(a.labels)).items())), a.annotations))
            out.append(AlertExpectation(t, name, tuple(sorted(fired, key=lambda f: f.labels))))
    return tuple(out)


def _scaler_inputs(plan: Plan, steps: int, step: int, state: Callable[[int], Optional[_ScalerState]]) -> list[InputSeries]:
    """The scaler's own series at each sample (None where the series is absent or ends)."""
    labels = dict(_SCALER_JOB, namespace=plan.namespace, plan=plan.name)
    states = [state(i * step) for i in range(steps + 1)]

    def values(get: Callable[[_ScalerState], Optional[float]]) -> tuple[Optional[float], ...]:
        out: list[Optional[float]] = []
        for s in states:
            v = get(s) if s is not None else None
            if v is None:
                out.append(None)
                break  # the series ends: a staleness marker, then nothing
            out.append(v)
        return tuple(out)

    inputs = [InputSeries(_series("dynplan_last_good_decision_timestamp_seconds", labels), values(lambda s: s.last_good))]
    for p in plan.pool_names:
        pl = dict(labels, pool=p)

        def desired(s: _ScalerState, p: str = p) -> Optional[float]:
            return s.desired.get(p)

        def requested(s: _ScalerState, p: str = p) -> Optional[float]:
            return s.requested.get(p)

        inputs.append(InputSeries(_series("dynplan_desired_replicas", pl), values(desired)))
        inputs.append(InputSeries(_series("dynplan_requested_replicas", pl), values(requested)))
    return inputs


def alert_cases(plan: Plan, group: RuleGroup) -> list[RuleTestCase]:
    """Two cases. Burn rates: over 75 minutes of 1-minute samples, the ITL SLI burns 1.5x
    its budget throughout (the ticket fires, the page stays silent), the TTFT SLI is clean
    for 20 minutes, then burns 40x for 20 minutes (the page fires, and resolves 35 minutes
    after).
    Windows longer than the data read all of it: `increase()` extrapolates the bucket and
    the count alike, so their ratio is the ratio of the samples' (a 3-day case would cost
    promtool 17,000 evaluations of every rule, a minute per plan). Scaler health: 45 minutes of 15-s samples; the last good decision freezes after
    20 minutes and the series ends after 30 (stale, then absent); the first pool sits at its
    maxReplicas throughout and the TTFT SLI goes bad after 10 minutes; the planner asks for
    10,000 replicas of the first pool after 20 minutes (the GPU budget)."""
    b = 1 - plan.spec.sla.attainment
    minute = 60
    n = 75 * minute // _SLO_STEP

    def bad_at(ratio: float) -> int:
        return min(_PER_STEP, math.ceil(ratio * b * _PER_STEP))

    burst = range(20 * minute // _SLO_STEP, 40 * minute // _SLO_STEP)
    slis = {
        "ttft": _Sli(_SLO_STEP, tuple(bad_at(40) if j in burst else 0 for j in range(n))),
        "itl": _Sli(_SLO_STEP, tuple(bad_at(1.5) for j in range(n))),
    }
    by_name = {name: (attr, key) for name, attr, key in rules.SLI_HISTOGRAMS}
    burn_inputs = [x for name, model in slis.items() for x in _sli_inputs(plan, name, *by_name[name], model)]
    evaluation = 15  # the test file's evaluation interval (rule_test: the cases' gcd, 15 s at most)
    burn_times = [20 * minute, 40 * minute, 75 * minute]
    burn = RuleTestCase(
        f"{group.name}: burn rates over 75 minutes", _SLO_STEP, tuple(burn_inputs), (),
        _expect_alerts(plan, group, evaluation, burn_times, slis, lambda t: None),
    )

    step = 15
    interval = throughput_window(plan)
    frozen = 300  # the last good decision stops moving here
    end = max(frozen + rules.stale_seconds(plan) + 300, 900)  # and the scaler's series end here
    steps = (end + 600) // step
    first = plan.pool_names[0]

    def state(t: int) -> Optional[_ScalerState]:
        if t > end:
            return None
        good = min(t, frozen)
        desired = {p: float(plan.pool(p).max_replicas if p == first else 1) for p in plan.pool_names}
        requested = {p: (10000.0 if p == first and t >= 120 else 1.0) for p in plan.pool_names}
        return _ScalerState(float(good - good % interval), desired, requested)

    def sampled(t: int) -> Optional[_ScalerState]:
        # what an instant query sees at t: the latest sample at or before t
        return state(t - t % step)

    health_sli = {"ttft": _Sli(step, tuple(0 if j < 120 // step else _PER_STEP for j in range(steps)))}
    health_inputs = _sli_inputs(plan, "ttft", *by_name["ttft"], health_sli["ttft"]) + _scaler_inputs(plan, steps, step, state)
    health_times = [120, max(frozen + rules.stale_seconds(plan) + 150, 780), end + 450]
    health = RuleTestCase(
        f"{group.name}: scaler health, a pool at maxReplicas, the GPU budget", step, tuple(health_inputs), (),
        _expect_alerts(plan, group, evaluation, health_times, health_sli, sampled),
    )
    return [burn, health]
