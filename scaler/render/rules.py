"""Recording-rule groups for one plan, built from the one metrics table (`scaler.sources`).

Throughput series (request count, mean ISL/OSL/TTFT/ITL/duration) are always recorded: the
scaler reads the request count for activation even in load-only plans, and the series are
cheap (one per plan). Plans sized by attainment also record the peak one-minute rate, the
arrival dispersion and the backlog (`sources.plan_series`: exactly what the scaler reads).
Per-worker series are recorded only when load scaling is enabled, since they are one series
per worker and nothing else reads them. Every range is at least what the plan's scrape
interval needs (`sources.query_range`), the same as the scaler's raw fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaler import naming, sources
from scaler.core.plan import Plan
from scaler.errors import FieldError, RenderError

# Default evaluation interval of the throughput group: frequent enough that the scaler's
# reads are at most this stale, never more often than the window itself.
DEFAULT_THROUGHPUT_EVALUATION_SECONDS = 30


@dataclass(frozen=True)
class RecordingRule:
    """One `record:` rule; `series_key` ties it back to `sources.SERIES`."""

    record: str
    expr: str
    labels: tuple[tuple[str, str], ...]
    series_key: str
    kind: str
    window_seconds: int
    # the range its increase()/avg_over_time() read over (`sources.query_range`: the window,
    # or RANGE_SCRAPES scrape intervals when longer)
    range_seconds: int


@dataclass(frozen=True)
class RuleGroup:
    name: str
    kind: str
    interval_seconds: int
    rules: tuple[RecordingRule, ...]

    @property
    def interval(self) -> str:
        return sources.window(self.interval_seconds)


def source_for(plan: Plan, file: str = "") -> sources.Source:
    """The metrics source of a plan; RenderError naming the field when it is unknown."""
    name = plan.spec.metrics.source
    try:
        return sources.SOURCES[name]
    except KeyError:
        known = ", ".join(sorted(sources.SOURCES))
        raise RenderError([FieldError(file or plan.name, "spec.metrics.source", f"unknown source {name!r} (known: {known})")]) from None


def throughput_window(plan: Plan) -> int:
    return plan.spec.scaling.throughput.interval_seconds


def load_window(plan: Plan) -> int:
    return plan.spec.scaling.load.interval_seconds


def group_interval(plan: Plan, kind: str) -> int:
    """spec.rules.evaluationIntervalSeconds when set, else 30 s (throughput) / the load interval (worker)."""
    explicit = plan.spec.rules.evaluation_interval_seconds
    if explicit is not None:
        return explicit
    if kind == naming.THROUGHPUT_GROUP:
        return min(DEFAULT_THROUGHPUT_EVALUATION_SECONDS, throughput_window(plan))
    return load_window(plan)


def rule_groups(plan: Plan, file: str = "") -> tuple[RuleGroup, ...]:
    """The plan's rule groups: throughput always, worker when load scaling is on."""
    source_for(plan, file)  # an unknown source is a RenderError naming the field
    kinds = [naming.THROUGHPUT_GROUP] + ([naming.WORKER_GROUP] if plan.spec.scaling.load.enabled else [])
    groups = []
    for kind in kinds:
        window = throughput_window(plan) if kind == naming.THROUGHPUT_GROUP else load_window(plan)
        # engine sources record per-worker series once per pool, told apart by a pool label
        pools = sources.worker_pools(plan) if kind == naming.WORKER_GROUP else (None,)
        rules = tuple(
            RecordingRule(
                record=sources.plan_record_name(plan, series, window),
                expr=sources.plan_raw_expr(plan, series, window, pool),
                labels=((sources.PLAN_LABEL, plan.name),) + (((sources.POOL_LABEL, pool),) if pool else ()),
                series_key=series.key,
                kind=kind,
                window_seconds=window,
                range_seconds=sources.plan_range(plan, "throughput" if kind == naming.THROUGHPUT_GROUP else "worker"),
            )
            for pool in pools
            for series in sources.plan_series(plan, kind)
        )
        groups.append(RuleGroup(naming.rule_group_name(plan.name, kind), kind, group_interval(plan, kind), rules))
    return tuple(groups)
