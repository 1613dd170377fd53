"""scaler.prom re-exports every public name of its modules (one facade, complete)."""

from __future__ import annotations

import inspect

import scaler.prom
from scaler.prom import batch, client, credentials, reader


def _public(module: object) -> set[str]:
    """Names a module defines itself (not ones it imports), without a leading underscore."""
    names = set()
    for name, value in list(vars(module).items()):
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if getattr(value, "__module__", module.__name__) != module.__name__:  # type: ignore[attr-defined]
            continue
        if not callable(value) and name not in getattr(module, "__annotations__", {}):
            continue  # a plain constant without an annotation: module-private by convention
        names.add(name)
    return names


def test_all_lists_every_public_name_of_batch_client_credentials_and_reader() -> None:
    want = _public(batch) | _public(client) | _public(credentials) | _public(reader)
    assert want <= set(scaler.prom.__all__), sorted(want - set(scaler.prom.__all__))
    assert set(scaler.prom.__all__) <= set(dir(scaler.prom))
    assert {"PromReader", "read_workers_history", "THROUGHPUT_SERIES", "check_access"} <= set(scaler.prom.__all__)
