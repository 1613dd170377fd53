"""Read and write profiles in the Dynamo profiler's on-disk layout (the edge; does I/O).

Layouts accepted, per part (prefill, decode), npz preferred when present:
  <dir>/selected_prefill_interpolation/raw_data.npz  or  <dir>/prefill_raw_data.json
  <dir>/selected_decode_interpolation/raw_data.npz   or  <dir>/decode_raw_data.json
Every problem found is reported at once, each naming the profile file and its field, so a
user fixing a broken profile sees the whole list in one run.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from scaler.bounded_input import read_regular_file
from scaler.core.profile import DECODE_KEYS, MAX_PROFILE_POINTS, PREFILL_KEYS, Profile, profile_from_raw, profile_problems
from scaler.errors import FieldError, InputBoundExceeded, ProfileError

# Bytes per profile file, checked before it is read: a MAX_PROFILE_POINTS-point decode table
# is about 0.8 MB as JSON (write_profile_json's layout) and 0.3 MB as npz.
MAX_PROFILE_FILE_BYTES = 2 << 20
_NPY_HEADER_BYTES = 1 << 16  # an npy header is a short dict; numpy itself allows 10000 chars
# What a corrupt archive raises (found by tests/unit/test_plan_fuzz.py): bad CRC or structure,
# a broken deflate stream, an unknown compression method, an encrypted member.
_ZIP_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)

PREFILL_NPZ = Path("selected_prefill_interpolation") / "raw_data.npz"
DECODE_NPZ = Path("selected_decode_interpolation") / "raw_data.npz"
PREFILL_JSON = Path("prefill_raw_data.json")
DECODE_JSON = Path("decode_raw_data.json")


class _Reporter:
    """Builds FieldErrors located either in the plan file or in the profile file itself."""

    def __init__(self, field_path: str, plan_file: str | None) -> None:
        self.field_path, self.plan_file = field_path, plan_file
        self.errors: list[FieldError] = []

    def add(self, file: Path | str, field: str, message: str) -> None:
        if self.plan_file is not None:
            where = f"{file}: {field}" if field else str(file)
            self.errors.append(FieldError(self.plan_file, self.field_path, f"{where}: {message}"))
        else:
            self.errors.append(FieldError(str(file), field, message))


def _npz_member(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """One `.npy` member, its header checked before anything is allocated.

    The header's shape and dtype are the claim; the data read is exactly what they announce
    (ZipExtFile decompresses only what is asked for), so a member declaring 10^11 elements
    or inflating to gigabytes costs nothing beyond its header. Raises ValueError.
    """
    info = zf.getinfo(name)
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_NPY_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_NPY_HEADER_BYTES)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        if dtype.kind not in "iuf" or dtype.itemsize > 8:
            # Also refuses object arrays, so no pickle is ever read.
            raise ValueError(f"dtype {dtype.name} is not a real number type")
        count = math.prod(shape)
        if count > MAX_PROFILE_POINTS:
            raise ValueError(f"declares {count} values; at most {MAX_PROFILE_POINTS} are accepted")
        data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise ValueError("is truncated")
    arr = np.frombuffer(data, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def _read_npz(path: Path, group: str, report: _Reporter) -> dict[str, Any] | None:
    keys = PREFILL_KEYS if group == "prefill" else DECODE_KEYS + ("max_kv_tokens",)
    try:
        if path.stat().st_size > MAX_PROFILE_FILE_BYTES:
            raise InputBoundExceeded(f"is {path.stat().st_size} bytes; at most {MAX_PROFILE_FILE_BYTES} bytes are accepted")
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            out: dict[str, Any] = {}
            for key in keys:  # only the arrays the profile uses; others are never read
                if f"{key}.npy" in names:
                    try:
                        out[key] = _npz_member(zf, f"{key}.npy")
                    except _ZIP_ERRORS as exc:
                        report.add(path, f"{group}.{key}", f"cannot read npz member: {exc}")
                        return None
            return out
    except InputBoundExceeded as exc:
        report.add(path, group, str(exc))
    except _ZIP_ERRORS as exc:
        report.add(path, group, f"cannot read npz file: {exc}")
    return None


def _read_json(path: Path, group: str, report: _Reporter) -> dict[str, Any] | None:
    try:
        data = json.loads(read_regular_file(path, MAX_PROFILE_FILE_BYTES).decode("utf-8"))
    except InputBoundExceeded as exc:
        report.add(path, group, str(exc))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        report.add(path, group, f"cannot read file: {exc}")
        return None
    except json.JSONDecodeError as exc:
        report.add(path, group, f"invalid JSON: {exc}")
        return None
    except RecursionError:
        report.add(path, group, "invalid JSON: nested too deeply")
        return None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        report.add(path, group, f"invalid JSON: {str(exc)[:100]}")
        return None
    if not isinstance(data, dict):
        report.add(path, group, f"must be a JSON object with the {group} arrays, got {type(data).__name__}")
        return None
    return data


def _read_part(
    directory: Path, npz: Path, js: Path, group: str, report: _Reporter
) -> tuple[dict[str, Any] | None, Path]:
    """One part of the profile, and the file it came from."""
    if (directory / npz).is_file():
        return _read_npz(directory / npz, group, report), directory / npz
    if (directory / js).is_file():
        return _read_json(directory / js, group, report), directory / js
    report.add(directory, group, f"no {group} data: expected {npz} or {js}")
    return None, directory / js


def load_profile(
    directory: str | Path, *, field_path: str = "spec.profile", plan_file: str | None = None
) -> Profile:
    """Load and validate a profile directory; raise ProfileError listing every problem.

    With `plan_file`, errors are located at `plan_file: field_path` (the plan's reference to
    the profile) and their message names the profile file and field; without it, errors are
    located in the profile file itself. Relative directories are taken as given (callers
    resolve them against the plan file's directory).
    """
    directory = Path(directory)
    report = _Reporter(field_path, plan_file)
    if not directory.exists():
        report.add(directory, "", "profile directory does not exist")
        raise ProfileError(report.errors)
    if not directory.is_dir():
        report.add(directory, "", "profile path is not a directory")
        raise ProfileError(report.errors)

    raw_prefill, prefill_file = _read_part(directory, PREFILL_NPZ, PREFILL_JSON, "prefill", report)
    raw_decode, decode_file = _read_part(directory, DECODE_NPZ, DECODE_JSON, "decode", report)
    if raw_prefill is None or raw_decode is None:
        # Still check the part that did load, so every problem shows up in one run.
        if raw_prefill is not None or raw_decode is not None:
            for field, message in profile_problems(raw_prefill or {}, raw_decode or {}):
                group = field.split(".", 1)[0]
                if (group == "prefill" and raw_prefill is not None) or (
                    group == "decode" and raw_decode is not None
                ):
                    report.add(prefill_file if group == "prefill" else decode_file, field, message)
        raise ProfileError(report.errors)

    for field, message in profile_problems(raw_prefill, raw_decode):
        file = prefill_file if field.split(".", 1)[0] == "prefill" else decode_file
        report.add(file, field, message)
    if report.errors:
        raise ProfileError(report.errors)
    return profile_from_raw(raw_prefill, raw_decode, source=str(directory))


def write_profile_json(profile: Profile, directory: Path) -> None:
    """Write `prefill_raw_data.json` and `decode_raw_data.json` (the ConfigMap-mountable form)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prefill, decode = profile.to_json_dicts()
    for name, data in ((PREFILL_JSON, prefill), (DECODE_JSON, decode)):
        # allow_nan=False: a validated profile is finite; refuse to write JSON others can't parse.
        text = json.dumps(data, indent=1, allow_nan=False) + "\n"
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(directory / name)  # readers never see a half-written file


def write_profile(profile: Profile, directory: Path) -> None:
    """Write the whole Dynamo layout: both JSON files and both `raw_data.npz` archives.

    Every file is replaced atomically; the npz form is what Dynamo's planner reads, the JSON
    form what a ConfigMap mounts. Both hold the same numbers (float64).
    """
    directory = Path(directory)
    write_profile_json(profile, directory)
    prefill, decode = profile.to_json_dicts()
    decode["max_kv_tokens"] = [decode["max_kv_tokens"]]  # Dynamo keeps it as a 1-element array
    for rel, data in ((PREFILL_NPZ, prefill), (DECODE_NPZ, decode)):
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp"
        arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float64) for k, v in data.items()}
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(target)
