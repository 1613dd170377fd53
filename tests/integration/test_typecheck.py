"""The package type-checks cleanly under pyproject.toml's [tool.mypy] (untyped defs included)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # about 15 s: mypy on the whole package, cold cache


def test_mypy_reports_no_errors(tmp_path: Path) -> None:
    # A fresh cache per run: what CI's clean checkout sees, and no races with other
    # mypy runs sharing the tree's .mypy_cache.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "mypy-cache"), "--no-error-summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mypy exited {proc.returncode}:\n{output}"
    assert output.strip() == "", f"mypy printed:\n{output}"
