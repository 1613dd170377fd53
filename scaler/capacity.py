"""`dynplan capacity -f PLAN --rate R`: replicas and GPUs each pool needs for a steady rate.

The planner's own sizing (`core.planner.capacity`) from the plan's profile; no Prometheus.
"""

from __future__ import annotations

import json

import click

from scaler.clikit import FiniteFloat, handle_errors

# Far beyond any deployment (a million requests/s, ten-million-token prompts), and small
# enough that the sizing arithmetic stays in integers: 1e308 req/s has no replica count.
MAX_RATE = 1e6
MAX_TOKENS = 1e7


@click.command("capacity")
@click.option("-f", "--file", "plan_file", required=True, type=click.Path(dir_okay=False), help="Plan file.")
@click.option("--rate", required=True, type=FiniteFloat(0, MAX_RATE), help=f"Steady arrival rate, requests/s (at most {MAX_RATE:g}).")
@click.option("--isl", type=FiniteFloat(1, MAX_TOKENS), help="Mean input length, tokens (default spec.workload.isl).")
@click.option("--osl", type=FiniteFloat(1, MAX_TOKENS), help="Mean output length, tokens (default spec.workload.osl).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@handle_errors
def capacity(plan_file: str, rate: float, isl: float | None, osl: float | None, output: str) -> None:
    """Replicas and GPUs each pool needs for a steady request rate."""
    from scaler.core import planner
    from scaler.errors import FieldError, PlanError
    from scaler.planfile import load_plan

    lp = load_plan(plan_file)
    if lp.model is None:
        raise PlanError([FieldError(plan_file, "spec.profile", "capacity needs a profile (spec.profile or spec.profileData)")])
    plan = lp.plan
    isl = isl if isl is not None else plan.spec.workload.isl
    osl = osl if osl is not None else plan.spec.workload.osl
    decision = planner.capacity(plan, lp.model, rate, isl, osl)
    if output == "json":
        reasons = {n: [r.value for r in p.reasons] for n, p in decision.pools.items()}
        doc = {
            "plan": plan.name,
            "input": {"rate": rate, "isl": isl, "osl": osl},
            "pools": {n: {"replicas": p.replicas, "gpus": p.gpus, "requested": p.requested} for n, p in decision.pools.items()},
            "totalGpus": decision.total_gpus,
            "budgetGpus": decision.budget_gpus,
            "reason": decision.reason.value,
            "poolReasons": reasons,
            "inputs": decision.to_dict()["throughput"],
            "warnings": list(decision.warnings),
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=False))
        return
    tp = decision.throughput
    assert tp is not None
    click.echo(
        f"plan {plan.name}: {rate:g} req/s, ISL {isl:g}, OSL {osl:g}, SLA TTFT {plan.spec.sla.ttft_ms:g} ms / "
        f"ITL {plan.spec.sla.itl_ms:g} ms for {plan.spec.sla.attainment:.2%} of requests "
        f"(sizing: {plan.spec.scaling.throughput.sizing})"
    )
    click.echo(f"{'pool':<10}{'replicas':>10}{'GPUs':>8}{'requested':>11}  reasons")
    for n, p in decision.pools.items():
        click.echo(f"{n:<10}{p.replicas:>10}{p.gpus:>8}{p.requested:>11}  {','.join(r.value for r in p.reasons) or '-'}")
    budget = f" (budget {decision.budget_gpus})" if decision.budget_gpus is not None else ""
    click.echo(f"{'total':<10}{'':>10}{decision.total_gpus:>8}{budget}")
    click.echo(
        f"prefill {tp.prefill_thpt_per_gpu:.0f} tok/s/GPU at TTFT {tp.profiled_ttft_ms:.1f} ms; "
        f"decode {tp.decode_thpt_per_gpu:.0f} tok/s/GPU at ITL {tp.decode_itl_at_point_ms:.2f} ms "
        f"(KV usage {tp.decode_kv_usage_at_point:.0%})"
    )
    if tp.attainment is not None:
        click.echo(tp.attainment.summary())
    for w in decision.warnings:
        click.echo(f"warning: {w}", err=True)
