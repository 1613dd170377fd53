"""Prometheus access for the scaler: the HTTP client, the operator's credentials and allowed
endpoints, the observation readers, and `PromReader`, the decision loop's reader over them.

Every public name of `scaler.prom.batch`, `scaler.prom.client`, `scaler.prom.credentials` and `scaler.prom.reader`
is re-exported here (a test keeps `__all__` complete).
"""

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
