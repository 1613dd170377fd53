"""Prometheus access for the scaler: the HTTP client, the operator's credentials and allowed
endpoints, the observation readers, and `PromReader`, the decision loop's reader over them.

Every public name of `scaler.prom.batch`, `scaler.prom.client`, `scaler.prom.credentials` and `scaler.prom.reader`
is re-exported here (a test keeps `__all__` complete), loaded on first use: the serving process
of `dynplan serve` imports the credentials module without the readers and the planning
core behind them (scaler.service.front).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaler.prom.batch import SharedReads
    from scaler.prom.client import PromClient, Sample, Series
    from scaler.prom.credentials import (
        BasicAuth,
        Credential,
        CredentialFileError,
        Credentials,
        check_access,
        load_credentials,
        read_secret,
        url_under,
    )
    from scaler.prom.reader import (
        THROUGHPUT_SERIES,
        WORKER_SERIES,
        PlanReads,
        PromReader,
        ReadyReading,
        TrafficReading,
        plan_reads,
        read_ready,
        read_traffic,
        read_traffic_detail,
        read_traffic_history,
        read_traffic_history_grid,
        read_traffic_sync,
        read_workers,
        read_workers_history,
        ready_queries,
        throughput_queries,
        throughput_series,
        window_ends,
        worker_queries,
    )

# public name -> the module that defines it
_HOME = {
    "BasicAuth": "credentials",
    "Credential": "credentials",
    "CredentialFileError": "credentials",
    "Credentials": "credentials",
    "PlanReads": "reader",
    "PromClient": "client",
    "PromReader": "reader",
    "ReadyReading": "reader",
    "Sample": "client",
    "Series": "client",
    "SharedReads": "batch",
    "THROUGHPUT_SERIES": "reader",
    "TrafficReading": "reader",
    "WORKER_SERIES": "reader",
    "check_access": "credentials",
    "load_credentials": "credentials",
    "plan_reads": "reader",
    "read_ready": "reader",
    "read_secret": "credentials",
    "read_traffic": "reader",
    "read_traffic_detail": "reader",
    "read_traffic_history": "reader",
    "read_traffic_history_grid": "reader",
    "read_traffic_sync": "reader",
    "read_workers": "reader",
    "read_workers_history": "reader",
    "ready_queries": "reader",
    "throughput_queries": "reader",
    "throughput_series": "reader",
    "url_under": "credentials",
    "window_ends": "reader",
    "worker_queries": "reader",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'scaler.prom' has no attribute {name!r}")
    return getattr(importlib.import_module(f"scaler.prom.{home}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = [
    "BasicAuth",
    "Credential",
    "CredentialFileError",
    "Credentials",
    "check_access",
    "load_credentials",
    "read_secret",
    "url_under",
    "PlanReads",
    "PromClient",
    "PromReader",
    "ReadyReading",
    "Sample",
    "Series",
    "SharedReads",
    "THROUGHPUT_SERIES",
    "TrafficReading",
    "WORKER_SERIES",
    "read_ready",
    "read_traffic",
    "read_traffic_detail",
    "read_traffic_history",
    "read_traffic_history_grid",
    "read_traffic_sync",
    "read_workers",
    "read_workers_history",
    "plan_reads",
    "ready_queries",
    "throughput_queries",
    "throughput_series",
    "window_ends",
    "worker_queries",
]
