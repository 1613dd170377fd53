"""A progress bar on stderr for long commands, only when stderr is a terminal: in pipes, CI
and logs nothing is written, so their output is byte-identical with or without it.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Optional, TextIO

import click

if TYPE_CHECKING:  # the class click.progressbar returns
    from click._termui_impl import ProgressBar

# (steps done, steps in all, what is running or was just done)
Progress = Callable[[int, int, str], None]


@contextmanager
def tty_progress(label: str, stream: Optional[TextIO] = None) -> Iterator[Optional[Progress]]:
    """Yield a `Progress` callback drawing a click progress bar on `stream` (stderr), or None
    when it is not a terminal (click would still print the label once there)."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield None
        return
    bars: list[Callable[[int, str], None]] = []  # the bar is made at the first call, when the total is known
    with ExitStack() as stack:

        def update(done: int, total: int, item: str) -> None:
            if not bars:
                shown = [""]
                bar: ProgressBar[int] = stack.enter_context(click.progressbar(
                    length=max(total, 1), label=label, file=out, show_pos=True, show_eta=False,
                    item_show_func=lambda _: shown[0],
                ))

                def step(to: int, what: str) -> None:
                    shown[0] = what
                    if to > bar.pos:
                        bar.update(to - bar.pos)
                    else:  # no step, a new item (update() would not redraw)
                        bar.render_progress()

                bars.append(step)
            bars[0](done, item)

        yield update
