"""The scaler's log stream: one format per stream, chosen by `--log-format`, for dynplan's
events and plain records, other libraries' records, warnings and uncaught exceptions."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings
from typing import Iterator

import pytest

from scaler.service.logs import configure_logging, event_of, log_event


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """configure_logging on a string stream; the process-wide logging state is restored."""
    root = logging.getLogger()
    ours = logging.getLogger("dynplan")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate,
             sys.excepthook, threading.excepthook)
    out = io.StringIO()
    try:
        yield out
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        ours.handlers[:], ours.level, ours.propagate = saved[2], saved[3], saved[4]
        sys.excepthook, threading.excepthook = saved[5], saved[6]
        logging.captureWarnings(False)


def _emit_everything() -> None:
    log_event(logging.getLogger("dynplan.decision"), "decision", plan="llama-8b", windowEnd=120.0,
              replicas={"prefill": 4, "decode": 3}, reason="scale", note="two words")
    logging.getLogger("dynplan.server").info("plain message from dynplan")
    logging.getLogger("dynplan.server").debug("not shown at info")
    logging.getLogger("urllib3.connectionpool").warning("Connection pool is full, discarding connection")
    logging.getLogger("urllib3.connectionpool").info("library chatter below WARNING is not shown")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Unverified HTTPS request", UserWarning)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("dynplan.loop").exception("decision loop error for plan %s", "inference/llama-8b")
    thread = threading.Thread(target=lambda: 1 / 0, name="metrics-http")
    thread.start()
    thread.join()
    for handler in logging.getLogger().handlers:  # lines are written from a thread
        handler.flush()


def test_json_every_line_is_one_object(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    _emit_everything()
    lines = stream.getvalue().splitlines()
    docs = [json.loads(line) for line in lines]  # every line parses
    assert len(docs) == 6, lines
    decision, plain, library, warning, crash, thread = docs
    assert decision["event"] == "decision" and decision["logger"] == "dynplan.decision" and decision["level"] == "INFO"
    assert decision["replicas"] == {"prefill": 4, "decode": 3} and decision["windowEnd"] == 120.0
    assert decision["time"].endswith("Z") and "message" not in decision
    assert plain["message"] == "plain message from dynplan" and "event" not in plain
    assert library == {**library, "logger": "urllib3.connectionpool", "level": "WARNING",
                       "message": "Connection pool is full, discarding connection"}
    assert warning["logger"] == "py.warnings" and "UserWarning: Unverified HTTPS request" in warning["message"]
    assert crash["message"] == "decision loop error for plan inference/llama-8b"
    assert "RuntimeError: boom" in crash["exception"] and "Traceback" in crash["exception"]
    assert thread["logger"] == "dynplan.crash" and "metrics-http" in thread["message"]
    assert "ZeroDivisionError" in thread["exception"]


def test_text_no_line_is_json(stream: io.StringIO) -> None:
    configure_logging("info", "text", stream)
    _emit_everything()
    text = stream.getvalue()
    records = [line for line in text.splitlines() if line[:4].isdigit()]  # not traceback lines
    assert len(records) == 6, text
    for line in text.splitlines():
        assert not line.startswith("{"), line
    assert records[0].split(" ", 1)[1] == (
        'INFO dynplan.decision: decision plan=llama-8b windowEnd=120.0 '
        'replicas={"prefill":4,"decode":3} reason=scale note="two words"'
    )
    assert records[1].endswith("INFO dynplan.server: plain message from dynplan")
    assert records[2].endswith("WARNING urllib3.connectionpool: Connection pool is full, discarding connection")
    assert "RuntimeError: boom" in text and "ZeroDivisionError" in text


def test_debug_level_applies_to_dynplan_only(stream: io.StringIO) -> None:
    configure_logging("debug", "json", stream)
    logging.getLogger("dynplan.server").debug("ours")
    logging.getLogger("urllib3.connectionpool").debug("theirs")
    logging.getLogger().handlers[0].flush()
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["ours"]


def test_events_carry_their_fields_on_the_record() -> None:
    record = logging.LogRecord("dynplan.registry", logging.ERROR, __file__, 1, "x", None, None)
    assert event_of(record) is None
    logger = logging.getLogger("dynplan.test-events")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        log_event(logger, "plan_load_failed", logging.ERROR, file="a.yaml", errors=["bad"])
    finally:
        logger.removeHandler(handler)
    assert event_of(seen[0]) == {"event": "plan_load_failed", "file": "a.yaml", "errors": ["bad"]}
    assert seen[0].levelno == logging.ERROR and seen[0].getMessage() == "plan_load_failed"
    with pytest.raises(ValueError, match="reserved"):
        log_event(logger, "x", level=logging.INFO, **{"message": "clash"})


class _StuckStream(io.StringIO):
    """A stream whose writes wait until released (stderr into a full pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(10)
        return super().write(text)


def test_a_stuck_stream_never_blocks_the_logging_thread_and_keeps_the_order() -> None:
    from scaler.service.logs import BackgroundStreamHandler, JsonFormatter

    out = _StuckStream()
    handler = BackgroundStreamHandler(out, max_pending=5)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("dynplan.test.background")
    log.propagate, log.handlers[:] = False, [handler]
    try:
        import time

        t0 = time.perf_counter()
        for i in range(20):
            log_event(log, "tick", logging.WARNING, i=i)
        assert time.perf_counter() - t0 < 1.0  # 20 records while every write is stuck
        out.release.set()
        handler.flush()
        docs = [json.loads(line) for line in out.getvalue().splitlines()]
        ticks = [d["i"] for d in docs if d.get("event") == "tick"]
        assert ticks == sorted(ticks) and len(ticks) >= 5  # in order; at most 5 waited (+1 being written)
        dropped = [d for d in docs if d.get("event") == "log_lines_dropped"]
        assert sum(d["count"] for d in dropped) == 20 - len(ticks)
    finally:
        log.handlers[:] = []
