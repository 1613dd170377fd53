"""Prometheus access for the scaler: the HTTP client and the observation readers."""

from scaler.prom.client import PromClient, Sample, Series
from scaler.prom.reader import (
    TrafficReading,
    read_traffic,
    read_traffic_detail,
    read_traffic_history,
    read_traffic_history_grid,
    read_traffic_sync,
    read_workers,
    window_ends,
)

__all__ = [
    "PromClient",
    "Sample",
    "Series",
    "TrafficReading",
    "read_traffic",
    "read_traffic_detail",
    "read_traffic_history",
    "read_traffic_history_grid",
    "read_traffic_sync",
    "read_workers",
    "window_ends",
]
