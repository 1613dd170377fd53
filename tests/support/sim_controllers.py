"""Test controllers for the simulator's engine (tests/support, shared by the sim tests)."""

from __future__ import annotations

from typing import Mapping, Optional

from scaler.core.observations import TrafficWindow, WorkerLoad


class Scripted:
    """A controller that applies fixed targets at fixed tick numbers (tests the engine's
    scaling mechanics on their own, without a planner's opinion)."""

    load_interval_seconds: Optional[float] = None

    def __init__(self, initial: Mapping[str, int], interval: float, script: dict[int, dict[str, int]]) -> None:
        self.name = "scripted"
        self._initial = dict(initial)
        self.throughput_interval_seconds = interval
        self._script = script
        self._tick = 0
        self.windows: list[TrafficWindow] = []

    def initial_replicas(self) -> Mapping[str, int]:
        return self._initial

    def on_traffic(self, t: float, window: TrafficWindow, ready: Mapping[str, int]) -> Optional[Mapping[str, int]]:
        self._tick += 1
        self.windows.append(window)
        return self._script.get(self._tick)

    def on_load(self, t: float, workers: tuple[WorkerLoad, ...], ready: Mapping[str, int]) -> None:
        return None
