"""The demo finds the scaler's ports in its log stream: the pattern it waits for must match
what `dynplan serve` actually logs (a changed log format once broke `make demo`)."""

from __future__ import annotations

import logging

from scaler.devtools.demo import LISTENING
from scaler.service.logs import JsonFormatter, log_event


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_listening_event_gives_both_ports() -> None:
    log = logging.getLogger("dynplan.server.test-demo-contract")
    log.propagate = False
    log.setLevel(logging.INFO)
    cap = _Capture()
    log.addHandler(cap)
    try:
        # the same call as ScalerServer.start
        log_event(log, "listening", listen="127.0.0.1:0", port=38159, metricsPort=46067, plans=1)
    finally:
        log.removeHandler(cap)
    m = LISTENING.search(cap.lines[0])
    assert m is not None and (m[1], m[2]) == ("38159", "46067")
