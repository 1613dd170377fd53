"""Shell completion, through real subprocesses: click's completion for the lazily loaded
command group (bash, zsh, fish), without importing every command on each TAB.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import REPO
from ptyrun import DYNPLAN
from scaler.cli import _COMMANDS

# the same, reporting at exit whether the command modules were imported
DYNPLAN_IMPORTS = [sys.executable, "-c",
                   "import atexit, sys; atexit.register(lambda: print(sorted(m for m in ('scaler.service.cli', "
                   "'scaler.sim.cli', 'scaler.render.cli', 'scaler.explain') if m in sys.modules), file=sys.stderr)); "
                   "from scaler.cli import main; main(prog_name='dynplan')"]


def _complete(shell: str, words: str, cword: str, argv: list[str] = DYNPLAN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "_DYNPLAN_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, cwd=REPO)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_source_scripts_name_the_command(shell: str) -> None:
    proc = subprocess.run(DYNPLAN, capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "_DYNPLAN_COMPLETE": f"{shell}_source"})
    assert proc.returncode == 0, proc.stderr
    assert "_DYNPLAN_COMPLETE" in proc.stdout and f"{shell}_complete" in proc.stdout


def test_commands_complete_without_importing_them() -> None:
    proc = _complete("bash", "dynplan ", "1", DYNPLAN_IMPORTS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"plain,{n}" for n in sorted(_COMMANDS)]
    assert proc.stderr.strip() == "[]"  # a TAB does not load serve's gRPC or simulate's scipy
    # zsh and fish show each command's short help
    zsh = _complete("zsh", "dynplan sim", "1").stdout.splitlines()
    assert zsh == ["plain", "simulate", "Replay a trace against simulated pools..."]
    fish = _complete("fish", "dynplan sim", "sim").stdout.splitlines()
    assert fish == ["plain,simulate\tReplay a trace against simulated pools..."]
    assert _complete("bash", "dynplan --v", "1").stdout.splitlines() == ["plain,--version"]


def test_subcommands_options_and_choices_complete() -> None:
    # inside a lazily loaded command: its options, a Choice's values, file names
    opts = _complete("bash", "dynplan render manifests --plan-c", "3").stdout.splitlines()
    assert opts == ["plain,--plan-configmap-namespace"]
    values = _complete("bash", "dynplan render manifests --plan-configmap-namespace ", "4").stdout.splitlines()
    assert values == ["plain,scaler", "plain,plan"]
    files = _complete("bash", "dynplan render manifests -f ", "4").stdout.splitlines()
    assert files == ["file,"]  # click.Path: the shell completes file names
