"""`dynplan profile learn`'s Prometheus edge: a plan's per-pod history -> `fit.WorkerSample`s.

One range query per series and pool (`scaler.sources.learn_exprs`: at most 8 per pool,
16 for a disaggregated plan), over [start, end] at `step`: per pod and step, the means of
the requests it finished (TTFT, ISL, OSL, ITL) and its gauges (requests waiting, running,
KV usage), and the KV cache size. Bounded: at most MAX_STEPS steps (Prometheus itself
refuses 11,000 points per series) and MAX_SAMPLES pod-steps in all; each answer is bounded
by the client (`PromClient`, MAX_BODY_BYTES).

Pools: the prefill curve comes from the prefill pool (aggregated: the one pool), the
decode surface from the decode pool; the KV cache size from the decode pool's pods (its
median across them, warned about when pods disagree), or `--max-kv-tokens`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Optional

import numpy as np

from scaler.core.plan import Plan
from scaler.errors import FieldError, InputError, InsufficientHistory
from scaler.profiling.fit import WorkerSample
from scaler.prom.client import PromClient, Series
from scaler.sources import LEARN_SCALE, POD_LABEL, learn_capacity, learn_exprs, plan_source, pool_extra, selector

MAX_STEPS = 10_000
MAX_SAMPLES = 1_000_000  # pod-steps, over every pool
PREFILL_KEYS = ("ttft_ms", "isl", "waiting")
DECODE_KEYS = ("itl_ms", "isl", "osl", "kv_usage", "running", "kv_capacity")
# pods whose cache sizes differ by more than this fraction get a warning
CAPACITY_SPREAD = 0.01


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    step: int

    @property
    def steps(self) -> int:
        return int(round((self.end - self.start) / self.step)) + 1


@dataclass(frozen=True)
class History:
    """What the range queries gave: samples per part, the KV cache size per decode pod,
    the queries sent (`pool.key`) and the pods seen per pool."""

    prefill: tuple[WorkerSample, ...]
    decode: tuple[WorkerSample, ...]
    capacity: Mapping[str, float]
    queries: Mapping[str, str]
    pods: Mapping[str, int]
    warnings: tuple[str, ...] = field(default=())


def time_range(end: float, since_seconds: int, step_seconds: int) -> TimeRange:
    """The steps ending on a multiple of `step` at or before `end`, back `since` seconds:
    ends on the step grid, so two runs over the same history read the same windows."""
    if step_seconds < 1 or since_seconds < step_seconds:
        raise ValueError("need step >= 1 s and since >= step")
    last = math.floor(end / step_seconds) * step_seconds
    return TimeRange(float(last - (since_seconds // step_seconds) * step_seconds + step_seconds), float(last), step_seconds)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pools_of(plan: Plan) -> tuple[str, str]:
    """(prefill pool, decode pool): both "worker" in an aggregated plan."""
    return ("worker", "worker") if plan.spec.mode == "agg" else ("prefill", "decode")


def check_plan(plan: Plan, plan_file: str, tr: TimeRange) -> None:
    """InputError (exit 2) for a plan or range this command cannot learn from."""
    errors = []
    src = plan_source(plan)
    if src.layout != "engine" or src.worker_running_requests is None:
        errors.append(FieldError(plan_file, "spec.metrics.source", (
            f"{src.name}: learning reads each engine pod's own series (sources vllm, sglang); {src.name}'s frontend "
            "exports no running requests per worker: use `dynplan profile sweep`, or learn from the engines' series")))
    if tr.steps > MAX_STEPS:
        errors.append(FieldError(plan_file, "--since", (
            f"{tr.steps} steps of {tr.step}s; at most {MAX_STEPS} are read per series: a longer --step or a shorter --since")))
    scrape = plan.spec.metrics.scrape_interval_seconds
    if tr.step < 2 * scrape:
        errors.append(FieldError(plan_file, "--step", (
            f"{tr.step}s holds fewer than two scrapes at spec.metrics.scrapeIntervalSeconds {scrape}: "
            f"at least {2 * scrape}s")))
    if errors:
        raise InputError(errors)


def _index(series: list[Series], tr: TimeRange) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], float] = {}
    for s in series:
        pod = s.labels.get(POD_LABEL)
        if pod is None:
            continue
        for t, v in s.points:
            k = int(round((t - tr.start) / tr.step))
            if 0 <= k < tr.steps and math.isfinite(v):
                out[(pod, k)] = v
    return out


def _samples(values: Mapping[str, dict[tuple[str, int], float]], tr: TimeRange) -> tuple[WorkerSample, ...]:
    keys = sorted({pk for per in values.values() for pk in per})
    out = []
    for pod, k in keys:
        def get(key: str) -> Optional[float]:
            v = values.get(key, {}).get((pod, k))
            return None if v is None else v * LEARN_SCALE[key]

        isl, osl = get("isl"), get("osl")
        out.append(WorkerSample(
            t=tr.start + k * tr.step, worker=pod, isl=isl, ttft_ms=get("ttft_ms"), waiting=get("waiting"),
            context=None if isl is None or osl is None else isl + osl / 2.0,  # Dynamo's decode context: ISL + OSL/2
            itl_ms=get("itl_ms"), kv_usage=get("kv_usage"), running=get("running"),
        ))
    return tuple(out)


async def read_history(client: PromClient, plan: Plan, tr: TimeRange) -> History:
    """The plan's per-pod history over `tr` (MetricsUnavailable when a query fails)."""
    pre_pool, dec_pool = pools_of(plan)
    reads: list[tuple[str, str, str]] = []  # (pool, key, query)
    for pool, keys in ((pre_pool, PREFILL_KEYS), (dec_pool, DECODE_KEYS)):
        exprs = learn_exprs(plan, pool, tr.step)
        for key in keys:
            if (pool, key) not in {(p, k) for p, k, _ in reads}:
                reads.append((pool, key, exprs[key]))
    results = await asyncio.gather(*(client.range(q, tr.start, tr.end, float(tr.step)) for _, _, q in reads))
    by: dict[str, dict[str, dict[tuple[str, int], float]]] = {}
    pods: dict[str, set[str]] = {}
    capacity_points: dict[str, list[float]] = {}
    src = plan_source(plan)
    for (pool, key, _), series in zip(reads, results):
        if key == "kv_capacity":
            for s in series:
                pod = s.labels.get(POD_LABEL)
                cap = learn_capacity(src, s.labels, s.points[-1][1] if s.points else math.nan)
                if pod is None or cap is None:
                    continue
                values = [learn_capacity(src, s.labels, v) for _, v in s.points]
                capacity_points.setdefault(pod, []).extend(c for c in values if c is not None and math.isfinite(c) and c > 0)
            continue
        by.setdefault(pool, {})[key] = _index(series, tr)
        pods.setdefault(pool, set()).update(p for p, _ in by[pool][key])
    for pool in dict.fromkeys((pre_pool, dec_pool)):
        if not pods.get(pool):
            sel = selector(plan.spec.metrics.selector, pool_extra(plan, pool))
            raise InsufficientHistory(
                f"no {src.name} series of the {pool} pool's pods match {sel} between {_iso(tr.start)} and {_iso(tr.end)}: "
                f"is the range right, and the selector (dynplan doctor -f PLAN)?")
    pre = _samples({k: by.get(pre_pool, {}).get(k, {}) for k in PREFILL_KEYS}, tr)
    dec = _samples({k: by.get(dec_pool, {}).get(k, {}) for k in DECODE_KEYS if k != "kv_capacity"}, tr)
    if len(pre) + len(dec) > MAX_SAMPLES:
        raise InsufficientHistory(f"{len(pre) + len(dec)} pod-steps; at most {MAX_SAMPLES} are read: a longer --step")
    capacity = {pod: float(np.median(v)) for pod, v in capacity_points.items() if v}
    warnings = []
    if capacity:
        lo, hi = min(capacity.values()), max(capacity.values())
        if hi > lo * (1 + CAPACITY_SPREAD):
            warnings.append(f"the decode pods' KV caches differ ({lo:.0f}-{hi:.0f} tokens): the median is used")
    queries = {f"{pool}.{key}": q for pool, key, q in reads}
    return History(pre, dec, capacity, queries, {p: len(v) for p, v in pods.items()}, tuple(warnings))


def max_kv_tokens(plan: Plan, plan_file: str, history: History, flag: Optional[float]) -> tuple[float, str]:
    """The KV cache size to write and where it came from: the flag, else the decode pods'
    median; InputError (exit 2) naming the flag when neither is there."""
    if flag is not None:
        return float(flag), "--max-kv-tokens"
    if history.capacity:
        src = plan_source(plan)
        what = src.kv_capacity_info or f"{src.worker_active_decode_blocks} / {src.kv_usage_fraction[0]}"
        return float(np.median(list(history.capacity.values()))), what
    src = plan_source(plan)
    _, dec_pool = pools_of(plan)
    sel = selector(plan.spec.metrics.selector, pool_extra(plan, dec_pool))
    where = src.kv_capacity_info or f"{src.worker_active_decode_blocks} with {src.kv_usage_fraction[0]} above 0.05"
    raise InputError([FieldError(plan_file, "--max-kv-tokens", (
        f"is required: the KV cache size is not in the history ({where} has no series for the {dec_pool} pool, {sel}); "
        "pass the engine's KV capacity in tokens (vLLM logs 'GPU KV cache size: N tokens')"))])
