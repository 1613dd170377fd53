"""`dynplan profile learn`'s Prometheus edge: a plan's per-pod history -> `fit.WorkerSample`s.

One range query per series and pool (`scaler.sources.learn_exprs`: at most 8 per pool,
16 for a disaggregated plan), over [start, end] at `step`: per pod and step, the means of
the requests it finished (TTFT, ISL, OSL, ITL) and its gauges (requests waiting, running,
KV usage), and the KV cache size. Dynamo (a frontend source) has per-worker router gauges
instead (the last request's TTFT, ISL, ITL; prompt tokens in prefill; KV blocks): requests
waiting, KV usage and running requests are derived from them with the block size and
cache size given as flags, and the decode context is the plan's (`_samples`). Bounded: at most MAX_STEPS steps (Prometheus itself
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
FRONTEND_PREFILL_KEYS = ("ttft_ms", "isl", "isl_max", "prefill_tokens_max")
FRONTEND_DECODE_KEYS = ("itl_ms", "kv_blocks", "plan_isl", "plan_osl")
# A frontend worker counts as queued in a step when its prompt tokens queued or in prefill
# exceeded this many of the step's largest prompts (one prompt in prefill is no queue; the
# margin absorbs a longer prompt starting before the last-ISL gauge has caught up)
QUEUED_PROMPTS = 1.25
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


@dataclass(frozen=True)
class FrontendKv:
    """What a frontend source (Dynamo) needs to turn KV blocks into usage and running
    requests: the engine's block size and KV cache size (flags: the frontend has neither)."""

    block_size: int
    max_kv_tokens: float


def check_plan(
    plan: Plan, plan_file: str, tr: TimeRange, max_kv_tokens: Optional[float] = None, kv_block_size: Optional[int] = None
) -> Optional[FrontendKv]:
    """InputError (exit 2) for a plan, range or flags this command cannot learn from; for a
    frontend source, the block size and cache size its decode samples need."""
    errors = []
    src = plan_source(plan)
    frontend = src.layout == "frontend"
    if frontend:
        why = f"source {src.name}: its frontend reports KV blocks per worker, not"
        if kv_block_size is None:
            errors.append(FieldError(plan_file, "--kv-block-size", f"is required with {why} their size in tokens (the engine's KV block size)"))
        if max_kv_tokens is None:
            errors.append(FieldError(plan_file, "--max-kv-tokens", f"is required with {why} the cache size (vLLM logs "
                                     "'GPU KV cache size: N tokens')"))
    elif kv_block_size is not None:
        errors.append(FieldError(plan_file, "--kv-block-size", f"applies to source dynamo; {src.name}'s engines report KV usage as a fraction"))
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
    if frontend:
        assert kv_block_size is not None and max_kv_tokens is not None
        return FrontendKv(kv_block_size, float(max_kv_tokens))
    return None


def _index(series: list[Series], tr: TimeRange, label: str) -> dict[tuple[str, int], float]:
    """(worker, step) -> value; a series without the worker label (a plan-level mean) is worker ""."""
    out: dict[tuple[str, int], float] = {}
    for s in series:
        worker = s.labels.get(label, "")
        for t, v in s.points:
            k = int(round((t - tr.start) / tr.step))
            if 0 <= k < tr.steps and math.isfinite(v):
                out[(worker, k)] = v
    return out


def _samples(
    values: Mapping[str, dict[tuple[str, int], float]], tr: TimeRange, kv: Optional[FrontendKv] = None
) -> tuple[WorkerSample, ...]:
    """One WorkerSample per (worker, step) that has any value. Engine sources give every
    field per pod; a frontend source (`kv` given) the per-worker gauges, from which requests
    waiting (prompt tokens queued or in prefill beyond QUEUED_PROMPTS x the step's largest
    last ISL), KV usage and running requests (KV tokens / the plan's context) are derived."""
    keys = sorted({pk for key, per in values.items() for pk in per if pk[0]})
    out = []
    for worker, k in keys:
        def get(key: str, who: str = worker) -> Optional[float]:
            v = values.get(key, {}).get((who, k))
            return None if v is None else v * LEARN_SCALE[key]

        isl = get("isl")
        if kv is None:
            osl = get("osl")
            context = None if isl is None or osl is None else isl + osl / 2.0  # Dynamo's decode context: ISL + OSL/2
            waiting, kv_usage, running = get("waiting"), get("kv_usage"), get("running")
        else:
            p_isl, p_osl = get("plan_isl", ""), get("plan_osl", "")
            context = None if p_isl is None or p_osl is None else p_isl + p_osl / 2.0
            tokens, top = get("prefill_tokens_max"), get("isl_max")
            waiting = None if tokens is None or not top else max(0.0, tokens / top - QUEUED_PROMPTS)
            blocks = get("kv_blocks")
            kv_tokens = None if blocks is None else blocks * kv.block_size
            kv_usage = None if kv_tokens is None else kv_tokens / kv.max_kv_tokens
            running = None if kv_tokens is None or not context else kv_tokens / context
        out.append(WorkerSample(
            t=tr.start + k * tr.step, worker=worker, isl=isl, ttft_ms=get("ttft_ms"), waiting=waiting,
            context=context, itl_ms=get("itl_ms"), kv_usage=kv_usage, running=running,
        ))
    return tuple(out)


async def read_history(client: PromClient, plan: Plan, tr: TimeRange, kv: Optional[FrontendKv] = None) -> History:
    """The plan's per-pod (per-worker) history over `tr` (MetricsUnavailable when a query fails)."""
    src = plan_source(plan)
    pre_pool, dec_pool = pools_of(plan)
    pre_keys, dec_keys = (PREFILL_KEYS, DECODE_KEYS) if src.layout == "engine" else (FRONTEND_PREFILL_KEYS, FRONTEND_DECODE_KEYS)
    reads: list[tuple[str, str, str]] = []  # (pool, key, query)
    for pool, keys in ((pre_pool, pre_keys), (dec_pool, dec_keys)):
        exprs = learn_exprs(plan, pool, tr.step)
        for key in keys:
            if (pool, key) not in {(p, k) for p, k, _ in reads}:
                reads.append((pool, key, exprs[key]))
    results = await asyncio.gather(*(client.range(q, tr.start, tr.end, float(tr.step)) for _, _, q in reads))
    by: dict[str, dict[str, dict[tuple[str, int], float]]] = {}
    pods: dict[str, set[str]] = {}
    capacity_points: dict[str, list[float]] = {}
    for (pool, key, _), series in zip(reads, results):
        if key == "kv_capacity":
            for s in series:
                pod = s.labels.get(POD_LABEL)
                if pod is None:
                    continue
                values = [learn_capacity(src, s.labels, v) for _, v in s.points]
                capacity_points.setdefault(pod, []).extend(c for c in values if c is not None and math.isfinite(c) and c > 0)
            continue
        by.setdefault(pool, {})[key] = _index(series, tr, src.worker_id_label)
        pods.setdefault(pool, set()).update(p for p, _ in by[pool][key] if p)
    for pool in dict.fromkeys((pre_pool, dec_pool)):
        if not pods.get(pool):
            sel = selector(plan.spec.metrics.selector, pool_extra(plan, pool))
            who = "pods" if src.layout == "engine" else f"{src.worker_type_label}={src.worker_types[pool]} workers"
            raise InsufficientHistory(
                f"no {src.name} series of the {pool} pool's {who} match {sel} between {_iso(tr.start)} and {_iso(tr.end)}: "
                f"is the range right, and the selector (dynplan doctor -f PLAN)?")
    pre = _samples({k: by.get(pre_pool, {}).get(k, {}) for k in pre_keys}, tr, kv)
    dec = _samples({k: by.get(dec_pool, {}).get(k, {}) for k in dec_keys if k != "kv_capacity"}, tr, kv)
    if len(pre) + len(dec) > MAX_SAMPLES:
        raise InsufficientHistory(f"{len(pre) + len(dec)} pod-steps; at most {MAX_SAMPLES} are read: a longer --step")
    capacity = {pod: float(np.median(v)) for pod, v in capacity_points.items() if v}
    warnings = []
    over = sum(1 for d in dec if d.kv_usage is not None and d.kv_usage > 1)
    if over:
        warnings.append(f"{over} decode step(s) with KV usage above 1, left out: are --kv-block-size and --max-kv-tokens right?")
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
