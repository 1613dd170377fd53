"""A test's folder says what it needs (tests/conftest.py marks by folder), so the folder must
be right: unit tests start nothing, and only tests/integration/prometheus/ uses Prometheus."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

TESTS = REPO / "tests"
# support modules and libraries that start servers or processes
STARTS_SOMETHING = {"subprocess", "grpc", "socket", "fake_http", "procs", "keda_client", "service_harness", "ptyrun", "pty"}
NEEDS_PROMETHEUS = {"prometheus", "rules"}
PROM_FIXTURES = {"prom_factory", "module_prom_factory"}


def _uses(path: Path) -> set[str]:
    """Top-level names of the modules a test imports, and the Prometheus fixtures it takes."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            used |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            used.add(node.module.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            used |= {a.arg for a in node.args.args} & PROM_FIXTURES
    return used


def test_every_test_module_is_in_a_folder_that_marks_it() -> None:
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == [], "move it to tests/unit or tests/integration"


def test_unit_tests_start_nothing_and_need_no_prometheus() -> None:
    found = {
        p.name: sorted(used)
        for p in (TESTS / "unit").glob("test_*.py")
        if (used := _uses(p) & (STARTS_SOMETHING | NEEDS_PROMETHEUS | PROM_FIXTURES)) and p.name != "test_lint.py"
    }
    assert found == {}, "tests/integration/ (or its prometheus/) is the place for these"


def test_only_the_prometheus_folder_uses_prometheus() -> None:
    found = {
        p.name: sorted(used)
        for p in (TESTS / "integration").glob("test_*.py")
        if (used := _uses(p) & (NEEDS_PROMETHEUS | PROM_FIXTURES))
    }
    assert found == {}, "tests/integration/prometheus/ marks its tests `prometheus`"
