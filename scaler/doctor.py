"""`dynplan doctor -f PLAN` (and `dynplan validate --prometheus PLAN...`): is every series
the plan needs in Prometheus? What a user runs when the scaler shows nothing.

For every series the plan reads (throughput, per-worker when load scaling is on, ready
replicas for the attainment sizing) it sends the raw PromQL the scaler would send, and
when that gives no value, looks for the source metrics the series is computed from:

- found: the query gives a value (per-worker: at least one worker);
- empty: the source metrics exist with the selector, but the window holds no value (no
  traffic, or a window shorter than two scrapes: the measured scrape interval is named);
- missing: no series of the source metrics matches the selector; the hint says whether the
  metric exists under other labels (wrong selector, with an example), under its other
  name (renamed in engine version X), or not at all (not scraped, or another source). A
  histogram that has buckets for the selector but none at the bound an `over_bound` series
  counts above (`ttft_miss`: spec.rules.ttftBucketMs, default the SLA) is missing too: that
  series can never have a value; the hint names the histogram's bounds either side.

Exit 0 when nothing is missing, 2 when something is, 3 when Prometheus cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import asdict, dataclass
from typing import Optional

import click

from scaler.clikit import handle_errors
from scaler.core.plan import Plan
from scaler.errors import MetricsUnavailable
from scaler.prom.client import PromClient
from scaler.prom.credentials import Credential, check_access, load_credentials
from scaler.prom.reader import ready_queries
from scaler.sources import (
    RENAMES,
    SeriesDef,
    bound_bucket,
    bounds_either_side,
    le_matcher,
    plan_raw_expr,
    plan_series,
    plan_source,
    query_range,
    series_inputs,
    series_pool,
    series_selector,
    worker_pools,
)

FOUND, EMPTY, MISSING = "found", "empty", "missing"


@dataclass(frozen=True)
class Check:
    """One series: its key, the pool it is read from, status, value, selector, query, hint."""

    series: str
    pool: Optional[str]
    status: str
    value: Optional[float]
    selector: str
    query: str
    hint: str = ""


async def _count(client: PromClient, query: str) -> float:
    samples = await client.instant(f"count({query})")
    return samples[0].value if samples else 0.0


async def _example(client: PromClient, metric: str) -> str:
    samples = await client.instant(f"topk(1, {series_selector(metric, '{}')})")
    if not samples:
        return ""
    labels = {k: v for k, v in samples[0].labels.items() if k != "__name__"}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


async def _missing_hint(client: PromClient, plan: Plan, inputs: tuple[tuple[str, str], ...], pool: Optional[str]) -> str:
    source = plan_source(plan)
    metric, sel = inputs[0]
    base = metric[: -len("_count")] if metric.endswith("_count") else metric
    renamed = RENAMES.get(base)
    other = None if renamed is None else renamed[0] + metric[len(base):]
    if other is not None and renamed is not None and await _count(client, series_selector(other, sel)) > 0:
        return f"no {base} for this selector, but {renamed[0]} is there: {renamed[1]}"
    if await _count(client, series_selector(metric, "{}")) > 0:
        where = "spec.metrics.selector" + (f" and spec.pools.{pool}.selector" if pool and source.layout == "engine" else "")
        extra = ""
        if source.layout == "engine" and pool and not plan.pool(pool).selector and source.pool_matchers.get(pool):
            extra = f"; the default pool matcher {source.pool_matchers[pool]} needs a {source.name} that labels it (else set spec.pools.{pool}.selector)"
        return f"{metric} exists, but no series matches {sel}: check {where} (one series: {await _example(client, metric)}){extra}"
    if other is not None and renamed is not None and await _count(client, series_selector(other, "{}")) > 0:
        return f"no {base} at all, but {renamed[0]} exists: {renamed[1]}"
    return (f"no series named {metric} at all: is the {'frontend' if source.layout != 'engine' else 'engine'} scraped "
            f"(ServiceMonitor/PodMonitor), and does it run {source.name} (spec.metrics.source)?")


async def _samples_in(client: PromClient, metric: str, sel: str, window: int) -> float:
    """Samples of the metric's busiest matching series inside the window: fewer than two and
    no rate or average over it has a value."""
    samples = await client.instant(f"max(count_over_time({series_selector(metric, sel)}[{window}s]))")
    return samples[0].value if samples and math.isfinite(samples[0].value) else 0.0


async def _empty_hint(client: PromClient, plan: Plan, metric: str, sel: str, window: int) -> str:
    n = await _samples_in(client, metric, sel, window)
    if n < 2:
        return (f"the {window}s range holds {n:.0f} sample(s) of {metric}: it is shorter than two scrapes; set "
                f"spec.metrics.scrapeIntervalSeconds to the scrape interval (ranges are at least four of them) "
                f"(now {plan.spec.metrics.scrape_interval_seconds}s)")
    return f"{metric} is scraped ({n:.0f} samples in the {window}s window) but the window holds no value: no traffic yet?"


def _le_seconds(le: str) -> Optional[float]:
    try:
        return float(le)
    except ValueError:
        return None


async def _bound_missing(client: PromClient, plan: Plan, series: SeriesDef, pool: Optional[str]) -> Optional[tuple[str, str]]:
    """(selector, hint) when an `over_bound` series' histogram has buckets for the selector
    but none at the plan's bound, else None (no buckets at all: the usual missing hints)."""
    metric, sel, at_bound = bound_bucket(plan, series, pool)
    if await _count(client, series_selector(metric, sel)) == 0 or await _count(client, series_selector(metric, at_bound)) > 0:
        return None
    bound_ms = plan.bucket_bound_ms("ttft")
    field = (f"spec.rules.ttftBucketMs: {bound_ms:g} ms" if plan.spec.rules.ttft_bucket_ms is not None
             else f"spec.sla.ttftMs: {bound_ms:g} ms, spec.rules.ttftBucketMs unset")
    at = bound_ms / 1000
    # numerically: exporters write "1" or "1.0", and the same bound once per pod
    values = {_le_seconds(s.labels.get("le", "")) for s in await client.instant(f"count by (le) ({series_selector(metric, sel)})")}
    bounds = sorted(v for v in values if v is not None and not math.isnan(v))
    below, above = bounds_either_side(bounds, at)
    near = [b for b in (below, above) if b is not None]
    head = f"{metric} has no bucket at le={at:g} ({field}), so {series.key} never has a value: "
    if at in bounds:
        # the bound is there, written in a way the matcher does not take
        return at_bound, head + (f"a bucket at {at:g} s is there, spelled so that the matcher {le_matcher(bound_ms)} "
                                 "misses it; the sizing runs on the counted dispersion alone")
    if not near:
        return at_bound, head + "the histogram has no finite bucket bound; the sizing runs on the counted dispersion alone"
    named = " and ".join(f"{b:g}" for b in near)
    ms = " or ".join(f"{b * 1000:g}" for b in near)
    return at_bound, (
        head + f"its nearest bound{'s are' if len(near) > 1 else ' is'} {named} s; set spec.rules.ttftBucketMs to "
        f"{'one of them' if len(near) > 1 else 'it'} ({ms}; the one below counts every request over the SLA, the safe "
        "side for the sizing, the one above makes the SLI that bound's; docs/plan-spec.md); meanwhile the sizing runs "
        "on the counted dispersion alone"
    )


async def _check(client: PromClient, plan: Plan, series: SeriesDef, window: int, pool: Optional[str]) -> Check:
    query = plan_raw_expr(plan, series, window, pool)
    read_pool = series_pool(plan, series) if series.kind == "throughput" else pool
    inputs = series_inputs(plan, series, pool)
    sel = inputs[0][1]
    samples = [s for s in await client.instant(query) if math.isfinite(s.value)]
    if samples:
        value = samples[0].value if series.kind == "throughput" else float(len(samples))
        return Check(series.key, read_pool, FOUND, value, sel, query)
    if series.op == "over_bound":
        missing = await _bound_missing(client, plan, series, pool)
        if missing is not None:
            return Check(series.key, read_pool, MISSING, None, missing[0], query, missing[1])
    for metric, msel in inputs:
        if await _count(client, series_selector(metric, msel)) > 0:
            return Check(series.key, read_pool, EMPTY, None, msel, query, await _empty_hint(client, plan, metric, msel, query_range(window, plan.spec.metrics.scrape_interval_seconds)))
    return Check(series.key, read_pool, MISSING, None, sel, query, await _missing_hint(client, plan, inputs, read_pool))


async def diagnose(plan: Plan, credential: Optional[Credential] = None) -> list[Check]:
    """Every series the plan needs, checked once against its Prometheus (with the
    credentials entry the plan names, see `check_access`). Raises MetricsUnavailable when
    Prometheus does not answer at all."""
    tp, ld = plan.spec.scaling.throughput, plan.spec.scaling.load
    async with PromClient(plan.spec.metrics.prometheus, credential=credential) as client:
        await client.instant("vector(1)")  # reachable at all? (else MetricsUnavailable, exit 3)
        checks = [await _check(client, plan, s, tp.interval_seconds, None) for s in plan_series(plan, "throughput")]
        if ld.enabled:
            for pool in worker_pools(plan):
                checks += [await _check(client, plan, s, ld.interval_seconds, pool) for s in plan_series(plan, "worker")]
        for pool, query in ready_queries(plan).items():
            samples = await client.instant(query)
            status = FOUND if samples else MISSING
            hint = "" if samples else ("no kube-state-metrics series for the scale target: the scaler counts the workers "
                                       "reporting instead (install kube-state-metrics for ready counts)")
            checks.append(Check("ready_replicas", pool, status, samples[0].value if samples else None, "", query, hint))
    return checks


def exit_status(checks: list[Check]) -> int:
    """0 when nothing is missing, else 2 (ready counts have a fallback and do not count)."""
    return 2 if any(c.status == MISSING and c.series != "ready_replicas" for c in checks) else 0


def _format(c: Check) -> str:
    where = f" [{c.pool}]" if c.pool else ""
    value = "" if c.value is None else f" = {c.value:g}"
    lines = [f"{c.status.upper():8} {c.series}{where}{value}", f"         query: {c.query}"]
    if c.selector:
        lines.insert(1, f"         selector: {c.selector}")
    if c.hint:
        lines.append(f"         hint: {c.hint}")
    return "\n".join(lines)


def report(plan: Plan, checks: list[Check]) -> None:
    """The text report of one plan's checks, on stdout."""
    click.echo(f"plan {plan.name} (source {plan.spec.metrics.source}, Prometheus {plan.spec.metrics.prometheus.url})")
    for c in checks:
        click.echo(_format(c))
    counts = {s: sum(1 for c in checks if c.status == s) for s in (FOUND, EMPTY, MISSING)}
    click.echo(f"{counts[FOUND]} found, {counts[EMPTY]} empty, {counts[MISSING]} missing")


def checked(plan: Plan, plan_file: str, credentials_file: Optional[str]) -> list[Check]:
    """`diagnose` with the credentials entry the plan names; MetricsUnavailable (exit 3)
    naming the Prometheus when it cannot be reached."""
    credentials = load_credentials(credentials_file) if credentials_file else None
    credential = check_access(plan.spec.metrics.prometheus, plan_file, credentials)
    try:
        return asyncio.run(diagnose(plan, credential))
    except MetricsUnavailable as exc:
        raise MetricsUnavailable(f"Prometheus {plan.spec.metrics.prometheus.url} unreachable: {exc}") from None


def check_plans(plans: list[tuple[Plan, str]], credentials_file: Optional[str] = None) -> int:
    """`dynplan validate --prometheus`: the report of every (plan, file), and the exit
    status of the worst (0 or 2; an unreachable Prometheus raises, exit 3)."""
    status = 0
    for plan, plan_file in plans:
        checks = checked(plan, plan_file, credentials_file)
        report(plan, checks)
        status = max(status, exit_status(checks))
    return status


@click.command()
@click.option("-f", "--file", "plan_file", required=True, type=click.Path(dir_okay=False), help="the plan file")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--credentials", "credentials_file", type=click.Path(dir_okay=False), help="The scaler's credentials file (as dynplan serve --credentials), for a plan that names an entry.")
@handle_errors
def doctor(plan_file: str, output: str, credentials_file: Optional[str]) -> None:
    """Check that Prometheus has every series PLAN needs: found / empty / missing, with the
    selector, the query and a hint. Exit 0 nothing missing, 2 missing, 3 unreachable."""
    from scaler.planfile import load_plan

    plan = load_plan(plan_file, runtime=False).plan
    checks = checked(plan, plan_file, credentials_file)
    if output == "json":
        click.echo(json.dumps({"plan": plan.name, "source": plan.spec.metrics.source, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        report(plan, checks)
    raise SystemExit(exit_status(checks))
