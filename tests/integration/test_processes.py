"""What only a fresh interpreter shows: a command's exit status and stderr as a user sees
them, and which modules an import really loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import EXAMPLES


def test_validate_subprocess_exit_codes_and_no_traceback(tmp_path: Path) -> None:
    # A real process: exit status and stderr as a user sees them.
    good = subprocess.run(
        [sys.executable, "-m", "scaler.cli", "validate", str(EXAMPLES / "llama-8b-disagg.yaml")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert good.returncode == 0, good.stderr
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: dynplan/v1alpha1\nkind: Plan\nmetadata: [\n")
    badrun = subprocess.run(
        [sys.executable, "-m", "scaler.cli", "validate", str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert badrun.returncode == 2
    assert badrun.stderr.startswith(f"error: {path}: invalid YAML (line")
    assert "Traceback" not in badrun.stderr


def test_checking_does_not_import_the_library() -> None:
    code = (
        "import sys; from scaler.core.predictors import predictor_missing_dependency as m; "
        "assert m('arima') is None and m('prophet') is None; "
        "heavy = [n for n in ('statsmodels', 'prophet', 'pandas') if n in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
