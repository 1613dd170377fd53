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


def test_the_fake_frontend_resizes_its_pools_from_stdin_lines(capsys) -> None:  # type: ignore[no-untyped-def]
    import io

    from scaler.devtools.fake_frontend import Replay, _resize_from
    from scaler.devtools.frontend_exporter import SyntheticFrontend

    replay = Replay(SyntheticFrontend(), [], speed=1.0)
    _resize_from(io.StringIO("prefill 5\n\ndecode x\nworker 2\ndecode 3\n"), replay)
    assert replay._size == {"prefill": 5, "decode": 3}
    err = capsys.readouterr().err
    assert "ignored pool-size line 'decode x'" in err and "ignored pool-size line 'worker 2'" in err
