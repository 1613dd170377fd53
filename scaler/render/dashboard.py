"""The Grafana dashboard of one plan, built with grafana-foundation-sdk (dashboards as code).

One dashboard per plan: its SLA, GPU budget, pools, scale targets and recorded series are
known at render time, so every query is concrete (no plan or pool variable to pick wrong).
The only variables are the data source and Grafana's `$__rate_interval`.

Rows: replicas and GPUs (desired / requested by the scaler, ready from kube-state-metrics,
GPUs against `spec.budget.maxGpus`), the SLA (TTFT and ITL percentiles from the source's
histograms against the SLA, and the attained percentile), traffic (observed vs predicted,
from the scaler and from the plan's recording rules), decisions (reason codes) and the
scaler's health (decision age and lag, failed ticks, decision time, RPCs).

Scaler gauges are read with `max by (...)`: two scaler replicas (the HA default) export the
same decision twice, under different `pod`/`instance` labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode, BigValueGraphMode, LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

from scaler import naming, sources
from scaler.core.plan import Plan
from scaler.render.rules import RuleGroup

# kube-prometheus-stack's Grafana sidecar loads ConfigMaps with this label (its default).
SIDECAR_LABEL = "grafana_dashboard"
SIDECAR_VALUE = "1"
DATASOURCE_VARIABLE = "datasource"
RATE_INTERVAL = "$__rate_interval"
# Percentiles the attained-percentile panel tests, lowest first (plus the plan's target).
ATTAINED_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
_DS = DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VARIABLE + "}")
_WIDTH = 24


@dataclass(frozen=True)
class DashboardView:
    """The dashboard of one plan: its JSON text and the ConfigMap that carries it."""

    uid: str
    title: str
    json: str
    configmap_name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    key: str


@dataclass(frozen=True)
class Query:
    """One panel target: the PromQL (with Grafana variables) and its legend."""

    expr: str
    legend: str


def _num(value: float) -> str:
    """A number in PromQL: integers without a decimal point, others by repr (exact)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _percent(q: float) -> str:
    """0.99 -> "p99", 0.995 -> "p99.5"."""
    text = f"{q * 100:.3f}".rstrip("0").rstrip(".")
    return f"p{text}"


class _Exprs:
    """The PromQL of one plan's panels."""

    def __init__(self, plan: Plan, groups: Sequence[RuleGroup]) -> None:
        self.plan = plan
        self.groups = groups

    def scaler(self, metric: str, extra: str = "") -> str:
        labels = {"namespace": self.plan.namespace, "plan": self.plan.name}
        return metric + sources.selector(labels, extra)

    def ready(self, pool: str) -> Optional[str]:
        """Ready replicas of the pool's scale target, labelled with the pool."""
        ref = self.plan.pool(pool).scale_target_ref
        q = sources.ready_query(ref.api_version, ref.kind, self.plan.namespace, ref.name)
        return None if q is None else f'label_replace({q}, "pool", "{sources.escape_label_value(pool)}", "", "")'

    def ready_all(self) -> Optional[str]:
        parts = [r for r in (self.ready(p) for p in self.plan.pool_names) if r is not None]
        return " or ".join(parts) if parts else None

    def gpus(self, per_pool: dict[str, str]) -> str:
        """Sum over pools of replicas x GPUs per replica; `per_pool`: a pool-labelled vector."""
        terms = [f"({expr}) * {self.plan.pool(pool).gpus_per_replica}" for pool, expr in per_pool.items()]
        return f"sum({' or '.join(terms)})"

    def desired_pool(self, pool: str) -> str:
        return f"max by (pool) ({self.scaler('dynplan_desired_replicas', sources.matcher('pool', pool))})"

    def histogram(self, attr: str, series_key: str) -> str:
        """The source histogram's bucket rate, summed by `le`, over the plan's (and pool's) selector."""
        source = sources.plan_source(self.plan)
        pool = sources.series_pool(self.plan, sources.SERIES_BY_KEY[series_key])
        sel = sources.selector(self.plan.spec.metrics.selector, sources.pool_extra(self.plan, pool))
        bucket = sources.series_selector(getattr(source, attr) + "_bucket", sel)
        return f"sum by (le) (rate({bucket}[{RATE_INTERVAL}]))"

    def histogram_count(self, attr: str, series_key: str) -> str:
        source = sources.plan_source(self.plan)
        pool = sources.series_pool(self.plan, sources.SERIES_BY_KEY[series_key])
        sel = sources.selector(self.plan.spec.metrics.selector, sources.pool_extra(self.plan, pool))
        return f"sum(rate({sources.series_selector(getattr(source, attr) + '_count', sel)}[{RATE_INTERVAL}]))"

    def quantile_ms(self, q: float, attr: str, series_key: str) -> str:
        return f"histogram_quantile({_num(q)}, {self.histogram(attr, series_key)}) * 1000"

    def attained(self, attr: str, series_key: str, sla_ms: float) -> str:
        """The largest tested percentile whose latency is within the SLA (0 when none is):
        a lower bound of the fraction of requests within it, read from the same
        interpolated histogram as the percentile panels. Idle (no requests): no value."""
        qs = sorted(set(ATTAINED_QUANTILES) | {self.plan.spec.sla.attainment})
        parts = [
            f'label_replace(({self.quantile_ms(q, attr, series_key)} <= bool {_num(sla_ms)}) * {_num(q)}, "q", "{_num(q)}", "", "")'
            for q in qs
        ]
        return f"max({' or '.join(parts)}) and on() ({self.histogram_count(attr, series_key)} > 0)"

    def recorded(self, key: str) -> Optional[tuple[str, int]]:
        """The plan's recording rule of a throughput series (record{dynplan_plan=...}) and its window."""
        for group in self.groups:
            for rule in group.rules:
                if rule.series_key == key and rule.kind == naming.THROUGHPUT_GROUP:
                    return rule.record + sources.selector(dict(rule.labels)), rule.window_seconds
        return None


def _targets(panel: Any, queries: Sequence[Query]) -> Any:
    for i, q in enumerate(queries):
        panel = panel.with_target(prometheus.Dataquery().expr(q.expr).legend_format(q.legend).ref_id(chr(ord("A") + i)).datasource(_DS))
    return panel


def _thresholds(*steps: tuple[Optional[float], str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(value=v, color=c) for v, c in steps])


def _series(title: str, description: str, unit: str, queries: Sequence[Query], width: int = 12, height: int = 8) -> Any:
    p = timeseries.Panel().title(title).description(description).unit(unit).datasource(_DS).span(width).height(height)
    return _targets(p.legend(_legend()), queries)


def _stat(title: str, description: str, unit: str, queries: Sequence[Query], thresholds: dashboard.ThresholdsConfig, width: int = 6) -> Any:
    p = stat.Panel().title(title).description(description).unit(unit).datasource(_DS).span(width).height(4).thresholds(thresholds)
    p = p.graph_mode(BigValueGraphMode.AREA).color_mode(BigValueColorMode.VALUE).reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    return _targets(p, queries)


def _timeline(title: str, description: str, query: Query) -> Any:
    p = statetimeline.Panel().title(title).description(description).datasource(_DS).span(12).height(6)
    return _targets(p.legend(_legend()), [query])


def _legend() -> common.VizLegendOptions:
    return common.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM)


def panels(plan: Plan, groups: Sequence[RuleGroup]) -> list[tuple[str, list[Any]]]:
    """(row title, panel builders) of the plan's dashboard, in order."""
    e = _Exprs(plan, groups)
    sla = plan.spec.sla
    tp = plan.spec.scaling.throughput
    interval = tp.interval_seconds
    rows: list[tuple[str, list[Any]]] = []

    # -- replicas and GPUs --
    replicas = [
        Query(f"max by (pool) ({e.scaler('dynplan_desired_replicas')})", "{{pool}} desired"),
        Query(f"max by (pool) ({e.scaler('dynplan_requested_replicas')})", "{{pool}} requested (before bounds and budget)"),
    ]
    ready = e.ready_all()
    if ready is not None:
        replicas.append(Query(ready, "{{pool}} ready"))
    gpus = [Query(e.gpus({p: e.desired_pool(p) for p in plan.pool_names}), "desired GPUs")]
    ready_pools = {p: r for p in plan.pool_names if (r := e.ready(p)) is not None}
    if ready_pools:
        gpus.append(Query(e.gpus(ready_pools), "ready GPUs"))
    if plan.spec.budget.max_gpus is not None:
        gpus.append(Query(f"vector({plan.spec.budget.max_gpus})", "budget (spec.budget.maxGpus)"))
    rows.append(("Replicas and GPUs", [
        _series("Desired vs ready replicas", "Per pool: the scaler's desired replicas (what KEDA is told), what the formulas "
                "asked for before bounds and budget, and the scale target's ready replicas (kube-state-metrics).", "short", replicas),
        _series("GPUs vs budget", "Replicas x spec.pools.<pool>.gpusPerReplica, summed over pools, against the plan's GPU budget.",
                "short", gpus),
    ]))

    # -- SLA --
    target = sla.attainment
    latency = []
    for name, attr, key, sla_ms, quantity in (("TTFT", "ttft_seconds", "ttft_ms", sla.ttft_ms, "ttft_ms"),
                                               ("ITL", "itl_seconds", "itl_ms", sla.itl_ms, "itl_ms")):
        qs = sorted({0.5, 0.9, target})
        queries = [Query(e.quantile_ms(q, attr, key), f"{_percent(q)}") for q in qs]
        queries += [
            Query(f"vector({_num(sla_ms)})", f"SLA {name} ({_num(sla_ms)} ms)"),
            Query(f"max({e.scaler('dynplan_observed', sources.matcher('quantity', quantity))})", "window mean (scaler)"),
            Query(f"max({e.scaler('dynplan_predicted', sources.matcher('quantity', quantity))})", "profiled at the operating point"),
        ]
        latency.append(_series(f"{name} percentiles vs SLA", f"{name} percentiles from the source's histogram, the SLA, and "
                               f"the scaler's view: the window mean and the profile's {name} at the chosen operating point.",
                               "ms", queries, width=8))
    attained = [
        Query(e.attained("ttft_seconds", "ttft_ms", sla.ttft_ms), "TTFT within SLA"),
        Query(e.attained("itl_seconds", "itl_ms", sla.itl_ms), "ITL within SLA"),
        Query(f"vector({_num(target)})", f"objective ({_percent(target)})"),
    ]
    latency.append(_series("SLA attainment (attained percentile)", "The largest of p50 ... p99.9 (and the objective's "
                           "percentile) whose latency is within the SLA: at least that fraction of requests met it. "
                           "Each latency on its own (Prometheus has no joint TTFT+ITL histogram).", "percentunit", attained, width=8))
    rows.append(("SLA", latency))

    # -- traffic --
    rate = [
        Query(f"max({e.scaler('dynplan_observed', sources.matcher('quantity', 'rate'))})", "observed (scaler, latest window)"),
        Query(f"max({e.scaler('dynplan_predicted', sources.matcher('quantity', 'rate'))})", "predicted next interval"),
    ]
    rec = e.recorded("requests")
    if rec is not None:
        rate.append(Query(f"max({rec[0]}) / {rec[1]}", "recorded (rule)"))
    tokens = [
        Query(f"max by (quantity) ({e.scaler('dynplan_observed', sources.matcher('quantity', '=~isl|osl'))})", "{{quantity}} observed"),
        Query(f"max by (quantity) ({e.scaler('dynplan_predicted', sources.matcher('quantity', '=~isl|osl'))})", "{{quantity}} predicted"),
    ]
    for key in ("isl", "osl"):
        rec = e.recorded(key)
        if rec is not None:
            tokens.append(Query(f"max({rec[0]})", f"{key} recorded (rule)"))
    rows.append(("Traffic", [
        _series("Request rate: observed vs predicted", "Arrivals per second of the latest throughput window and the "
                "predictor's forecast for the next, and the plan's recorded request count per window.", "reqps", rate),
        _series("ISL and OSL: observed vs predicted", "Mean input and output tokens per request.", "short", tokens),
    ]))

    # -- decisions --
    decisions: list[Any] = [_timeline(
        "Decision reason", "The reason code of the latest good decision (docs/decision-logic.md).",
        Query(f"max by (dynplan_decision_reason) ({e.scaler('dynplan_decision_reason')}) == 1", "{{dynplan_decision_reason}}"))]
    if plan.spec.scaling.load.enabled:
        decisions.append(_timeline(
            "Load-scaling verdicts", "The reason of the latest load-based verdict per pool and signal.",
            Query(f"max by (pool, signal, dynplan_load_decision_reason) ({e.scaler('dynplan_load_decision_reason')}) == 1",
                  "{{pool}} {{signal}}: {{dynplan_load_decision_reason}}")))
    rows.append(("Decisions", decisions))

    # -- scaler health --
    age = Query(f"time() - max({e.scaler('dynplan_last_good_decision_timestamp_seconds')})", "since the last good decision")
    rows.append(("Scaler health", [
        _stat("Time since the last good decision", f"Red past 3 x the throughput interval ({3 * interval} s): KEDA gets "
              "UNAVAILABLE once the decision is stale.", "s", [age],
              _thresholds((None, "green"), (float(2 * interval), "orange"), (float(3 * interval), "red"))),
        _stat("Plans served", "Plans loaded by the scaler (the highest of its replicas).", "short",
              [Query("max(dynplan_plans_loaded)", "plans")], _thresholds((None, "red"), (1.0, "green"))),
        _series("Decision lag", f"How late the latest throughput decision was (made at - window end - settle); above the "
                f"interval ({interval} s) decisions fall behind.", "s",
                [Query(f"max({e.scaler('dynplan_decision_lag_seconds')})", "lag")], width=6, height=4),
        _series("Failed ticks and rejected windows", "Ticks without a decision because Prometheus did not answer, and "
                "windows skipped as outside the physical limits (0 when there were none).", "short", [
                    Query(f"sum(increase({e.scaler('dynplan_prometheus_query_errors_total')}[{RATE_INTERVAL}])) or vector(0)", "query errors"),
                    Query(f"sum(increase({e.scaler('dynplan_windows_rejected_total')}[{RATE_INTERVAL}])) or vector(0)", "windows rejected"),
                ], width=6, height=4),
        _series("Decision duration (p99)", "Prometheus reads + planning per decision, and the planner alone.", "s", [
            Query(f"histogram_quantile(0.99, sum by (le, kind) (rate({e.scaler('dynplan_decision_duration_seconds_bucket')}[{RATE_INTERVAL}])))",
                  "{{kind}}"),
            Query(f"histogram_quantile(0.99, sum by (le) (rate({e.scaler('dynplan_decision_compute_seconds_bucket')}[{RATE_INTERVAL}])))",
                  "planner only"),
        ]),
        _series("External scaler RPCs", "GetMetrics / IsActive / GetMetricSpec answered per second, by gRPC code (all plans).",
                "reqps", [Query(f"sum by (method, code) (rate(dynplan_grpc_requests_total[{RATE_INTERVAL}]))", "{{method}} {{code}}")]),
    ]))
    return rows


def dashboard_uid(plan: Plan) -> str:
    """Unique per (namespace, name) in one Grafana, at most 40 characters (naming.dashboard_uid)."""
    return naming.dashboard_uid(plan.namespace, plan.name)


def dashboard_json(plan: Plan, groups: Sequence[RuleGroup]) -> str:
    """The dashboard as Grafana's JSON model, keys sorted (the same plan renders the same bytes)."""
    d = (
        dashboard.Dashboard(f"dynplan / {plan.namespace} / {plan.name}")
        .uid(dashboard_uid(plan))
        .description(f"Autoscaling of plan {plan.namespace}/{plan.name} by dynplan (rendered by `dynplan render manifests`).")
        .tags(["dynplan", "autoscaling"])
        .editable()
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable(DATASOURCE_VARIABLE).label("Data source").type("prometheus"))
    )
    panel_id = 1
    for title, row_panels in panels(plan, groups):
        d = d.with_row(dashboard.Row(title).id(panel_id))
        panel_id += 1
        for p in row_panels:
            d = d.with_panel(p.id(panel_id))
            panel_id += 1
    return json.dumps(d.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def build_dashboard(plan: Plan, groups: Sequence[RuleGroup], namespace: str) -> DashboardView:
    """The plan's dashboard and its sidecar ConfigMap in `namespace` (the plan ConfigMap's)."""
    labels = {
        naming.MANAGED_BY_LABEL: naming.MANAGED_BY,
        naming.APP_NAME_LABEL: naming.SCALER_APP_NAME,
        naming.COMPONENT_LABEL: "dashboard",
        naming.PLAN_NAME_LABEL: plan.name,
        naming.PLAN_NAMESPACE_LABEL: plan.namespace,
        SIDECAR_LABEL: SIDECAR_VALUE,
    }
    return DashboardView(
        uid=dashboard_uid(plan),
        title=f"dynplan / {plan.namespace} / {plan.name}",
        json=dashboard_json(plan, groups),
        configmap_name=naming.dashboard_configmap_name(plan.namespace, plan.name),
        namespace=namespace,
        labels=tuple(sorted(labels.items())),
        key=naming.dashboard_file(plan.namespace, plan.name),
    )


def panel_queries(text: str) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of a dashboard's JSON, in panel order."""
    model = json.loads(text)
    return [(p.get("title", ""), t["expr"]) for p in model.get("panels", []) for t in p.get("targets", []) or []]
