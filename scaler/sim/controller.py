"""The interface between the engine and a scaling policy (scaler.sim.policies builds them).

How scaler.sim.engine drives a `Controller`:

1. At t=0 it adds `initial_replicas()` per pool, ready at once (EngineConfig.initial_ready)
   or after the start-up delay.
2. Every `throughput_interval_seconds` it calls `on_traffic` with the TrafficWindow over the
   last interval, as the recording rules would report it at t: arrivals and mean ISL count at
   arrival, OSL, duration and ITL at completion, TTFT at the first token.
3. Every `load_interval_seconds` it calls `on_load` with one WorkerLoad per serving worker,
   as the load path would scrape them at t.

An interval of None means that call never happens. `ready` is the replicas serving per pool
at t (up, not draining). At equal times completions come before ticks, and the throughput
tick before the load tick. Ticks stop once no request is left to arrive or in flight (or
EngineConfig.max_drain_seconds after the last arrival, when requests are stuck).

Each call returns the replicas wanted per pool (starting + ready, draining not counted), or
None to leave every pool as it is; a pool left out of the mapping keeps its count. The engine
applies targets at once: a new replica is billed from then and serves after the start-up
delay; scale-down removes starting replicas first (newest first), then the ready ones with
the least backlog, which finish what they hold and are billed until then.
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol

from scaler.core.observations import TrafficWindow, WorkerLoad


class Controller(Protocol):
    """A scaling policy as the engine sees it (see the module docstring for the protocol)."""

    name: str

    def initial_replicas(self) -> Mapping[str, int]: ...

    @property
    def throughput_interval_seconds(self) -> Optional[float]: ...

    @property
    def load_interval_seconds(self) -> Optional[float]: ...

    def on_traffic(
        self, t: float, window: TrafficWindow, ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]: ...

    def on_load(
        self, t: float, workers: tuple[WorkerLoad, ...], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]: ...
