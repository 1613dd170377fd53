"""Shared fixtures: real Prometheus servers (see tests/support/prometheus.py)."""

from __future__ import annotations

from typing import Iterator

import pytest

from prometheus import PromFactory


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
