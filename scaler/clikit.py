"""What every `dynplan` command shares: turning a DynplanError into its message and exit code.

Errors: every DynplanError becomes one line per problem on stderr and the exit code from
`scaler.errors.EXIT_CODES`; no traceback for anything the user can fix. This lives apart
from `scaler.errors`, which the pure core imports and which therefore has no click in it.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import click

from scaler.errors import DynplanError, InputError, exit_code_for

F = TypeVar("F", bound=Callable[..., Any])


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
