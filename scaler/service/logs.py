"""The scaler's log stream: one format per stream (JSON lines or text), events with fields.

`log_event(logger, "decision", plan=..., ...)` logs a structured event; the formatter of the
stream decides how it is written. `configure_logging` puts one handler on the root logger,
so records of dynplan, of libraries (urllib3, asyncio, grpc's Python side, prophet), warnings
(`logging.captureWarnings`) and uncaught exceptions in threads all come out in the same
format.

- `json`: every line is one JSON object: `time` (UTC, ISO 8601), `level`, `logger`, then
  `event` and its fields, or `message` for a plain record; `exception` holds a traceback.
- `text`: `TIME LEVEL LOGGER: EVENT key=value ...` (values that are not simple words are
  JSON-encoded), or the plain message; tracebacks follow on their own lines.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from datetime import datetime, timezone
from types import TracebackType
from typing import IO, Any, Optional

from scaler.logsetup import quiet_forecasting_libraries

LOG_FORMATS = ("json", "text")
_EVENT = "dynplan_event"    # LogRecord attribute carrying the event name
_FIELDS = "dynplan_fields"  # ... and its fields
_RESERVED = frozenset({"time", "level", "logger", "event", "message", "exception"})


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event` with JSON-serialisable `fields` (camelCase keys, as in the decision)."""
    clash = _RESERVED & fields.keys()
    if clash:
        raise ValueError(f"log_event fields {sorted(clash)} are reserved")
    logger.log(level, event, extra={_EVENT: event, _FIELDS: fields})


def event_of(record: logging.LogRecord) -> Optional[dict[str, Any]]:
    """`{"event": name, **fields}` of a record logged by `log_event`, else None."""
    event = getattr(record, _EVENT, None)
    if event is None:
        return None
    return {"event": event, **getattr(record, _FIELDS, {})}


def _time(record: logging.LogRecord) -> str:
    t = datetime.fromtimestamp(record.created, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": _time(record), "level": record.levelname, "logger": record.name}
        event = event_of(record)
        if event is not None:
            doc.update(event)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            doc["exception"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str)


def _value(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: message` per record; events as `EVENT key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        event = event_of(record)
        if event is not None:
            name = event.pop("event")
            message = " ".join([name, *(f"{k}={_value(v)}" for k, v in event.items())])
        else:
            message = record.getMessage()
        text = f"{_time(record)} {record.levelname} {record.name}: {message}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")


# Lines waiting for the writer thread at most; beyond, lines are dropped and counted (a
# stuck stderr must neither stop the event loop nor grow without bound).
MAX_PENDING_LINES = 20_000


class BackgroundStreamHandler(logging.Handler):
    """Formats each record where it is logged, writes it from a thread.

    With 1,000 plans a decision burst logs a thousand 2-3 kB lines within seconds; written
    on the event loop (a write and a flush each, to a pipe that may be full) they kept
    KEDA's RPCs waiting. The order of lines is kept (one writer); `flush` writes what is
    pending from the calling thread (the shutdown path's last word)."""

    def __init__(self, stream: IO[str], max_pending: int = MAX_PENDING_LINES) -> None:
        super().__init__()
        self.stream = stream
        self.dropped = 0
        self._pending: "queue.Queue[Optional[str]]" = queue.Queue(maxsize=max_pending)
        self._write_lock = threading.Lock()
        threading.Thread(target=self._run, name="dynplan-log-writer", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)
            return
        try:
            self._pending.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _write(self, line: str) -> None:
        with self._write_lock:
            if self.dropped:
                self.stream.write(json.dumps({"event": "log_lines_dropped", "count": self.dropped}) + "\n")
                self.dropped = 0
            self.stream.write(line + "\n")

    def _run(self) -> None:
        while True:
            line = self._pending.get()
            if line is None:
                return
            try:
                self._write(line)
                if self._pending.empty():
                    self.stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing left to tell
                pass

    def flush(self) -> None:
        while True:
            try:
                line = self._pending.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self._write(line)
        with self._write_lock:
            self.stream.flush()


def configure_logging(level: str, log_format: str = "json", stream: Optional[IO[str]] = None) -> None:
    """Route every log record of the process to `stream` (stderr) in one format, written
    from a thread (`BackgroundStreamHandler`).

    dynplan's loggers log at `level`; other libraries at WARNING and above (their INFO and
    DEBUG chatter is not the scaler's)."""
    handler = BackgroundStreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    ours = logging.getLogger("dynplan")
    ours.handlers[:] = []
    ours.setLevel(level.upper())
    ours.propagate = True
    logging.captureWarnings(True)
    quiet_forecasting_libraries()  # prophet/cmdstanpy/statsmodels: a fit per tick is no news
    crash = logging.getLogger("dynplan.crash")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
        crash.error("uncaught exception in thread %s", name, exc_info=exc_info)

    def main_hook(exc_type: type[BaseException], exc: BaseException, tb: Optional[TracebackType]) -> None:
        crash.critical("uncaught exception", exc_info=(exc_type, exc, tb))

    threading.excepthook = thread_hook
    sys.excepthook = main_hook

