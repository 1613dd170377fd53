"""A pre-deployment profile (Dynamo profiler layout), as a validated value.

Units follow the profiler: ISL and context in tokens, TTFT and ITL in milliseconds,
throughputs in tokens/s/GPU (prefill: input tokens; decode: output tokens), KV usage as a
fraction of `max_kv_tokens`. Reading the files lives in `scaler.profile_io`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from scaler.core.limits import MAX_PROFILE_POINTS

PREFILL_KEYS = ("prefill_isl", "prefill_ttft", "prefill_thpt_per_gpu")
DECODE_KEYS = ("x_kv_usage", "y_context_length", "z_itl", "z_thpt_per_gpu")
MIN_PREFILL_POINTS = 4
MIN_DECODE_POINTS = 4

@dataclass(frozen=True, eq=False)
class Profile:
    """Profiled performance of one prefill engine and one decode engine."""

    prefill_isl: np.ndarray
    prefill_ttft_ms: np.ndarray
    prefill_thpt_per_gpu: np.ndarray
    decode_kv_usage: np.ndarray
    decode_context: np.ndarray
    decode_itl_ms: np.ndarray
    decode_thpt_per_gpu: np.ndarray
    max_kv_tokens: float
    source: str = "<memory>"
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            h = hashlib.sha256()
            for arr in (
                self.prefill_isl,
                self.prefill_ttft_ms,
                self.prefill_thpt_per_gpu,
                self.decode_kv_usage,
                self.decode_context,
                self.decode_itl_ms,
                self.decode_thpt_per_gpu,
            ):
                h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
                h.update(b"|")
            h.update(repr(float(self.max_kv_tokens)).encode())
            object.__setattr__(self, "fingerprint", h.hexdigest()[:16])

    @property
    def isl_range(self) -> tuple[float, float]:
        return float(self.prefill_isl.min()), float(self.prefill_isl.max())

    @property
    def context_range(self) -> tuple[float, float]:
        return float(self.decode_context.min()), float(self.decode_context.max())

    def to_json_dicts(self) -> tuple[dict, dict]:
        """The profile as Dynamo's `prefill_raw_data.json` and `decode_raw_data.json`."""
        prefill = {
            "prefill_isl": self.prefill_isl.tolist(),
            "prefill_ttft": self.prefill_ttft_ms.tolist(),
            "prefill_thpt_per_gpu": self.prefill_thpt_per_gpu.tolist(),
        }
        decode = {
            "x_kv_usage": self.decode_kv_usage.tolist(),
            "y_context_length": self.decode_context.tolist(),
            "z_itl": self.decode_itl_ms.tolist(),
            "z_thpt_per_gpu": self.decode_thpt_per_gpu.tolist(),
            "max_kv_tokens": float(self.max_kv_tokens),
        }
        return prefill, decode


def _real_array(value: object) -> np.ndarray | str:
    """`value` as a flat float64 array, or why it is not one (the message for its field).

    Strict on purpose: JSON and inline profiles are flat lists of numbers (booleans, strings
    and nested lists are mistakes, not numbers), npz arrays have a real numeric dtype (a
    complex array would silently lose its imaginary part). The size is checked first, so
    an oversized array costs nothing more.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            return f"must be an array of real numbers, got dtype {value.dtype.name}"
        if value.size > MAX_PROFILE_POINTS:
            return f"has {value.size} points; at most {MAX_PROFILE_POINTS} are accepted"
        arr = value.astype(np.float64).reshape(-1)
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_PROFILE_POINTS:
            return f"has {len(value)} points; at most {MAX_PROFILE_POINTS} are accepted"
        for i, x in enumerate(value):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                return f"must be an array of numbers: element [{i}] is {type(x).__name__}"
        try:
            arr = np.asarray(value, dtype=np.float64)
        except OverflowError:
            return "must be an array of numbers: a value is too large for a float"
    else:
        return f"must be an array of numbers, got {type(value).__name__}"
    return arr


def _real_number(value: object) -> float | str:
    """`value` as one float, or why it is not one: a number, or a one-element npz array."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.reshape(-1)[0])
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return f"must be a number, got {type(value).__name__}"
    try:
        return float(value)
    except OverflowError:
        return "must be a number: too large for a float"


def profile_problems(raw_prefill: dict, raw_decode: dict) -> list[tuple[str, str]]:
    """Check raw arrays; return (field, message) pairs, empty when the data is usable."""
    problems: list[tuple[str, str]] = []

    def arrays(raw: dict, keys: tuple[str, ...], group: str) -> dict[str, np.ndarray] | None:
        out: dict[str, np.ndarray] = {}
        for key in keys:
            if key not in raw:
                problems.append((f"{group}.{key}", "is missing"))
                continue
            arr = _real_array(raw[key])
            if isinstance(arr, str):
                problems.append((f"{group}.{key}", arr))
                continue
            if not np.all(np.isfinite(arr)):
                problems.append((f"{group}.{key}", "has non-finite values (NaN or Inf)"))
            out[key] = arr
        if len(out) != len(keys):
            return None
        lengths = {k: len(v) for k, v in out.items()}
        if len(set(lengths.values())) != 1:
            problems.append(
                (group, "arrays have unequal lengths: " + ", ".join(f"{k}={n}" for k, n in lengths.items()))
            )
            return None
        return out

    p = arrays(raw_prefill, PREFILL_KEYS, "prefill")
    if p is not None:
        n = len(p["prefill_isl"])
        if n < MIN_PREFILL_POINTS:
            problems.append(("prefill.prefill_isl", f"needs at least {MIN_PREFILL_POINTS} points, has {n}"))
        for key in PREFILL_KEYS:
            if np.any(p[key] <= 0):
                problems.append((f"prefill.{key}", "values must be positive"))
        if len(np.unique(p["prefill_isl"])) != n:
            problems.append(("prefill.prefill_isl", "has duplicate ISL values"))

    d = arrays(raw_decode, DECODE_KEYS, "decode")
    if d is not None:
        n = len(d["x_kv_usage"])
        if n < MIN_DECODE_POINTS:
            problems.append(("decode.x_kv_usage", f"needs at least {MIN_DECODE_POINTS} points, has {n}"))
        kv = d["x_kv_usage"]
        if np.any((kv < 0) | (kv > 1)):
            problems.append(("decode.x_kv_usage", "values must lie in [0, 1]"))
        for key in ("y_context_length", "z_itl", "z_thpt_per_gpu"):
            if np.any(d[key] <= 0):
                problems.append((f"decode.{key}", "values must be positive"))
    if "max_kv_tokens" not in raw_decode:
        problems.append(("decode.max_kv_tokens", "is missing"))
    else:
        mkv = _real_number(raw_decode["max_kv_tokens"])
        if isinstance(mkv, str):
            problems.append(("decode.max_kv_tokens", mkv))
        elif not np.isfinite(mkv) or mkv <= 0:
            problems.append(("decode.max_kv_tokens", f"must be a positive number, got {mkv}"))
    return problems


def profile_from_raw(raw_prefill: dict, raw_decode: dict, source: str = "<memory>") -> Profile:
    """Build a Profile from already-checked raw dicts (call `profile_problems` first)."""

    def arr(raw: dict, key: str) -> np.ndarray:
        a = _real_array(raw[key])
        if isinstance(a, str):
            raise ValueError(f"{key}: {a} (call profile_problems first)")
        a = a.copy()
        a.setflags(write=False)
        return a

    mkv = _real_number(raw_decode["max_kv_tokens"])
    if isinstance(mkv, str):
        raise ValueError(f"max_kv_tokens: {mkv} (call profile_problems first)")
    return Profile(
        prefill_isl=arr(raw_prefill, "prefill_isl"),
        prefill_ttft_ms=arr(raw_prefill, "prefill_ttft"),
        prefill_thpt_per_gpu=arr(raw_prefill, "prefill_thpt_per_gpu"),
        decode_kv_usage=arr(raw_decode, "x_kv_usage"),
        decode_context=arr(raw_decode, "y_context_length"),
        decode_itl_ms=arr(raw_decode, "z_itl"),
        decode_thpt_per_gpu=arr(raw_decode, "z_thpt_per_gpu"),
        max_kv_tokens=mkv,
        source=source,
    )
