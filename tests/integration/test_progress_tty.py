"""Progress bars on a terminal only: stderr on a real pty shows the bar, stdout (a pipe)
carries the report alone; in a pipe nothing is drawn at all (tests/unit/test_progress.py)."""

from __future__ import annotations

from pathlib import Path

from helpers import EXAMPLES, REPO
from ptyrun import DYNPLAN, run_on_a_pty

PLAN = str(EXAMPLES / "llama-8b-disagg.yaml")
TRACE = REPO / "tests" / "fixtures" / "traces" / "azure-llm-2023-code-head2000.csv"


def test_simulate_draws_progress_on_a_terminal_only(tmp_path: Path) -> None:
    """stderr on a pty: the bar, one redraw per step; stdout (a pipe) carries the report alone.
    (In a pipe tty_progress yields None and compare() runs as before: tests/unit/test_progress.py.)"""
    trace = tmp_path / "trace.csv"  # 300 requests: the run is about importing, not simulating
    trace.write_text("".join(TRACE.read_text().splitlines(keepends=True)[:301]))
    argv = [*DYNPLAN, "simulate", "-f", PLAN, "--trace", str(trace), "--policy", "static:2", "--policy", "plan"]
    code, out, text = run_on_a_pty(argv)
    assert code == 0, text
    assert out.startswith("plan llama-8b: 300 requests") and "static:2" in out
    assert "simulating" not in out and "\r" not in out and "\x1b" not in out
    # oracle, static:2, plan: three steps, each drawn with what runs, then the full bar
    assert "simulating  [------------------------------------]  0/3  oracle" in text, text
    for step in ("1/3  static:2", "2/3  plan", "[####################################]  3/3"):
        assert step in text, text
