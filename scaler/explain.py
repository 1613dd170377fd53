"""`dynplan explain -f PLAN`: the decision the scaler would make now, with every input.

It reads Prometheus once the way `dynplan serve` starts up (the last N throughput windows
on the same grid, replayed through the planner to warm the predictors), so its answer is
the scaler's answer for the latest closed window. Advisory only: nothing is changed.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import Any, Optional

import click

from .clikit import handle_errors
from .core.decision import Decision
from .errors import FieldError, InputError


def parse_time(value: str) -> float:
    """Unix seconds or ISO 8601 (naive = UTC)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError([FieldError("--at", "", f"{value!r} is neither Unix seconds nor ISO 8601")]) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


async def explain_decision(plan_file: str, at: Optional[float]) -> dict[str, Any]:
    """Load the plan, read Prometheus, decide; return the explanation document."""
    from .planfile import load_plan
    from .prom.client import PromClient
    from .service.loop import LoopSettings, PlanLoop, PromReader, grid_end

    loaded = load_plan(plan_file)
    client = PromClient(loaded.plan.spec.metrics.prometheus, max_concurrency=4)
    try:
        clock = (lambda: at) if at is not None else time.time
        loop = PlanLoop(loaded, PromReader(client), settings=LoopSettings(), clock=clock)
        if loop.tp_interval is not None:
            end = grid_end(loop.clock() - loop.settle, loop.tp_interval)
            decision = await loop.warm_up(end)
            window_end: Optional[float] = end
        else:
            decision = await loop.tick_load()
            window_end = None
    finally:
        closer = getattr(client, "aclose", None) or getattr(client, "close", None)
        if closer is not None:
            result = closer()
            if asyncio.iscoroutine(result):
                await result
    return {
        "plan": loaded.plan.name,
        "namespace": loaded.plan.namespace,
        "prometheus": loaded.plan.spec.metrics.prometheus.url,
        "windowEnd": window_end,
        "windowSeconds": loop.tp_interval,
        "replayedWindows": loop.replayed,
        "decision": decision.to_dict(),
        "_decision": decision,
    }


def _fmt(value: Optional[float], spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def render_table(doc: dict[str, Any]) -> str:
    decision: Decision = doc["_decision"]
    lines = []
    when = "-" if doc["windowEnd"] is None else datetime.fromtimestamp(doc["windowEnd"], timezone.utc).isoformat()
    lines.append(f"plan {doc['namespace']}/{doc['plan']}  (Prometheus {doc['prometheus']})")
    lines.append(
        f"window ending {when}, {doc['windowSeconds'] or '-'} s; predictors warmed on {doc['replayedWindows']} window(s)"
    )
    lines.append(f"reason: {decision.reason.value}")
    lines.append("")
    lines.append(f"{'pool':<10}{'replicas':>10}{'requested':>11}{'GPUs':>7}  reasons")
    for name, p in decision.pools.items():
        lines.append(f"{name:<10}{p.replicas:>10}{p.requested:>11}{p.gpus:>7}  {','.join(r.value for r in p.reasons) or '-'}")
    budget = f" of {decision.budget_gpus}" if decision.budget_gpus is not None else ""
    lines.append(f"{'total':<10}{'':>10}{'':>11}{decision.total_gpus:>7}{budget}")
    tp = decision.throughput
    if tp is not None:
        lines.append("")
        lines.append(f"{'input':<28}{'observed':>12}{'predicted':>12}")
        rows = (
            ("rate (req/s)", tp.observed_rate, tp.predicted_rate),
            ("ISL (tokens)", tp.observed_isl, tp.predicted_isl),
            ("OSL (tokens)", tp.observed_osl, tp.predicted_osl),
            ("TTFT (ms; predicted=profiled)", tp.observed_ttft_ms, tp.profiled_ttft_ms),
            ("ITL (ms; predicted=at point)", tp.observed_itl_ms, tp.decode_itl_at_point_ms),
        )
        for label, obs, pred in rows:
            lines.append(f"{label:<28}{_fmt(obs):>12}{_fmt(pred):>12}")
        lines.append(
            f"prefill {_fmt(tp.prefill_thpt_per_gpu, '.0f')} tok/s/GPU; decode {_fmt(tp.decode_thpt_per_gpu, '.0f')} tok/s/GPU "
            f"at ITL target {_fmt(tp.decode_itl_target_ms)} ms (KV usage {_fmt(tp.decode_kv_usage_at_point)})"
        )
        cf = "on" if tp.correction_enabled else "off"
        lines.append(f"correction factors ({cf}): prefill {tp.correction_prefill:.3f}, decode {tp.correction_decode:.3f}")
        if tp.queueing_factor is not None:
            lines.append(
                f"queueing: variability factor {tp.queueing_factor:.2f} (1 = Poisson); "
                f"prefill replicas for TTFT under queueing {_fmt(tp.prefill_queueing_replicas)}"
            )
    for name, li in decision.load.items():
        lines.append(
            f"load {name}: workers {li.workers}, reason {li.reason.value}, direction {li.direction:+d}; "
            f"fit slope {_fmt(li.slope)} intercept {_fmt(li.intercept)} on {li.observations} points, "
            f"capacity/worker {_fmt(li.capacity_per_worker)}, busiest worker {_fmt(li.max_worker_load)}"
        )
    for w in decision.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


@click.command("explain")
@click.option("-f", "--file", "plan_file", required=True, type=click.Path(dir_okay=False), help="Plan file.")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--at", "at", default=None, help="Decide as of this time (Unix seconds or ISO 8601); default now.")
@handle_errors
def explain(plan_file: str, output: str, at: Optional[str]) -> None:
    """Print the decision the scaler would make now, with every input and the reason."""
    when = parse_time(at) if at is not None else None
    doc = asyncio.run(explain_decision(plan_file, when))
    if output == "json":
        out = {k: v for k, v in doc.items() if not k.startswith("_")}
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(render_table(doc))
