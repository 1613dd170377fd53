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
    alerts: tuple["AlertRule", ...] = ()

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


def own_labels(plan: Plan) -> dict[str, str]:
    """The labels that tell a plan's recorded series and alerts from every other plan's: its
    name and its namespace (two namespaces may each have a plan of one name, evaluated by one
    Prometheus)."""
    return {sources.PLAN_LABEL: plan.name, sources.NAMESPACE_LABEL: plan.namespace}


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
                labels=tuple(own_labels(plan).items()) + (((sources.POOL_LABEL, pool),) if pool else ()),
                series_key=series.key,
                kind=kind,
                window_seconds=window,
                range_seconds=sources.plan_range(plan, "throughput" if kind == naming.THROUGHPUT_GROUP else "worker"),
            )
            for pool in pools
            for series in sources.plan_series(plan, kind)
        )
        groups.append(RuleGroup(naming.rule_group_name(plan.name, kind), kind, group_interval(plan, kind), rules))
    if plan.spec.rules.alerts:
        groups.append(slo_group(plan))
    return tuple(groups)


# -- SLO alerts (spec.rules.alerts) ----------------------------------------------------------
SLO_GROUP = "slo"
SLI_RECORD = "dynplan:sli_error:ratio_increase{}"
RUNBOOK = "https://github.com/dynplan/dynplan/blob/main/docs/operations.md#alerts"
DEFAULT_SLO_EVALUATION_SECONDS = 60


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window condition of the SRE workbook: both windows burn faster than `factor`."""

    factor: float
    long_seconds: int
    short_seconds: int


# The workbook's multiwindow, multi-burn-rate table (ch. 5), as Sloth generates it: 2% of a
# 30-day budget in 1 h or 5% in 6 h pages; 10% in 1 day or 3 days opens a ticket.
PAGE_WINDOWS = (BurnWindow(14.4, 3600, 300), BurnWindow(6.0, 21600, 1800))
TICKET_WINDOWS = (BurnWindow(3.0, 86400, 7200), BurnWindow(1.0, 259200, 21600))
SLI_WINDOWS = tuple(sorted({s for w in PAGE_WINDOWS + TICKET_WINDOWS for s in (w.long_seconds, w.short_seconds)}))
# the SLIs: requests whose TTFT is within the SLA, inter-token gaps within the ITL SLA
SLI_HISTOGRAMS = (("ttft", "ttft_seconds", "ttft_ms"), ("itl", "itl_seconds", "itl_ms"))


@dataclass(frozen=True)
class AlertRule:
    """One `alert:` rule; `key` names it for the generated promtool test."""

    alert: str
    expr: str
    for_seconds: int
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    key: str

    @property
    def for_(self) -> str:
        return sources.window(self.for_seconds) if self.for_seconds else "0s"


def _num(value: float) -> str:
    return repr(float(value))


def sli_record(window_seconds: int) -> str:
    return SLI_RECORD.format(sources.window(window_seconds))


def sli_expr(plan: Plan, sli: str, attr: str, key: str, window_seconds: int) -> str:
    """1 - (observations in the bucket at the SLA bound) / (all observations) over the window."""
    source = sources.plan_source(plan)
    pool = sources.series_pool(plan, sources.SERIES_BY_KEY[key])
    extra = sources.pool_extra(plan, pool)
    return sources.over_bound_expr(source, attr, plan.spec.metrics.selector, extra, sources.window(window_seconds),
                                   plan.bucket_bound_ms(sli))


def _scaler(plan: Plan, metric: str, extra: str = "") -> str:
    return metric + sources.selector({"namespace": plan.namespace, "plan": plan.name}, extra)


def budget_expr(plan: Plan, factor: float) -> str:
    """factor x the error budget, in PromQL so the float is the one Prometheus computes."""
    return f"({_num(factor)} * (1 - {_num(plan.spec.sla.attainment)}))"


def stale_seconds(plan: Plan) -> int:
    return 3 * throughput_window(plan)


def alert_rules(plan: Plan) -> tuple[AlertRule, ...]:
    """The plan's alerts: burn rates (page, ticket), scaler stale and absent, a pool at its
    maxReplicas while the SLA is violated, and the GPU budget (when spec.budget.maxGpus)."""
    name = plan.name
    own = own_labels(plan)
    sel = sources.selector(own)

    def burn(windows: tuple[BurnWindow, ...]) -> str:
        return " or ".join(
            f"({sli_record(w.long_seconds)}{sel} > {budget_expr(plan, w.factor)} and {sli_record(w.short_seconds)}{sel} > {budget_expr(plan, w.factor)})"
            for w in windows
        )

    def notes(summary: str, description: str) -> tuple[tuple[str, str], ...]:
        return (("description", description), ("runbook_url", RUNBOOK), ("summary", summary))

    objective = f"{plan.spec.sla.attainment:g}"
    rules = [
        AlertRule("DynplanSLOErrorBudgetBurn", burn(PAGE_WINDOWS), 120, (("severity", "page"),), notes(
            f"Plan {name} burns its latency error budget fast",
            f"Plan {name} ({plan.namespace}): the fraction of requests (TTFT) or tokens (ITL) outside the SLA burns the "
            f"{objective} objective's budget at 14.4x over 1h and 5m, or 6x over 6h and 30m (label sli)."), "page"),
        AlertRule("DynplanSLOErrorBudgetBurn", burn(TICKET_WINDOWS), 900, (("severity", "ticket"),), notes(
            f"Plan {name} burns its latency error budget",
            f"Plan {name} ({plan.namespace}): the latency SLI burns the {objective} objective's budget at 3x over 1d and 2h, "
            f"or 1x over 3d and 6h (label sli)."), "ticket"),
        AlertRule("DynplanScalerStale", f"time() - {_scaler(plan, 'dynplan_last_good_decision_timestamp_seconds')} > {stale_seconds(plan)}",
                  0, (("severity", "page"),), notes(
            f"dynplan has not decided plan {name} for {stale_seconds(plan)}s",
            f"Plan {name} ({plan.namespace}): no good decision for 3 throughput intervals; the scaler answers UNAVAILABLE "
            f"for it and KEDA keeps the last replica count."), "stale"),
        AlertRule("DynplanScalerAbsent", f"absent({_scaler(plan, 'dynplan_last_good_decision_timestamp_seconds')})", 300,
                  (("severity", "page"),), notes(
            f"No dynplan scaler reports plan {name}",
            f"Plan {name} ({plan.namespace}): no scaler's /metrics has reported the plan for 5m (scaler down, not "
            f"scraped, or the plan not loaded); KEDA cannot scale its pools."), "absent"),
    ]
    violated = f"max({sli_record(PAGE_WINDOWS[0].short_seconds)}{sel}) > {budget_expr(plan, 1.0)}"
    at_max = " or ".join(
        f"{_scaler(plan, 'dynplan_desired_replicas', sources.matcher('pool', p))} >= {plan.pool(p).max_replicas}" for p in plan.pool_names
    )
    rules.append(AlertRule("DynplanPoolAtMaxReplicas", f"({at_max}) and on() ({violated})", 600, (("severity", "ticket"),), notes(
        f"A pool of plan {name} is at maxReplicas while the SLA is violated",
        f"Plan {name} ({plan.namespace}): a pool has been at its maxReplicas for 10m while more than 1 - {objective} of "
        f"requests or tokens missed the SLA over 5m: raise maxReplicas or the budget."), "at_max"))
    if plan.spec.budget.max_gpus is not None:
        gpus = " + ".join(
            f"sum({_scaler(plan, 'dynplan_requested_replicas', sources.matcher('pool', p))}) * {plan.pool(p).gpus_per_replica}"
            for p in plan.pool_names
        )
        rules.append(AlertRule("DynplanGpuBudgetExhausted", f"({gpus}) > {plan.spec.budget.max_gpus}", 600,
                               (("severity", "ticket"),), notes(
            f"Plan {name} wants more GPUs than spec.budget.maxGpus",
            f"Plan {name} ({plan.namespace}): the planner has asked for more than {plan.spec.budget.max_gpus} GPUs for 10m; "
            f"the budget holds the pools below what the SLA needs."), "gpu_budget"))
    # every alert carries the plan, for routing (an absent() or a sum() result has no plan label)
    return tuple(AlertRule(r.alert, r.expr, r.for_seconds, tuple(sorted(r.labels + tuple(own.items()))), r.annotations, r.key)
                 for r in rules)


def slo_group(plan: Plan) -> RuleGroup:
    """The SLI error ratios (one series per SLI and window) and the alerts reading them:
    one group, so each evaluation's alerts read the ratios recorded the same instant."""
    explicit = plan.spec.rules.evaluation_interval_seconds
    records = tuple(
        RecordingRule(
            record=sli_record(w),
            expr=sli_expr(plan, sli, attr, key, w),
            labels=(*own_labels(plan).items(), ("sli", sli)),
            series_key=f"sli_{sli}",
            kind=SLO_GROUP,
            window_seconds=w,
            range_seconds=w,
        )
        for w in SLI_WINDOWS
        for sli, attr, key in SLI_HISTOGRAMS
    )
    return RuleGroup(naming.rule_group_name(plan.name, SLO_GROUP), SLO_GROUP, explicit or DEFAULT_SLO_EVALUATION_SECONDS, records, alert_rules(plan))
