"""What every `dynplan` command shares: turning a DynplanError into its message and exit code.

Errors: every DynplanError becomes one line per problem on stderr and the exit code from
`scaler.errors.EXIT_CODES`; no traceback for anything the user can fix. This lives apart
from `scaler.errors`, which the pure core imports and which therefore has no click in it.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
import time
from datetime import datetime
from typing import Any, Callable, Optional, TypeVar

import click
from click.shell_completion import CompletionItem

from scaler.errors import DynplanError, InputError, exit_code_for

F = TypeVar("F", bound=Callable[..., Any])


class LazyGroup(click.Group):
    """A command group whose commands load on first use: `commands` maps each name to its
    "module:attribute"; `completion_help` (name -> what click's get_short_help_str() gives) lets
    shell completion list them without importing them all; `label` prefixes the name in
    the error for a command whose module is absent ("profile sweep")."""

    commands_table: dict[str, str] = {}
    completion_help: dict[str, str] = {}
    label: str = ""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands_table)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        if not self.completion_help:
            return super().shell_complete(ctx, incomplete)
        items = [CompletionItem(n, help=self.completion_help.get(n)) for n in self.list_commands(ctx) if n.startswith(incomplete)]
        # the group's own options (--help, --version), as click.Group adds them
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = self.commands_table.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            command: click.Command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:  # a command whose module is absent
            shown = f"{self.label} {name}" if self.label else name
            raise click.ClickException(f"command {shown!r} is not available: {exc}") from None
        return command


class FiniteFloat(click.ParamType):
    """A float option in [low, high]: never inf or NaN (click's FloatRange lets NaN through,
    and the core's arithmetic has no answer for either), with the range in the message."""

    name = "float"

    def __init__(self, low: float, high: float, *, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        lo_ok = x > self.low if self.low_open else x >= self.low
        if not (math.isfinite(x) and lo_ok and x <= self.high):  # NaN fails every comparison
            bracket = "(" if self.low_open else "["
            self.fail(f"{value!r} is not a finite number in {bracket}{self.low:g}, {self.high:g}]", param, ctx)
        return x


class Instant(click.ParamType):
    """A point in time, for every command that takes one (explain --at, profile learn
    --until): `now`, Unix seconds, or an RFC 3339 time with its zone (`2026-12-01T10:00:00Z`,
    `...+01:00`) -> Unix seconds. A time without a zone is refused rather than guessed."""

    name = "time"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        if text == "now":
            return time.time()
        try:
            t = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                self.fail(f"{value!r} is not 'now', Unix seconds or an RFC 3339 time", param, ctx)
            if dt.tzinfo is None:
                self.fail(f"{value!r} has no time zone (add Z for UTC)", param, ctx)
            t = dt.timestamp()
        if not (math.isfinite(t) and 0 < t < 1e11):
            self.fail(f"{value!r} is not a time", param, ctx)
        return t


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
