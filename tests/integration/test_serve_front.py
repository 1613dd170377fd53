"""The serving process of `dynplan serve` (scaler.service.front) stays small: it loads no
decision machinery (the planner core, the Prometheus readers, scipy), which the decider
process holds."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO


def test_the_serving_process_imports_no_decision_machinery() -> None:
    """What `dynplan serve`'s serving process loads (the CLI, its flag checks, the front):
    not the planner core, the readers, the server, numpy, scipy or prometheus_client."""
    code = (
        "import sys\n"
        "from scaler.service import cli\n"
        "cli._prometheus_access((), None)\n"
        "import scaler.service.main, scaler.service.front\n"
        "heavy = ['numpy', 'scipy', 'prometheus_client', 'requests', 'scaler.core.planner', 'scaler.prom.reader',\n"
        "         'scaler.service.server', 'scaler.service.loop', 'scaler.service.decider']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
