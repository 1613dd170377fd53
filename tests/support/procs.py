"""Process and port utilities for tests: a port nobody listens on, which pids still run,
and `dynplan serve` as a subprocess whose log is read as it runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_alive(pids: Iterable[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


class ServeProcess:
    """`python -m scaler.cli serve ARGS` with its stderr read on a thread: every line in
    `lines`, the JSON ones also in `events` (the service logs one JSON object a line)."""

    def __init__(self, args: Sequence[str], env: Optional[Mapping[str, str]] = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scaler.cli", "serve", *args],
            cwd=REPO, env=None if env is None else dict(env), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._closed = False
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_for(self, seen: Callable[[list[dict[str, Any]]], bool], timeout: float) -> bool:
        """Whether `seen(events)` became true within `timeout` s (False at once when the
        process closed its log first)."""
        with self._changed:
            self._changed.wait_for(lambda: seen(self.events) or self._closed, timeout)
            return seen(self.events)

    def wait_event(self, name: str, timeout: float) -> bool:
        """Whether an event `name` was logged within `timeout` s."""
        return self.wait_for(lambda events: any(e.get("event") == name for e in events), timeout)

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.events if e.get("event") == name]

    def log(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
