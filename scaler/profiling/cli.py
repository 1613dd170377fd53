"""The `dynplan profile` command group; each subcommand loads on first use."""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command
_COMMANDS: dict[str, str] = {
    "sweep": "scaler.profiling.sweep_cli:sweep",
    "learn": "scaler.profiling.learn_cli:learn",
    "check": "scaler.profiling.check_cli:check",
}


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
            raise click.ClickException(f"command 'profile {name}' is not available: {exc}") from None


@click.group(cls=_LazyGroup)
def profile() -> None:
    """Make and check profiles: sweep a live endpoint, learn from Prometheus history."""
