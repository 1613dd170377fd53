"""scaler.progress.tty_progress: nothing at all unless the stream is a terminal; and the
completion table in scaler.cli stays what click would compute."""

from __future__ import annotations

import io

import click

from scaler.cli import _COMMANDS, _SHORT_HELP, main
from scaler.progress import tty_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_yields_none_and_writes_nothing() -> None:
    stream = io.StringIO()
    with tty_progress("promtool", stream) as progress:
        assert progress is None
    assert stream.getvalue() == ""


def test_a_terminal_gets_one_redraw_per_step_and_a_final_newline() -> None:
    stream = _Terminal()
    with tty_progress("promtool", stream) as progress:
        assert progress is not None
        progress(1, 4, "a.rules.yaml")
        progress(1, 4, "b.rules.yaml")  # same count, new item: redrawn
        progress(4, 4, "d.rules-test.yaml")
    text = stream.getvalue()
    assert "promtool  [#########---------------------------]  1/4  a.rules.yaml" in text
    assert "1/4  b.rules.yaml" in text
    assert "[####################################]  4/4  d.rules-test.yaml" in text
    assert text.endswith("\n")


def test_no_call_no_bar() -> None:  # e.g. render without --check: not even the label
    stream = _Terminal()
    with tty_progress("promtool", stream):
        pass
    assert stream.getvalue() == ""


def test_short_help_table_is_the_commands_own() -> None:
    ctx = click.Context(main)
    own = {}
    for name in _COMMANDS:
        cmd = main.get_command(ctx, name)
        assert cmd is not None
        own[name] = cmd.get_short_help_str()
    assert own == _SHORT_HELP
