"""What every `dynplan` command shares: turning a DynplanError into its message and exit code.

Errors: every DynplanError becomes one line per problem on stderr and the exit code from
`scaler.errors.EXIT_CODES`; no traceback for anything the user can fix. This lives apart
from `scaler.errors`, which the pure core imports and which therefore has no click in it.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any, Callable, Optional, TypeVar

import click

from scaler.errors import DynplanError, InputError, exit_code_for

F = TypeVar("F", bound=Callable[..., Any])


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
