"""The `dynplan profile` command group; each subcommand loads on first use."""

from __future__ import annotations

import click

from scaler.clikit import LazyGroup

# name -> "module:attribute" of a click command
_COMMANDS: dict[str, str] = {
    "sweep": "scaler.profiling.sweep_cli:sweep",
    "learn": "scaler.profiling.learn_cli:learn",
    "check": "scaler.profiling.check_cli:check",
}


class _LazyGroup(LazyGroup):
    commands_table = _COMMANDS
    label = "profile"


@click.group(cls=_LazyGroup)
def profile() -> None:
    """Make and check profiles: sweep a live endpoint, learn from Prometheus history."""
