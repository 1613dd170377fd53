"""`dynplan profile learn -f PLAN --since 6h -o DIR`: a profile fitted from the deployment's
own Prometheus history (`learn.read_history` -> `fit.fit_profile`), its quality and coverage
printed as a table, written all or nothing (Dynamo's layout plus `measurement.json`)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import click

from scaler.clikit import FiniteFloat, Instant, handle_errors

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
MAX_SINCE_SECONDS = 366 * 86400
MEASUREMENT = "measurement.json"
METHOD = "learned from Prometheus history"


class Duration(click.ParamType):
    """`6h`, `90m`, `1d12h`, `3600s` or plain seconds -> whole seconds (at least 1)."""

    name = "duration"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            seconds = int(text)
        else:
            m = _DURATION.fullmatch(text)
            if m is None or not text:
                self.fail(f"{value!r} is not a duration like 6h, 90m, 1d12h or 3600s", param, ctx)
            d, h, mi, s = (int(g) if g else 0 for g in m.groups())
            seconds = ((d * 24 + h) * 60 + mi) * 60 + s
        if not 1 <= seconds <= MAX_SINCE_SECONDS:
            self.fail(f"{value!r} must be between 1s and {MAX_SINCE_SECONDS // 86400}d", param, ctx)
        return seconds


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(x: float) -> Optional[float]:
    return x if math.isfinite(x) else None


def write_all_or_nothing(out: Path, write: Any) -> None:
    """`write(tmp)` into a fresh directory next to `out`, then swap it in: on any error `out`
    is untouched. An existing `out` is replaced only when empty or a profile dynplan wrote
    (it has a measurement.json), so `-o .` cannot wipe a user's directory."""
    from scaler.errors import FieldError, InputError

    if out.exists() and not out.is_dir():
        raise InputError([FieldError(str(out), "-o", "exists and is not a directory")])
    if out.is_dir() and any(out.iterdir()) and not (out / MEASUREMENT).is_file():
        raise InputError([FieldError(str(out), "-o", f"exists and is not a profile dynplan wrote (no {MEASUREMENT}): choose another directory")])
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        write(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _table(fit: Any, tr: Any, plan: Any, history: Any, mkv: float, mkv_from: str) -> list[str]:
    pq, dq, cov = fit.prefill_quality, fit.decode_quality, fit.coverage
    lines = [
        f"plan {plan.name} ({plan.spec.metrics.source}, {plan.spec.mode}): {_iso(tr.start)} .. {_iso(tr.end)}, "
        f"step {tr.step}s; pods: " + ", ".join(f"{p} {n}" for p, n in sorted(history.pods.items())),
        f"prefill: {pq.samples} steps without a queue ({pq.excluded.get('queued', 0)} left out: requests waiting); "
        f"{len(fit.prefill)} points, R^2 {pq.r2:.3f}, median error {pq.median_rel_error:.1%}",
        f"{'ISL':>8} {'ISL range':>13} {'samples':>8} {'TTFT ms':>9} {'median':>9} {'tok/s/GPU':>10} {'error':>7}",
    ]
    for p in fit.prefill:
        lines.append(f"{p.isl:>8.0f} {f'{p.isl_lo:.0f}-{p.isl_hi:.0f}':>13} {p.samples:>8} {p.ttft_ms:>9.2f} "
                     f"{p.median_ttft_ms:>9.2f} {p.thpt_per_gpu:>10.0f} {p.rel_error:>7.1%}")
    lines += [
        f"decode: {dq.samples} steps; {len(fit.decode)} points, R^2 {dq.r2:.3f}, median error {dq.median_rel_error:.1%}; "
        f"max_kv_tokens {mkv:.0f} ({mkv_from})",
        f"{'context':>8} {'KV usage':>9} {'samples':>8} {'ITL ms':>9} {'median':>9} {'tok/s/GPU':>10} {'error':>7}",
    ]
    for d in fit.decode:
        lines.append(f"{d.context:>8.0f} {d.kv_usage:>9.3f} {d.samples:>8} {d.itl_ms:>9.2f} {d.median_itl_ms:>9.2f} "
                     f"{d.thpt_per_gpu:>10.0f} {d.rel_error:>7.1%}")
    lines.append(
        f"coverage: ISL {cov.isl_samples[0]:.0f}-{cov.isl_samples[1]:.0f} (points {cov.isl_points[0]:.0f}-{cov.isl_points[1]:.0f}); "
        f"context {cov.context_samples[0]:.0f}-{cov.context_samples[1]:.0f}; KV usage {cov.kv_samples[0]:.2f}-{cov.kv_samples[1]:.2f} "
        f"(points {cov.kv_points[0]:.2f}-{cov.kv_points[1]:.2f})"
    )
    lines.append("  KV usage per context row: " + "; ".join(f"{lo:.0f}-{hi:.0f} up to {top:.2f}" for lo, hi, top in cov.kv_per_row))
    return lines


def measurement(fit: Any, tr: Any, plan: Any, plan_file: str, history: Any, mkv: float, mkv_from: str, url: str) -> dict:
    """The measurement.json document: how the profile was made and how well it fits."""
    pq, dq, cov = fit.prefill_quality, fit.decode_quality, fit.coverage
    return {
        "method": METHOD,
        "source": plan.spec.metrics.source,
        "plan": {"name": plan.name, "namespace": plan.namespace, "file": plan_file, "mode": plan.spec.mode},
        "prometheus": url,
        "timeRange": {"start": _iso(tr.start), "end": _iso(tr.end), "stepSeconds": tr.step, "steps": tr.steps},
        "pods": dict(history.pods),
        "maxKvTokens": {"value": mkv, "from": mkv_from},
        "samples": {
            "prefill": {"used": pq.samples, "excluded": dict(pq.excluded)},
            "decode": {"used": dq.samples, "excluded": dict(dq.excluded)},
        },
        "coverage": {
            "islSamples": list(cov.isl_samples), "islPoints": list(cov.isl_points),
            "contextSamples": list(cov.context_samples), "contextPoints": list(cov.context_points),
            "kvUsageSamples": list(cov.kv_samples), "kvUsagePoints": list(cov.kv_points),
            "kvUsagePerContextRow": [{"contextLo": lo, "contextHi": hi, "kvUsageMax": top} for lo, hi, top in cov.kv_per_row],
        },
        "quality": {
            "prefill": {"r2": _num(pq.r2), "medianRelError": _num(pq.median_rel_error), "isotonicAdjusted": pq.adjusted_points,
                        "points": [{"isl": p.isl, "samples": p.samples, "relError": _num(p.rel_error)} for p in fit.prefill]},
            "decode": {"r2": _num(dq.r2), "medianRelError": _num(dq.median_rel_error), "isotonicAdjusted": dq.adjusted_points,
                       "points": [{"kvUsage": d.kv_usage, "context": d.context, "samples": d.samples, "relError": _num(d.rel_error)}
                                  for d in fit.decode]},
        },
        "warnings": list(fit.warnings) + list(history.warnings),
    }


def load_plan_without_profile(plan_file: str) -> Any:
    """The plan, its profile reference aside: the profile is what learning makes, so a plan
    whose spec.profile does not exist yet (or that has none) is fine; every other error stands."""
    from scaler.bounded_input import load_yaml_documents, read_regular_file
    from scaler.core.plan import Plan
    from scaler.errors import PlanError
    from scaler.planfile import MAX_PLAN_BYTES, MAX_PLAN_DEPTH, MAX_PLAN_NODES, load_plan

    try:
        return load_plan(plan_file, runtime=False).plan
    except PlanError as exc:
        if any(e.path != "spec.profile" for e in exc.errors):
            raise
    # only spec.profile failed: the document parsed and validated as a Plan
    text = read_regular_file(Path(plan_file), MAX_PLAN_BYTES).decode("utf-8")
    docs = [d for d in load_yaml_documents(text, max_depth=MAX_PLAN_DEPTH, max_nodes=MAX_PLAN_NODES) if d is not None]
    return Plan.model_validate(docs[0])


@click.command("learn")
@click.option("-f", "--file", "plan_file", required=True, type=click.Path(dir_okay=False), help="The plan whose deployment's history is read.")
@click.option("--since", required=True, type=Duration(), help="How far back to read, e.g. 6h, 90m, 2d.")
@click.option("--until", "until", type=Instant(), default="now", show_default=True, help="End of the range: now, Unix seconds or RFC 3339.")
@click.option("--step", type=Duration(), default="60s", show_default=True, help="One sample per pod per step (at least two scrapes).")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Profile directory to write (all or nothing).")
@click.option("--prometheus-url", help="Read this Prometheus instead of the plan's spec.metrics.prometheus.url.")
@click.option("--credentials", "credentials_file", type=click.Path(dir_okay=False), help="The scaler's credentials file, for a plan that names an entry.")
@click.option("--max-kv-tokens", type=FiniteFloat(1, 1e12), help="The decode engine's KV cache size in tokens, when its series do not say.")
@click.option("--kv-block-size", type=click.IntRange(1, 1 << 20), help="Source dynamo: tokens per KV block (the frontend reports blocks).")
@click.option("--min-kv-coverage", type=FiniteFloat(0, 1), default=0.3, show_default=True, help="Refuse a history whose highest KV-usage point is below this.")
@click.option("--min-samples", type=click.IntRange(1, 1000), default=3, show_default=True, help="Samples per ISL bin and per (context, KV usage) cell.")
@handle_errors
def learn(
    plan_file: str, since: int, until: float, step: int, out: str, prometheus_url: Optional[str],
    credentials_file: Optional[str], max_kv_tokens: Optional[float], kv_block_size: Optional[int], min_kv_coverage: float,
    min_samples: int,
) -> None:
    """Fit a profile from the deployment's own Prometheus history (per-pod engine series, or
    Dynamo's per-worker router gauges with --kv-block-size and --max-kv-tokens)."""
    from scaler.errors import MetricsUnavailable
    from scaler.profile_io import load_profile, write_profile
    from scaler.profiling import learn as lrn
    from scaler.profiling.fit import FitOptions, fit_profile
    from scaler.prom.client import PromClient
    from scaler.prom.credentials import check_access, load_credentials

    plan = load_plan_without_profile(plan_file)
    if since < step:
        since = step
    tr = lrn.time_range(until, since, step)
    frontend_kv = lrn.check_plan(plan, plan_file, tr, max_kv_tokens, kv_block_size)
    access = plan.spec.metrics.prometheus
    # a history read is one long query per series, not a live tick: allow it more time
    access = access.model_copy(update={"timeout_seconds": max(access.timeout_seconds, 30.0),
                                       **({"url": prometheus_url} if prometheus_url else {})})
    credentials = load_credentials(credentials_file) if credentials_file else None
    credential = check_access(access, plan_file, credentials)

    async def read() -> Any:
        async with PromClient(access, credential=credential) as client:
            return await lrn.read_history(client, plan, tr, frontend_kv)

    try:
        history = asyncio.run(read())
    except MetricsUnavailable as exc:
        raise MetricsUnavailable(f"Prometheus {access.url}: {exc}") from None
    mkv, mkv_from = lrn.max_kv_tokens(plan, plan_file, history, max_kv_tokens)
    pre_pool, dec_pool = lrn.pools_of(plan)
    opts = FitOptions(
        max_kv_tokens=mkv, gpus_prefill=plan.pool(pre_pool).gpus_per_replica, gpus_decode=plan.pool(dec_pool).gpus_per_replica,
        min_samples=min_samples, min_kv_coverage=min_kv_coverage,
    )
    fit = fit_profile(history.prefill, history.decode, opts, source=out)
    doc = measurement(fit, tr, plan, plan_file, history, mkv, mkv_from, access.url)

    def write(tmp: Path) -> None:
        write_profile(fit.profile, tmp)
        (tmp / MEASUREMENT).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        load_profile(tmp)  # what every consumer will read: it must load

    write_all_or_nothing(Path(out), write)
    for line in _table(fit, tr, plan, history, mkv, mkv_from):
        click.echo(line)
    for w in doc["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"wrote {out}: the profile in Dynamo's layout (JSON and npz) and {MEASUREMENT}")
