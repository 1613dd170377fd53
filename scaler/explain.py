"""`dynplan explain -f PLAN`: the decision the scaler would make now, with every input.

It reads Prometheus once the way `dynplan serve` starts up (the last N throughput windows
on the same grid, replayed through the planner to warm the predictors), so its answer is
the scaler's answer for the latest closed window. Advisory only: nothing is changed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

import click

from scaler.clikit import handle_errors
from scaler.core.decision import Decision
from scaler.errors import FieldError, InputError


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


@dataclass(frozen=True)
class Explanation:
    """The decision `explain` reports and where it came from."""

    plan: str
    namespace: str
    prometheus: str                  # the Prometheus URL read
    window_end: Optional[float]      # grid time of the throughput window decided on
    window_seconds: Optional[float]  # the throughput interval (None: load-only plan)
    replayed_windows: int            # windows replayed to warm the predictors
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        """The `--output json` document."""
        return {
            "plan": self.plan,
            "namespace": self.namespace,
            "prometheus": self.prometheus,
            "windowEnd": self.window_end,
            "windowSeconds": self.window_seconds,
            "replayedWindows": self.replayed_windows,
            "decision": self.decision.to_dict(),
        }


async def explain_decision(plan_file: str, at: Optional[float], credentials_file: Optional[str] = None) -> Explanation:
    """Load the plan, read Prometheus, decide the way `dynplan serve` starts up (with the
    credentials entry the plan names from `credentials_file`, as serve's --credentials)."""
    # Imported here, not at the top: `dynplan --help` imports this module (numpy, scipy
    # and the HTTP stack load only when the command runs).
    from scaler.core.replay import latest_closed
    from scaler.planfile import load_plan
    from scaler.prom.client import PromClient
    from scaler.prom.credentials import check_access, load_credentials
    from scaler.prom.reader import PromReader
    from scaler.service.loop import LoopSettings, PlanLoop

    loaded = load_plan(plan_file)
    credentials = load_credentials(credentials_file) if credentials_file else None
    access = loaded.plan.spec.metrics.prometheus
    credential = check_access(access, plan_file, credentials)
    clock = (lambda: at) if at is not None else time.time
    async with PromClient(access, credential=credential, max_concurrency=4) as client:
        plan_loop = PlanLoop(loaded, PromReader(client), settings=LoopSettings(), clock=clock)
        interval = plan_loop.throughput_interval_seconds
        window_end: Optional[float] = None
        if interval is not None:
            window_end = latest_closed(plan_loop.clock(), interval, plan_loop.settle)
            decision = await plan_loop.warm_up(window_end)
            # a rejected newest window leaves the decision on an earlier one: name that one
            window_end = decision.timestamp or window_end
        else:
            decision = await plan_loop.tick_load()
    return Explanation(
        plan=loaded.plan.name,
        namespace=loaded.plan.namespace,
        prometheus=loaded.plan.spec.metrics.prometheus.url,
        window_end=window_end,
        window_seconds=interval,
        replayed_windows=plan_loop.replayed,
        decision=decision,
    )


def _fmt(value: Optional[float], spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def render_table(doc: Explanation) -> str:
    decision = doc.decision
    lines = []
    when = "-" if doc.window_end is None else datetime.fromtimestamp(doc.window_end, timezone.utc).isoformat()
    lines.append(f"plan {doc.namespace}/{doc.plan}  (Prometheus {doc.prometheus})")
    lines.append(
        f"window ending {when}, {doc.window_seconds or '-'} s; predictors warmed on {doc.replayed_windows} window(s)"
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
        if tp.attainment is not None:
            lines.append(tp.attainment.summary())
        if tp.queueing_factor is not None:
            lines.append(
                f"queueing: variability factor {tp.queueing_factor:.2f} (1 = Poisson); "
                f"prefill replicas for TTFT under queueing {_fmt(tp.prefill_queueing_replicas)}"
            )
    for pool, by_signal in decision.load.items():
        for signal, li in by_signal.items():
            lines.append(
                f"load {pool}.{signal}: workers {li.workers}, reason {li.reason.value}, direction {li.direction:+d}; "
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
@click.option("--credentials", "credentials_file", type=click.Path(dir_okay=False), help="The scaler's credentials file (as dynplan serve --credentials), for a plan that names an entry.")
@handle_errors
def explain(plan_file: str, output: str, at: Optional[str], credentials_file: Optional[str]) -> None:
    """Print the decision the scaler would make now, with every input and the reason."""
    from scaler.logsetup import quiet_forecasting_libraries

    quiet_forecasting_libraries()
    when = parse_time(at) if at is not None else None
    doc = asyncio.run(explain_decision(plan_file, when, credentials_file))
    if output == "json":
        click.echo(json.dumps(doc.to_dict(), indent=2))
    else:
        click.echo(render_table(doc))
