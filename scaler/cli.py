"""`dynplan` command line. Commands live in their own modules and load on first use.

Errors: every DynplanError becomes one line per problem on stderr and the exit code from
`scaler.errors.EXIT_CODES`; no traceback for anything the user can fix.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from typing import Any, Callable, TypeVar

import click

from .errors import DynplanError, InputError, exit_code_for

F = TypeVar("F", bound=Callable[..., Any])

# name -> "module:attribute" of a click command
_COMMANDS: dict[str, str] = {
    "validate": "scaler.cli:validate",
    "capacity": "scaler.cli:capacity_cmd",
    "serve": "scaler.service.cli:serve",
    "render": "scaler.render.cli:render",
    "explain": "scaler.explain:explain",
    "simulate": "scaler.sim.cli:simulate",
}


def report_error(exc: DynplanError) -> int:
    """Print an error the user can act on; return its exit code."""
    if isinstance(exc, InputError):
        for err in exc.errors:
            click.echo(f"error: {err}" if err.severity == "error" else str(err), err=True)
    else:
        click.echo(f"error: {exc}", err=True)
    return exit_code_for(exc)


def handle_errors(func: F) -> F:
    """Decorator for commands: DynplanError -> message on stderr + mapped exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DynplanError as exc:
            sys.exit(report_error(exc))

    return wrapper  # type: ignore[return-value]


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:  # a command whose module is absent
            raise click.ClickException(f"command {name!r} is not available: {exc}") from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dynplan")
def main() -> None:
    """dynplan: SLA-driven autoscaling for LLM inference, through KEDA."""


@click.command()
@click.argument("plans", nargs=-1, required=True, type=click.Path(dir_okay=False))
@handle_errors
def validate(plans: tuple[str, ...]) -> None:
    """Validate plan files (and the profiles they reference). Exit 2 on any error."""
    from .planfile import load_plans

    loaded = load_plans(plans)
    for lp in loaded:
        for w in lp.warnings:
            click.echo(str(w), err=True)
        click.echo(f"{lp.path}: ok ({lp.plan.spec.mode}, pools: {', '.join(lp.plan.pool_names)})")


@click.command("capacity")
@click.option("-f", "--file", "plan_file", required=True, type=click.Path(dir_okay=False), help="Plan file.")
@click.option("--rate", required=True, type=click.FloatRange(min=0), help="Steady arrival rate, requests/s.")
@click.option("--isl", type=click.FloatRange(min=0, min_open=True), help="Mean input length (default spec.workload.isl).")
@click.option("--osl", type=click.FloatRange(min=0, min_open=True), help="Mean output length (default spec.workload.osl).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@handle_errors
def capacity_cmd(plan_file: str, rate: float, isl: float | None, osl: float | None, output: str) -> None:
    """Replicas and GPUs each pool needs for a steady request rate."""
    from .core.planner import capacity
    from .errors import FieldError, PlanError
    from .planfile import load_plan

    lp = load_plan(plan_file)
    if lp.model is None:
        raise PlanError([FieldError(plan_file, "spec.profile", "capacity needs a profile (spec.profile or spec.profileData)")])
    plan = lp.plan
    isl = isl if isl is not None else plan.spec.workload.isl
    osl = osl if osl is not None else plan.spec.workload.osl
    decision = capacity(plan, lp.model, rate, isl, osl)
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
    click.echo(f"plan {plan.name}: {rate:g} req/s, ISL {isl:g}, OSL {osl:g}, SLA TTFT {plan.spec.sla.ttft_ms:g} ms / ITL {plan.spec.sla.itl_ms:g} ms")
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
    for w in decision.warnings:
        click.echo(f"warning: {w}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
