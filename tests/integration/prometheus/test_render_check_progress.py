"""`render manifests --check` on a terminal: one bar step per promtool run, on stderr; in a
pipe, stderr is the one summary line it always was."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import REPO
from ptyrun import DYNPLAN, run_on_a_pty

FIXTURES = REPO / "tests" / "fixtures" / "render"


def test_promtool_runs_are_steps_on_a_terminal_and_silent_in_a_pipe(tmp_path: Path) -> None:
    argv = [*DYNPLAN, "render", "manifests", "-f", str(FIXTURES / "disagg.yaml"), "-f", str(FIXTURES / "agg.yaml"),
            "--check", "-o"]
    code, out, err = run_on_a_pty([*argv, str(tmp_path / "tty")])
    assert code == 0, err
    assert out == ""
    # two rule files checked, then their two unit tests
    for step in ("promtool  [------------------------------------]  0/4", "1/4  inference.llama-disagg.rules.yaml",
                 "2/4  serving.qwen-agg.rules.yaml", "3/4  inference.llama-disagg.rules.test.yaml",
                 "[####################################]  4/4  serving.qwen-agg.rules.test.yaml"):
        assert step in err, err
    bar, after = err.split("\x1b[?25h", 1)  # click shows the cursor again when the bar closes
    after = after.lstrip("\r\n").replace("\r\n", "\n")  # the pty's line discipline writes CR LF
    assert after.endswith(f"{tmp_path / 'tty'}: 16 files, 9 objects for plan(s) llama-disagg, qwen-agg (promtool checked)\n")
    piped = subprocess.run([*argv, str(tmp_path / "pipe")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == ""
    # the warnings and the summary line, as before: no bar, no label, no control characters
    assert piped.stderr == after.replace(str(tmp_path / "tty"), str(tmp_path / "pipe"))
