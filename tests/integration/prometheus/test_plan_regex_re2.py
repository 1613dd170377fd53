"""A pool selector's regular expression is accepted by validate exactly when promtool (Go's
RE2, what Prometheus parses queries with) accepts it: Python-only syntax such as lookahead
would make every query and rule of the plan fail to parse."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from scaler.core.plan import re2_problem
from scaler.render.checks import promtool_path

PATTERNS = [
    # RE2 refuses these, Python compiles them
    "llama-(?=prefill).*",
    "llama-(?!decode).*",
    "x(?<=a)",
    "x(?<!a)",
    "(?>llama)-.*",
    "llama(?#a comment)-.*",
    "(?P<a>a)(?P=a)",
    "(a)\\1",
    "(a)?(?(1)b|c)",
    "llama-.*+",
    "llama-a{2}+",
    # both accept these
    "llama-prefill-.*",
    "(?i)Llama-.*",
    "(?P<role>prefill|decode)",
    "llama-[0-9]+",
    "[(?=]x",
    "[]a(?=]x",
    "\\(?=x",
    "a\\\\1",
]


def promtool_accepts(tmp_path: Path, pattern: str) -> bool:
    rules = tmp_path / "r.yaml"
    expr = "up{pod=~" + json.dumps(pattern) + "}"
    rules.write_text("groups:\n- name: g\n  rules:\n  - record: r\n    expr: " + json.dumps(expr) + "\n")
    proc = subprocess.run([promtool_path(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=30, check=False)
    return proc.returncode == 0


@pytest.mark.parametrize("pattern", PATTERNS)
def test_re2_problem_agrees_with_promtool(tmp_path: Path, pattern: str) -> None:
    assert (re2_problem(pattern) is None) is promtool_accepts(tmp_path, pattern)
