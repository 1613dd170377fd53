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

Optionally (the engine reads them with getattr, so older controllers need not have them):

4. `poll_interval_seconds` (a float, None or absent: never) and `on_poll(t, latency,
   provisioned, ready)`: called at that interval with the run's LatencyLog (every request's
   TTFT and mean ITL so far, by time: scaler.sim.latency), the replicas provisioned per pool
   (starting + ready, not draining) and the ready ones. A policy that reads latency
   histograms (llm-d's, `llmd-slo`) decides here, at KEDA's polling interval.

Each call returns the replicas wanted per pool (starting + ready, draining not counted), or
None to leave every pool as it is; a pool left out of the mapping keeps its count. Without an
actuation path the engine applies targets at once; with one (scaler.sim.actuation, per pool:
`simulate(..., actuation=...)`) a target is the scaler's answer that KEDA polls and the HPA
syncs read, and the replicas change when the HPA's sync says. Either way a new replica is
billed from then and serves after its pool's start-up delay; scale-down removes starting
replicas first (newest first), then the ready ones with the least backlog, which finish what
they hold and are billed until then.
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol

from scaler.core.observations import TrafficWindow, WorkerLoad
from scaler.sim.latency import LatencyLog


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


class Poller(Protocol):
    """The optional poll hook of a controller (step 4 of the module docstring)."""

    @property
    def poll_interval_seconds(self) -> Optional[float]: ...

    def on_poll(
        self, t: float, latency: LatencyLog, provisioned: Mapping[str, int], ready: Mapping[str, int]
    ) -> Optional[Mapping[str, int]]: ...
