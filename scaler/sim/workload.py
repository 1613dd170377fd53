"""Turning trace requests into the simulator's workload, and scaling it up by replication.

Two ways to make a trace heavier (say which one a result used):
- `--rate-scale X` (scaler.traces): divide every arrival time by X. X times the rate, the
  same requests, a trace X times shorter: bursts get X times sharper and shorter.
- `--replicate K` (here): K copies of every request, each copy after the first shifted by
  a seeded uniform jitter in [0, jitter). K times the rate over the same span, so a one-hour
  trace still gives the planner an hour of decisions. A short jitter (the default, 1 s)
  keeps the trace's bursts K times as high; a long one smooths them, like independent users.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .engine import Workload, workload_from_requests

REPLICATE_JITTER_S = 1.0


def build_workload(
    requests: Sequence[object], replicate: int = 1, seed: int = 0, jitter_s: float = REPLICATE_JITTER_S
) -> Workload:
    """A Workload from trace requests (`.t`, `.isl`, `.osl`), optionally replicated.

    Token counts of 0 in a trace are taken as 1: every request reads at least one token
    and makes at least one (its first, from prefill).
    """
    if replicate < 1:
        raise ValueError("replicate must be >= 1")
    if not jitter_s >= 0:
        raise ValueError("jitter_s must be >= 0")
    base = workload_from_requests(requests)
    isl = np.maximum(base.isl, 1)
    osl = np.maximum(base.osl, 1)
    t = base.t
    if replicate > 1:
        rng = np.random.default_rng(seed)
        n = len(t)
        jitter = rng.uniform(0.0, jitter_s, size=(replicate - 1) * n)
        t = np.concatenate([t, np.tile(t, replicate - 1) + jitter])
        isl = np.tile(isl, replicate)
        osl = np.tile(osl, replicate)
        order = np.argsort(t, kind="stable")
        t, isl, osl = t[order], isl[order], osl[order]
    return Workload(t=t, isl=isl, osl=osl)
