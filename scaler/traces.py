"""Request traces: read Mooncake JSONL and Azure LLM CSV traces into `Request` values.

Shared by the synthetic exporter, the simulator and the benchmarks. Times are seconds
from the trace's first request; `rate_scale` compresses time (X times the arrival rate).

Formats:
- mooncake: one JSON object per line with `timestamp` (milliseconds), `input_length`,
  `output_length` (other keys such as `hash_ids` are ignored).
- azure: CSV with header `TIMESTAMP,ContextTokens,GeneratedTokens`; TIMESTAMP is a wall
  clock `YYYY-MM-DD HH:MM:SS[.fraction]` (the public files carry 7 fractional digits);
  UTF-8 BOM and CRLF line ends are accepted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, Union

from scaler.bounded_input import read_regular_file
from scaler.errors import FieldError, InputBoundExceeded, TraceError

KnownFormat = Literal["mooncake", "azure"]
TraceFormat = Literal["auto", "mooncake", "azure"]
_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
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
        times, isl, osl = _parse_azure(name, text)
    else:
        raise TraceError([FieldError(name, "fmt", f"unknown trace format {fmt!r} (auto, mooncake, azure)")])
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
    raise TraceError(
        [FieldError(name, "line 1", "unknown trace format: expected Mooncake JSONL or an Azure CSV header")]
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


def _parse_azure(name: str, text: str) -> tuple[list[float], list[int], list[int]]:
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].split(",")] if lines else []
    try:
        cols = [header.index(c) for c in _AZURE_COLUMNS]
    except ValueError:
        raise TraceError(
            [FieldError(name, "line 1", f"header must contain {', '.join(_AZURE_COLUMNS)}, got {','.join(header)!r}")]
        ) from None
    width = len(header)
    c_ts, c_in, c_out = cols
    times: list[float] = []
    isl: list[int] = []
    osl: list[int] = []
    errors: list[FieldError] = []
    # Days since epoch are cached per date string: the trace spans one or two dates, and
    # this keeps parsing to plain string slicing (the 8.8k-line trace parses in ~20 ms).
    day_seconds: dict[str, float] = {}
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
            try:
                t = _wall_seconds(stamp, day_seconds)
            except ValueError:
                errors.append(
                    FieldError(name, f"{where}: TIMESTAMP", f"must be 'YYYY-MM-DD HH:MM:SS[.fraction]', got {stamp!r}")
                )
                t = None
            row_ok = t is not None
            counts = []
            for col, label in ((c_in, "ContextTokens"), (c_out, "GeneratedTokens")):
                try:
                    counts.append(_count(cells[col]))
                except ValueError:
                    errors.append(
                        FieldError(name, f"{where}: {label}", f"must be a non-negative integer, got {cells[col].strip()!r}")
                    )
                    row_ok = False
            if row_ok:
                times.append(t)  # type: ignore[arg-type]
                isl.append(counts[0])
                osl.append(counts[1])
        if len(errors) >= _MAX_ERRORS:
            break
    _raise_if(name, errors)
    return times, isl, osl


def _wall_seconds(stamp: str, day_seconds: dict[str, float]) -> float:
    """Seconds of 'YYYY-MM-DD HH:MM:SS.f' since midnight of the first date in the trace."""
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
    return base + hh * 3600 + mm * 60 + sec
