"""Request traces: read Mooncake JSONL, Azure LLM CSV and BurstGPT CSV traces into `Request` values.

Shared by the synthetic exporter, the simulator and the benchmarks. Times are seconds
from the trace's first request; `rate_scale` compresses time (X times the arrival rate).

Formats:
- mooncake: one JSON object per line with `timestamp` (milliseconds), `input_length`,
  `output_length` (other keys such as `hash_ids` are ignored).
- azure: CSV with header `TIMESTAMP,ContextTokens,GeneratedTokens`; TIMESTAMP is a wall
  clock `YYYY-MM-DD HH:MM:SS[.fraction][offset]` (the 2023 files carry 7 fractional digits
  and no offset, the 2024 ones 6 digits and `+00:00`; an offset is taken into account);
  UTF-8 BOM and CRLF line ends are accepted.
- burstgpt: the BurstGPT CSV (GPT-3.5/GPT-4 requests served on Azure): a header with
  `Timestamp` (seconds from the trace's start), `Request tokens` and `Response tokens`, in
  any order among its other columns (`Model`, `Total tokens`, `Log Type`, which are
  ignored). A failed request has 0 response tokens; it is kept as an arrival (its prompt
  was read), as a token count of 0 is in the other formats.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable, Literal, Optional, Union

from scaler.bounded_input import read_regular_file
from scaler.errors import FieldError, InputBoundExceeded, TraceError

KnownFormat = Literal["mooncake", "azure", "burstgpt"]
TraceFormat = Literal["auto", "mooncake", "azure", "burstgpt"]
FORMATS: tuple[str, ...] = ("auto", "mooncake", "azure", "burstgpt")
# (time, input tokens, output tokens) columns of each CSV format
_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_BURSTGPT_COLUMNS = ("Timestamp", "Request tokens", "Response tokens")
# Report at most this many bad lines: enough to fix a file, not a wall of text.
_MAX_ERRORS = 20
# Far above a real trace (the shared one-hour traces are under 1 MB), and a bound on /dev/zero.
MAX_TRACE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Request:
    """One request: arrival `t` (seconds from trace start), input and output lengths."""

    t: float
    isl: int
    osl: int


def read_trace(
    path: Union[str, Path], fmt: TraceFormat = "auto", rate_scale: float = 1.0
) -> list[Request]:
    """Read a trace file, sorted by arrival time, starting at t=0.

    `rate_scale` X divides every time by X (X=2 doubles the arrival rate). Any unreadable
    line raises `TraceError` naming the file, line and field.
    """
    p = Path(path)
    name = str(path)
    if not (isinstance(rate_scale, (int, float)) and math.isfinite(rate_scale) and rate_scale > 0):
        raise TraceError([FieldError(name, "rate_scale", f"must be a positive number, got {rate_scale!r}")])
    try:
        raw = read_regular_file(p, MAX_TRACE_BYTES)
    except InputBoundExceeded as exc:
        raise TraceError([FieldError(name, "", f"cannot read trace: {exc}")]) from None
    except OSError as exc:
        raise TraceError([FieldError(name, "", f"cannot read trace: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceError([FieldError(name, "", f"not UTF-8 text (byte {exc.start})")]) from None
    known: str = _detect(name, text) if fmt == "auto" else fmt
    if known == "mooncake":
        times, isl, osl = _parse_mooncake(name, text)
        times = [t / 1000.0 for t in times]
    elif known == "azure":
        # days since epoch cached per date string: a trace spans one or two dates, and this
        # keeps parsing to plain string slicing (the 8.8k-line trace parses in ~20 ms)
        day_seconds: dict[str, float] = {}
        times, isl, osl = _parse_csv(
            name, text, _AZURE_COLUMNS, lambda stamp: _wall_seconds(stamp, day_seconds),
            "must be 'YYYY-MM-DD HH:MM:SS[.fraction][+HH:MM]'",
        )
    elif known == "burstgpt":
        times, isl, osl = _parse_csv(name, text, _BURSTGPT_COLUMNS, _seconds, "must be a number of seconds")
    else:
        raise TraceError([FieldError(name, "fmt", f"unknown trace format {fmt!r} ({', '.join(FORMATS)})")])
    if not times:
        raise TraceError([FieldError(name, "", "trace has no requests")])
    order = sorted(range(len(times)), key=times.__getitem__)
    t0 = times[order[0]]
    return [Request((times[i] - t0) / rate_scale, isl[i], osl[i]) for i in order]


def _detect(name: str, text: str) -> KnownFormat:
    first = text.lstrip()[:1]
    if first == "{":
        return "mooncake"
    head = text.split("\n", 1)[0].strip()
    if head.split(",")[:1] == ["TIMESTAMP"]:
        return "azure"
    if set(_BURSTGPT_COLUMNS) <= {c.strip() for c in head.split(",")}:
        return "burstgpt"
    raise TraceError(
        [FieldError(name, "line 1", "unknown trace format: expected Mooncake JSONL, an Azure or a BurstGPT CSV header")]
    )


def _count(value: object) -> int:
    """A token count: a non-negative integer (floats like 12.0 accepted)."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str):
        n = int(value.strip())
    else:
        raise ValueError
    if n < 0:
        raise ValueError
    return n


def _raise_if(name: str, errors: list[FieldError]) -> None:
    if errors:
        raise TraceError(errors[:_MAX_ERRORS])


def _parse_mooncake(name: str, text: str) -> tuple[list[float], list[int], list[int]]:
    times: list[float] = []
    isl: list[int] = []
    osl: list[int] = []
    errors: list[FieldError] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            obj = json.loads(line)
        except RecursionError:
            errors.append(FieldError(name, where, "not JSON: nested too deeply"))
            continue
        except ValueError as exc:
            # JSONDecodeError carries a short reason; other ValueErrors (e.g. an integer
            # literal over Python's digit limit) only their message.
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            errors.append(FieldError(name, where, f"not JSON: {reason}"))
            continue
        if not isinstance(obj, dict):
            errors.append(FieldError(name, where, "expected a JSON object"))
            continue
        try:
            ts = obj["timestamp"]
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
                raise ValueError
        except (KeyError, ValueError):
            errors.append(FieldError(name, f"{where}: timestamp", f"must be a number of milliseconds, got {obj.get('timestamp')!r}"))
            continue
        row_ok = True
        counts = []
        for key in ("input_length", "output_length"):
            try:
                counts.append(_count(obj[key]))
            except (KeyError, ValueError):
                errors.append(FieldError(name, f"{where}: {key}", f"must be a non-negative integer, got {obj.get(key)!r}"))
                row_ok = False
        if row_ok:
            times.append(float(ts))
            isl.append(counts[0])
            osl.append(counts[1])
        if len(errors) >= _MAX_ERRORS:
            break
    _raise_if(name, errors)
    return times, isl, osl


def _parse_csv(
    name: str, text: str, columns: tuple[str, str, str], parse_time: Callable[[str], float], time_rule: str
) -> tuple[list[float], list[int], list[int]]:
    """A CSV trace: `columns` name the arrival time, input and output token columns of the
    header (any others are ignored); `parse_time` reads a time cell (ValueError if bad)."""
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].split(",")] if lines else []
    try:
        cols = [header.index(c) for c in columns]
    except ValueError:
        raise TraceError(
            [FieldError(name, "line 1", f"header must contain {', '.join(columns)}, got {','.join(header)!r}")]
        ) from None
    width = len(header)
    c_ts, c_in, c_out = cols
    times: list[float] = []
    isl: list[int] = []
    osl: list[int] = []
    errors: list[FieldError] = []
    for lineno in range(2, len(lines) + 1):
        line = lines[lineno - 1]
        if not line.strip():
            continue
        where = f"line {lineno}"
        cells = line.split(",")
        if len(cells) != width:
            errors.append(FieldError(name, where, f"expected {width} columns, got {len(cells)}"))
        else:
            stamp = cells[c_ts].strip()
            t: Optional[float]
            try:
                t = parse_time(stamp)
            except ValueError:
                errors.append(FieldError(name, f"{where}: {columns[0]}", f"{time_rule}, got {stamp!r}"))
                t = None
            row_ok = t is not None
            counts = []
            for col, label in ((c_in, columns[1]), (c_out, columns[2])):
                try:
                    counts.append(_count(cells[col]))
                except ValueError:
                    errors.append(
                        FieldError(name, f"{where}: {label}", f"must be a non-negative integer, got {cells[col].strip()!r}")
                    )
                    row_ok = False
            if row_ok and t is not None:
                times.append(t)
                isl.append(counts[0])
                osl.append(counts[1])
        if len(errors) >= _MAX_ERRORS:
            break
    _raise_if(name, errors)
    return times, isl, osl


def _seconds(cell: str) -> float:
    """A time in seconds: a finite, non-negative number."""
    value = float(cell)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(cell)
    return value


def _utc_offset(stamp: str) -> tuple[str, float]:
    """`stamp` without a trailing UTC offset (`Z`, `+HH:MM`, `-HH:MM`), and the offset in
    seconds (0 without one): the 2024 Azure release writes `...00.009930+00:00`."""
    if stamp.endswith("Z"):
        return stamp[:-1], 0.0
    if len(stamp) > 19 and stamp[-6] in "+-" and stamp[-3] == ":" and stamp[-5:-3].isdigit() and stamp[-2:].isdigit():
        hours, minutes = int(stamp[-5:-3]), int(stamp[-2:])
        if hours > 23 or minutes > 59:
            raise ValueError(stamp)
        sign = 1.0 if stamp[-6] == "+" else -1.0
        return stamp[:-6], sign * (hours * 3600 + minutes * 60)
    return stamp, 0.0


def _wall_seconds(stamp: str, day_seconds: dict[str, float]) -> float:
    """Seconds of 'YYYY-MM-DD HH:MM:SS[.f][offset]' since midnight of the first date in the
    trace (in UTC where the stamps carry an offset)."""
    stamp, offset = _utc_offset(stamp)
    if len(stamp) < 19 or stamp[10] not in " T" or stamp[13] != ":" or stamp[16] != ":":
        raise ValueError(stamp)
    day = stamp[:10]
    base = day_seconds.get(day)
    if base is None:
        # Seconds are counted from midnight of the first date seen, not the epoch: small
        # numbers keep sub-microsecond precision in a float.
        ordinal = date.fromisoformat(day).toordinal()
        first = day_seconds.setdefault("", float(ordinal))
        base = (ordinal - first) * 86400.0
        day_seconds[day] = base
    hh, mm = int(stamp[11:13]), int(stamp[14:16])
    sec = float(stamp[17:])  # "03.9799600" -> 3.97996; rejects junk
    frac = stamp[19:]
    if not stamp[17:19].isdigit() or (frac and (frac[0] != "." or not frac[1:].isdigit())):
        raise ValueError(stamp)
    if not (0 <= hh < 24 and 0 <= mm < 60 and sec < 61):
        raise ValueError(stamp)
    return base + hh * 3600 + mm * 60 + sec - offset
