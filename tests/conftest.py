"""Markers by folder, and the real-Prometheus fixtures (see tests/support/prometheus.py).

A test's folder says what it needs, and the folder, not the module, puts the markers on:

- `tests/unit/`: the venv only; no servers, ports, subprocesses (ruff in test_lint.py aside)
  or builds. `make test-unit`.
- `tests/integration/`: a gRPC or HTTP server, a subprocess, a wheel build (`integration`).
- `tests/integration/prometheus/`: also Debian's prometheus package, a real server or
  promtool (`integration` and `prometheus`). A missing binary fails the test, never skips it.

`slow` is set by the modules that take more than a few seconds on their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from prometheus import PromFactory

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        folders = path.relative_to(TESTS).parts[:-1] if path.is_relative_to(TESTS) else ()
        if folders[:1] == ("integration",):
            item.add_marker(pytest.mark.integration)
        if folders[:2] == ("integration", "prometheus"):
            item.add_marker(pytest.mark.prometheus)


@pytest.fixture
def prom_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromFactory]:
    """Start real Prometheus servers for one test; all are stopped afterwards."""
    factory = PromFactory(tmp_path_factory.mktemp("prometheus"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_prom_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromFactory]:
    """Like prom_factory, shared by a module (start one server, reuse it across tests)."""
    factory = PromFactory(tmp_path_factory.mktemp("prometheus"))
    try:
        yield factory
    finally:
        factory.close()
