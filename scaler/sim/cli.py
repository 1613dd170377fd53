"""`dynplan simulate`: replay a trace against simulated pools with the planner in the loop."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

import click

from ..clikit import handle_errors
from ..errors import FieldError, PlanError

_POLICY_HELP = "plan (default), throughput-only, load-only, static:N (or static:P,D), oracle; repeatable"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _tmp_name(path: Path) -> Path:
    # a plain open() keeps the user's umask (mkstemp would make the file owner-only)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _tmp_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@click.command("simulate")
@click.option("-f", "--file", "plan_file", required=True, type=click.Path(dir_okay=False), help="Plan file.")
@click.option("--trace", "trace_file", required=True, type=click.Path(dir_okay=False), help="Request trace (Mooncake JSONL or Azure CSV).")
@click.option("--format", "fmt", type=click.Choice(["auto", "mooncake", "azure"]), default="auto", show_default=True)
@click.option("--rate-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Multiply the arrival rate by compressing time (the trace gets X times shorter).")
@click.option("--replicate", type=click.IntRange(min=1), default=1, show_default=True,
              help="K jittered copies of every request: K times the rate over the same span.")
@click.option("--replicate-jitter", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Copies after the first arrive up to this many seconds later (uniform, seeded).")
@click.option("--truth-profile", type=click.Path(file_okay=False), help="Profile of the hardware to simulate (default: the plan's).")
@click.option("--startup-delay", type=click.FloatRange(min=0), default=60.0, show_default=True, help="Seconds before a new replica serves.")
@click.option("--policy", "policies", multiple=True, help=_POLICY_HELP)
@click.option("--initial-replicas", help="N or P,D: replicas the scaling policies start with, ready (default: each pool's minReplicas).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write summary.json, simulation.png, replicas.csv and decision logs here.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="With --out, draw simulation.png (needs dynplan[plot]).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice (replication jitter).")
@handle_errors
def simulate(
    plan_file: str,
    trace_file: str,
    fmt: str,
    rate_scale: float,
    replicate: int,
    replicate_jitter: float,
    truth_profile: Optional[str],
    startup_delay: float,
    policies: tuple[str, ...],
    initial_replicas: Optional[str],
    out_dir: Optional[str],
    plot: bool,
    seed: int,
) -> None:
    """Replay a trace against simulated pools (prefill/decode, or aggregated workers) and compare scaling policies.

    Every policy runs on the same requests; the table reports SLA attainment, latency
    percentiles, goodput, GPU-hours and scale events, with GPU-hours relative to the oracle
    (per interval, the fewest replicas that hold the mean SLA on that interval's requests
    replayed alone, had the load been known: a lower bound on cost).
    """
    from ..planfile import load_plan
    from ..traces import read_trace
    from .policies import PolicyError, parse_policy, parse_replicas
    from .run import compare
    from .workload import build_workload

    # Check everything before simulating: bad input fails fast, and nothing is half-written.
    lp = load_plan(plan_file)
    plan = lp.plan
    try:
        specs = [parse_policy(p, plan.pool_names) for p in (policies or ("plan",))]
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy") from None
    initial: Optional[dict[str, int]] = None
    if initial_replicas is not None:
        try:
            initial = parse_replicas(initial_replicas, plan.pool_names)
        except PolicyError as exc:
            raise click.BadParameter(str(exc), param_hint="--initial-replicas") from None
    truth = lp.model
    if truth_profile is not None:
        from ..core.interpolation import perf_model
        from ..profile_io import load_profile

        truth = perf_model(load_profile(truth_profile, field_path="--truth-profile"))
    if truth is None:
        raise PlanError(
            [
                FieldError(
                    plan_file,
                    "spec.profile",
                    "the plan has no profile: pass --truth-profile DIR (the profile of the hardware to simulate)",
                )
            ]
        )
    if plot and out_dir is not None:
        from .plot import require_matplotlib

        require_matplotlib()
    out: Optional[Path] = None
    if out_dir is not None:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise click.BadParameter(f"{out_dir} exists and is not a directory", param_hint="--out")
    requests = read_trace(trace_file, fmt, rate_scale)  # type: ignore[arg-type]
    workload = build_workload(requests, replicate=replicate, seed=seed, jitter_seconds=replicate_jitter)

    cmp = compare(plan, lp.model, truth, workload, specs, startup_delay_seconds=startup_delay, initial_replicas=initial)

    from .report import table

    ordered = {s.name: cmp.summaries[s.name] for s in specs if s.name in cmp.summaries}
    ordered.setdefault("oracle", cmp.summaries["oracle"])
    transform = f"rate x{rate_scale:g} (time compressed)" if rate_scale != 1 else "rate x1"
    if replicate > 1:
        transform += f", {replicate} copies per request (jitter {replicate_jitter:g} s)"
    click.echo(
        f"plan {plan.name}: {len(workload)} requests over {workload.span_seconds / 60:.1f} min ({transform}); "
        f"SLA TTFT {plan.spec.sla.ttft_ms:g} ms, ITL {plan.spec.sla.itl_ms:g} ms; "
        f"start-up delay {startup_delay:g} s; hardware: {truth.profile.source}"
    )
    click.echo(table(ordered))
    click.echo(
        "attainment: fraction of requests within the SLA; 'min ok': fraction of 1-minute windows whose means "
        "meet both; oracle: cost lower bound (not simulated)"
    )
    orc = cmp.summaries["oracle"]
    if orc["infeasibleIntervals"] or orc["budgetLimitedIntervals"]:
        click.echo(
            f"oracle: {orc['infeasibleIntervals']} of {orc['intervals']} intervals cannot hold the SLA even at the "
            f"pools' maxima; the GPU budget cuts {orc['budgetLimitedIntervals']}"
        )
    if out is None:
        return
    doc: dict[str, Any] = {
        "plan": plan.name,
        "planFile": str(plan_file),
        "trace": str(trace_file),
        "rateScale": rate_scale,
        "replicate": replicate,
        "replicateJitterSeconds": replicate_jitter,
        "seed": seed,
        "requests": len(workload),
        "spanSeconds": round(workload.span_seconds, 3),
        "startupDelaySeconds": startup_delay,
        "initialReplicas": initial if initial is not None else {n: p.min_replicas for n, p in plan.pools.items()},
        "truthProfile": truth.profile.source,
        "sla": {"ttftMs": plan.spec.sla.ttft_ms, "itlMs": plan.spec.sla.itl_ms},
        "simulationSeconds": {k: round(v, 3) for k, v in cmp.seconds.items()},
        "policies": ordered,
    }
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary.json": (json.dumps(doc, indent=2) + "\n").encode()}
    for name, log in cmp.decision_logs.items():
        if log:
            files[f"decisions-{_safe(name)}.jsonl"] = "".join(json.dumps(d) + "\n" for d in log).encode()
    rows = ["policy,t_seconds,pool,desired,ready,billed"]
    for name, res in cmp.results.items():
        rows += [f"{name},{s.t:.3f},{s.pool},{s.desired},{s.ready},{s.billed}" for s in res.samples]
    files["replicas.csv"] = ("\n".join(rows) + "\n").encode()
    if plot:
        from .plot import plot_comparison

        png = out / "simulation.png"
        tmp = _tmp_name(png)
        try:
            plot_comparison(cmp, tmp, f"{plan.name} on {Path(trace_file).name}, {transform}")
            os.replace(tmp, png)
        finally:
            tmp.unlink(missing_ok=True)
    for name, data in files.items():
        _write_atomic(out / name, data)
    click.echo(f"wrote {out / 'summary.json'}" + (f", {out / 'simulation.png'}" if plot else ""))
