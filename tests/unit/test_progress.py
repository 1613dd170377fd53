"""scaler.progress.tty_progress: nothing at all unless the stream is a terminal."""

from __future__ import annotations

import io

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
