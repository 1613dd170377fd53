"""A copy of a Dynamo-layout profile on slower hardware: TTFT and ITL x F, throughputs / F.

The attainment benchmark simulates engines that are 15% slower than profiled (F = 1.15), the
usual gap between a profiler's isolated runs and production. Both on-disk forms (JSON and
npz) are written, so whichever the loader prefers carries the same numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

_SLOWER = ("prefill_ttft", "z_itl")
_FASTER = ("prefill_thpt_per_gpu", "z_thpt_per_gpu")


def _scaled(arrays: dict, factor: float) -> dict:
    out = dict(arrays)
    for key in _SLOWER:
        if key in out:
            out[key] = (np.asarray(out[key], dtype=float) * factor).tolist()
    for key in _FASTER:
        if key in out:
            out[key] = (np.asarray(out[key], dtype=float) / factor).tolist()
    return out


def slowed_profile(src: Path, dst: Path, factor: float) -> Path:
    """Write the slowed copy of profile `src` to `dst` (replaced if it exists); returns dst."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("prefill_raw_data.json", "decode_raw_data.json"):
        data = json.loads((src / name).read_text())
        (dst / name).write_text(json.dumps(_scaled(data, factor)))
    for sub in ("selected_prefill_interpolation", "selected_decode_interpolation"):
        npz = src / sub / "raw_data.npz"
        if npz.exists():
            (dst / sub).mkdir()
            with np.load(npz) as arrays:
                scaled = _scaled({k: arrays[k] for k in arrays.files}, factor)
            np.savez(dst / sub / "raw_data.npz", **{k: np.asarray(v) for k, v in scaled.items()})
    return dst
