"""`dynplan simulate`: replay a trace against simulated pools with the planner in the loop."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from scaler.clikit import FiniteFloat, handle_errors
from scaler.errors import FieldError, PlanError
from scaler.traces import FORMATS

if TYPE_CHECKING:
    from scaler.core.interpolation import PerfModel
    from scaler.planfile import LoadedPlan
    from scaler.sim.policies import PolicySpec
    from scaler.sim.run import Comparison
    from scaler.sim.workload import Arrivals

_POLICY_HELP = (
    "plan (default), throughput-only, load-only, dynamo, llmd-slo, static:N (or static:P,D), static-sweep, "
    "oracle; repeatable"
)


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
@click.option("--trace", "trace_file", required=True, type=click.Path(dir_okay=False), help="Request trace (Mooncake JSONL, Azure CSV or BurstGPT CSV).")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="auto", show_default=True)
@click.option("--rate-scale", type=FiniteFloat(0, 1e6, low_open=True), default=1.0, show_default=True,
              help="Multiply the arrival rate by compressing time (the trace gets X times shorter).")
@click.option("--replicate", type=click.IntRange(min=1), default=1, show_default=True,
              help="K jittered copies of every request: K times the rate over the same span.")
@click.option("--replicate-jitter", type=FiniteFloat(0, 86400), default=1.0, show_default=True,
              help="Copies after the first arrive up to this many seconds later (uniform, seeded).")
@click.option("--truth-profile", type=click.Path(file_okay=False), help="Profile of the hardware to simulate (default: the plan's).")
@click.option("--startup-delay", type=FiniteFloat(0, 86400),
              help="Seconds before a new replica serves, every pool (default: each pool's startupSeconds).")
@click.option("--policy", "policies", multiple=True, help=_POLICY_HELP)
@click.option("--initial-replicas",
              help="N, P,D or min: replicas the scaling policies start with, ready (default: what each policy's "
                   "planner decides for the first interval's traffic).")
@click.option("--actuation", type=click.Choice(["keda-hpa", "none"]), default="keda-hpa", show_default=True,
              help="keda-hpa: targets go through KEDA polling and the HPA (tolerance, windows, policies); "
                   "none: applied at the tick.")
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
    startup_delay: Optional[float],
    policies: tuple[str, ...],
    initial_replicas: Optional[str],
    actuation: str,
    out_dir: Optional[str],
    plot: bool,
    seed: int,
) -> None:
    """Replay a trace against simulated pools (prefill/decode, or aggregated workers) and compare scaling policies.

    Every policy runs on the same requests; the table reports SLA attainment (requests within
    both SLAs, TTFT, ITL), latency percentiles, GPU-hours and scale events, with GPU-hours
    relative to the cheapest static fleet reaching the plan's attainment target (static-sweep)
    and to the oracle (per interval, the fewest replicas reaching the target on that
    interval's requests replayed alone, had the load been known: a lower bound on cost).
    """
    from scaler.logsetup import quiet_forecasting_libraries
    from scaler.progress import tty_progress
    from scaler.sim.run import compare

    quiet_forecasting_libraries()
    # Check everything before simulating: bad input fails fast, and nothing is half-written.
    run = _resolve(
        plan_file, trace_file, fmt, rate_scale, replicate, replicate_jitter, truth_profile, startup_delay,
        policies, initial_replicas, out_dir, plot, seed, actuation,
    )
    workload = _read_workload(run)
    plan = run.loaded.plan
    with tty_progress("simulating") as progress:  # a bar on a terminal only: pipes see no change
        cmp = compare(
            plan, run.loaded.model, run.truth, workload, run.specs,
            startup_delay_seconds=run.startup_delay, initial_replicas=run.initial, actuation=run.actuation,
            progress=progress,
        )
    ordered = {s.name: cmp.summaries[s.name] for s in run.specs if s.name in cmp.summaries}
    ordered.setdefault("oracle", cmp.summaries["oracle"])
    _print_report(run, cmp, ordered)
    if run.out is not None:
        _write_outputs(run, run.out, cmp, ordered)


# -- argument resolution ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Run:
    """The command's options, checked, with what they load (before any simulation)."""

    plan_file: str
    trace_file: str
    fmt: str
    rate_scale: float
    replicate: int
    replicate_jitter: float
    startup_delay: Optional[float]     # every pool's (None: each pool's startupSeconds)
    actuation: str
    seed: int
    plot: bool
    loaded: LoadedPlan
    specs: list[PolicySpec]
    initial: Optional[dict[str, int]]  # replicas the scaling policies start with (None: warm start)
    truth: PerfModel                   # the hardware simulated
    out: Optional[Path]

    @property
    def transform(self) -> str:
        """How the trace was made heavier, for the report."""
        text = f"rate x{self.rate_scale:g} (time compressed)" if self.rate_scale != 1 else "rate x1"
        if self.replicate > 1:
            text += f", {self.replicate} copies per request (jitter {self.replicate_jitter:g} s)"
        return text


def _resolve(
    plan_file: str,
    trace_file: str,
    fmt: str,
    rate_scale: float,
    replicate: int,
    replicate_jitter: float,
    truth_profile: Optional[str],
    startup_delay: Optional[float],
    policies: tuple[str, ...],
    initial_replicas: Optional[str],
    out_dir: Optional[str],
    plot: bool,
    seed: int,
    actuation: str = "keda-hpa",
) -> _Run:
    """Load the plan and the hardware profile and check every option (usage errors name it)."""
    from scaler.planfile import load_plan
    from scaler.sim.policies import PolicyError, parse_policy, parse_replicas

    lp = load_plan(plan_file)
    plan = lp.plan
    try:
        specs = [parse_policy(p, plan.pool_names) for p in (policies or ("plan",))]
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy") from None
    initial: Optional[dict[str, int]] = None
    if initial_replicas is not None and initial_replicas.strip() == "min":
        initial = {n: p.min_replicas for n, p in plan.pools.items()}
    elif initial_replicas is not None:
        try:
            initial = parse_replicas(initial_replicas, plan.pool_names)
        except PolicyError as exc:
            raise click.BadParameter(str(exc), param_hint="--initial-replicas") from None
    truth = lp.model
    if truth_profile is not None:
        from scaler.core.interpolation import perf_model
        from scaler.profile_io import load_profile

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
        from scaler.sim.plot import require_matplotlib

        require_matplotlib()
    out: Optional[Path] = None
    if out_dir is not None:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise click.BadParameter(f"{out_dir} exists and is not a directory", param_hint="--out")
    return _Run(
        plan_file=plan_file, trace_file=trace_file, fmt=fmt, rate_scale=rate_scale, replicate=replicate,
        replicate_jitter=replicate_jitter, startup_delay=startup_delay, actuation=actuation, seed=seed, plot=plot,
        loaded=lp, specs=specs, initial=initial, truth=truth, out=out,
    )


def _read_workload(run: _Run) -> Arrivals:
    from scaler.sim.workload import build_workload
    from scaler.traces import read_trace

    requests = read_trace(run.trace_file, run.fmt, run.rate_scale)  # type: ignore[arg-type]
    return build_workload(requests, replicate=run.replicate, seed=run.seed, jitter_seconds=run.replicate_jitter)


# -- output ----------------------------------------------------------------------------------
def _startup_text(cmp: Comparison) -> str:
    values = set(cmp.startup_seconds.values())
    if len(values) == 1:
        return f"{values.pop():g} s"
    return ", ".join(f"{p} {s:g} s" for p, s in cmp.startup_seconds.items())


def _print_report(run: _Run, cmp: Comparison, ordered: dict[str, dict[str, Any]]) -> None:
    from scaler.sim.oracle import target_attainment
    from scaler.sim.report import table

    plan = run.loaded.plan
    workload = cmp.workload
    target = target_attainment(plan)
    click.echo(
        f"plan {plan.name}: {len(workload)} requests over {workload.span_seconds / 60:.1f} min ({run.transform}); "
        f"SLA TTFT {plan.spec.sla.ttft_ms:g} ms, ITL {plan.spec.sla.itl_ms:g} ms for {100 * target:g}% of requests; "
        f"start-up {_startup_text(cmp)}; actuation {run.actuation}; hardware: {run.truth.profile.source}"
    )
    click.echo(table(ordered))
    click.echo(
        "both/TTFT ok/ITL ok: fraction of requests within both SLAs, the TTFT SLA, the ITL SLA; x static: GPU-hours "
        "over the cheapest static fleet reaching the target (static-sweep); oracle: cost lower bound (not simulated)"
    )
    sweep = cmp.static_sweep
    if sweep is not None:
        fleet = ", ".join(f"{p} {n}" for p, n in sweep.replicas.items())
        att = "-" if sweep.attainment is None else f"{100 * sweep.attainment.both:.2f}%"
        if sweep.found:
            click.echo(f"static-sweep: cheapest static fleet reaching {100 * target:g}%: {fleet} "
                       f"({att}; {sweep.runs} engine runs)")
        else:
            maxima = ", ".join(str(p.max_replicas) for p in plan.pools.values())
            click.echo(f"static-sweep: none up to the pools' maxima ({maxima}) reaches {100 * target:g}%; best seen "
                       f"{fleet} at {att} ({sweep.runs} engine runs)")
    orc = cmp.summaries["oracle"]
    if orc["infeasibleIntervals"] or orc["budgetLimitedIntervals"]:
        click.echo(
            f"oracle: {orc['infeasibleIntervals']} of {orc['intervals']} intervals cannot reach the target even at "
            f"the pools' maxima; the GPU budget cuts {orc['budgetLimitedIntervals']}"
        )


def _summary(run: _Run, cmp: Comparison, ordered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The summary.json document."""
    from scaler.sim.oracle import target_attainment

    plan = run.loaded.plan
    return {
        "plan": plan.name,
        "planFile": str(run.plan_file),
        "trace": str(run.trace_file),
        "rateScale": run.rate_scale,
        "replicate": run.replicate,
        "replicateJitterSeconds": run.replicate_jitter,
        "seed": run.seed,
        "requests": len(cmp.workload),
        "spanSeconds": round(cmp.workload.span_seconds, 3),
        "startupSeconds": dict(cmp.startup_seconds),
        "initialReplicas": run.initial if run.initial is not None else "warm",
        "actuation": run.actuation,
        "truthProfile": run.truth.profile.source,
        "sla": {"ttftMs": plan.spec.sla.ttft_ms, "itlMs": plan.spec.sla.itl_ms, "attainment": target_attainment(plan)},
        "simulationSeconds": {k: round(v, 3) for k, v in cmp.seconds.items()},
        "policies": ordered,
    }


def _write_outputs(run: _Run, out: Path, cmp: Comparison, ordered: dict[str, dict[str, Any]]) -> None:
    """summary.json, the decision logs, replicas.csv and (with --plot) simulation.png, each
    written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary.json": (json.dumps(_summary(run, cmp, ordered), indent=2) + "\n").encode()}
    for name, log in cmp.decision_logs.items():
        if log:
            files[f"decisions-{_safe(name)}.jsonl"] = "".join(json.dumps(d) + "\n" for d in log).encode()
    rows = ["policy,t_seconds,pool,desired,ready,billed"]
    for name, res in cmp.results.items():
        rows += [f"{name},{s.t:.3f},{s.pool},{s.desired},{s.ready},{s.billed}" for s in res.samples]
    files["replicas.csv"] = ("\n".join(rows) + "\n").encode()
    if run.plot:
        from scaler.sim.plot import plot_comparison

        png = out / "simulation.png"
        tmp = _tmp_name(png)
        try:
            plot_comparison(cmp, tmp, f"{run.loaded.plan.name} on {Path(run.trace_file).name}, {run.transform}")
            os.replace(tmp, png)
        finally:
            tmp.unlink(missing_ok=True)
    for name, data in files.items():
        _write_atomic(out / name, data)
    click.echo(f"wrote {out / 'summary.json'}" + (f", {out / 'simulation.png'}" if run.plot else ""))
