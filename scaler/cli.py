"""`dynplan` command line: the command group. Each command lives in its own module and
loads on first use; errors are reported the same way by all of them (`scaler.clikit`).
"""

from __future__ import annotations

import click

from scaler.clikit import LazyGroup, handle_errors

# name -> "module:attribute" of a click command
_COMMANDS: dict[str, str] = {
    "validate": "scaler.cli:validate",
    "capacity": "scaler.capacity:capacity",
    "serve": "scaler.service.cli:serve",
    "render": "scaler.render.cli:render",
    "explain": "scaler.explain:explain",
    "simulate": "scaler.sim.cli:simulate",
    "doctor": "scaler.doctor:doctor",
    "profile": "scaler.profiling.cli:profile",
}


# name -> what click's get_short_help_str() gives for it, so that shell completion lists the
# commands without importing them all (4 s for a TAB otherwise; tests/integration/test_cli_habits.py
# keeps this table equal to the commands' own help)
_SHORT_HELP: dict[str, str] = {
    "capacity": "Replicas and GPUs each pool needs for a...",
    "doctor": "Check that Prometheus has every series...",
    "explain": "Print the decision the scaler would make...",
    "profile": "Make and check profiles: sweep a live...",
    "render": "Render Kubernetes manifests and Prometheus...",
    "serve": "Serve KEDA's external scaler protocol for...",
    "simulate": "Replay a trace against simulated pools...",
    "validate": "Validate plan files (and the profiles they...",
}


class _LazyGroup(LazyGroup):
    commands_table = _COMMANDS
    completion_help = _SHORT_HELP


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dynplan")
def main() -> None:
    """dynplan: SLA-driven autoscaling for LLM inference, through KEDA."""


@click.command()
@click.argument("plans", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--prometheus", "check_prometheus", is_flag=True,
              help="Also check every series each plan needs in its Prometheus (as dynplan doctor).")
@click.option("--credentials", "credentials_file", type=click.Path(dir_okay=False),
              help="With --prometheus: the scaler's credentials file, for plans that name an entry.")
@handle_errors
def validate(plans: tuple[str, ...], check_prometheus: bool, credentials_file: str | None) -> None:
    """Validate plan files (and the profiles they reference). Exit 2 on any error; with
    --prometheus also 2 when a series is missing, 3 when Prometheus is unreachable."""
    from scaler.planfile import load_plans

    loaded = load_plans(plans)
    for lp in loaded:
        for w in lp.warnings:
            click.echo(str(w), err=True)
        click.echo(f"{lp.path}: ok ({lp.plan.spec.mode}, pools: {', '.join(lp.plan.pool_names)})")
    if check_prometheus:
        from scaler.doctor import check_plans

        raise SystemExit(check_plans([(lp.plan, str(lp.path)) for lp in loaded], credentials_file))


if __name__ == "__main__":  # pragma: no cover
    main()
