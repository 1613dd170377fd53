"""Import style, by ruff under pyproject.toml's [tool.ruff]: sorted imports (`I`) and absolute
imports only (`TID252`). Fix with `.venv/bin/ruff check --fix --unsafe-fixes scaler tests bench`."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO


def test_ruff_finds_nothing() -> None:
    # the ruff binary from the venv's ruff package (the test extra), on the repo's own config
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "scaler", "tests", "bench"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
