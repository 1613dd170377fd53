"""Read a plan's observations from Prometheus: traffic windows, per-worker load, history.

Queries come from `scaler.sources.read_query`: with `spec.metrics.useRecordingRules` each
series is read from its recorded series when that has a sample at the evaluation time and
from the equivalent raw PromQL (with the plan's selector) otherwise, decided per series and
per evaluation; without it, always raw. Both give the same numbers (tests check it).

Semantics (a failing dependency never becomes a number):
- requests: an empty result (no counter matches the selector) raises MetricsUnavailable;
  0 is a real, idle window. NaN/negative request counts raise too.
- means (ISL, OSL, TTFT, ITL, duration): NaN (0/0 on an idle window) or no result -> None.
- the attainment sizing's signals (`sizing: attainment` plans only): peak rate, arrival
  dispersion and backlog; NaN (idle), negative or no result -> None, which the core treats
  as unknown (nothing learned, no drain term), never as 0.
- more than one series where one is expected (e.g. duplicated recording rules) raises:
  summing or picking one would invent a number.
- ready replicas per pool (`read_ready`, attainment plans): kube-state-metrics' ready count
  of the pool's Deployment/StatefulSet; else the workers reporting per-worker series; else
  no entry (the core then uses the previous decision).

`PromReader` logs a warning (logger `dynplan.prom`), once until the series is back, naming
the query (series and selector) of every series that came back empty.

Ranges: every increase()/avg_over_time() reads over `sources.query_range` (the window, or
four scrape intervals of spec.metrics.scrapeIntervalSeconds when longer), the same in the
recorded and the raw query; a request count read over a longer range is scaled to T.

Window grid: a window read at time t covers (t - T, t], T = the interval. History windows
end at `end`, `end - T`, ...: window k of n covers (end - (n-k)*T, end - (n-k-1)*T]. A live
loop that reads at end + T, end + 2T, ... continues exactly this grid; `window_ends` gives it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from scaler.core.observations import TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.replay import ready_replicas
from scaler.errors import MetricsUnavailable, WindowRejected
from scaler.prom.batch import SharedReads
from scaler.prom.client import PromClient, Sample, Series
from scaler.prom.credentials import Credential
from scaler.sources import (
    SERIES,
    SERIES_BY_KEY,
    SOURCES,
    SeriesDef,
    SharedQuery,
    Source,
    is_recorded,
    plan_read_query,
    plan_series,
    plan_shared_query,
    pool_extra,
    ready_query,
    ready_shared,
    selector,
    series_pool,
    worker_pools,
)

log = logging.getLogger("dynplan.prom")

# Every throughput / worker series of the table; a plan reads `throughput_series(plan)`.
THROUGHPUT_SERIES: tuple[SeriesDef, ...] = tuple(s for s in SERIES if s.kind == "throughput")
WORKER_SERIES: tuple[SeriesDef, ...] = tuple(s for s in SERIES if s.kind == "worker")
# Counts and rates: a negative value is not one (a gauge decremented twice), so no value.
_NON_NEGATIVE = frozenset({"peak_rate", "arrival_dispersion", "backlog"})
# Fractions of observations (1 - bucket / count), and the float rounding accepted around [0, 1].
_FRACTIONS = frozenset({"ttft_miss"})
_ROUNDING = 1e-9


@dataclass(frozen=True)
class TrafficReading:
    """A TrafficWindow plus how it was read: per series key, the query and the path
    ("recorded", "raw", or "none" when the result was empty)."""

    window: TrafficWindow
    queries: Mapping[str, str]
    paths: Mapping[str, str]

    @property
    def missing(self) -> tuple[str, ...]:
        """Keys of the series that came back empty (their values are None)."""
        return tuple(k for k, p in self.paths.items() if p == "none")


@dataclass(frozen=True)
class ReadyReading:
    """Ready replicas per pool and where each count came from: "kube-state-metrics",
    "workers" (per-worker series reporting) or "none" (no entry in `counts`); `queries`:
    the kube-state-metrics query per pool that has one."""

    counts: Mapping[str, int]
    sources: Mapping[str, str]
    queries: Mapping[str, str] = field(default_factory=dict)


def _source(plan: Plan) -> Source:
    return SOURCES[plan.spec.metrics.source]


def _query(plan: Plan, series: SeriesDef, window_seconds: int, pool: Optional[str] = None) -> str:
    return plan_read_query(plan, series, window_seconds, pool)


async def _instant(
    client: PromClient, shared: Optional[SharedReads], query: str, sq: Optional[SharedQuery], at: Optional[float]
) -> list[Sample]:
    """`client.instant`, through the plans' shared reads when the scaler has them."""
    if shared is None:
        return await client.instant(query, at)
    return await shared.instant(query, sq, at)


async def _range(
    client: PromClient, shared: Optional[SharedReads], query: str, sq: Optional[SharedQuery],
    start: float, end: float, step: float,
) -> list[Series]:
    if shared is None:
        return await client.range(query, start, end, step)
    return await shared.range(query, sq, start, end, step)


def _attainment(plan: Plan) -> bool:
    tp = plan.spec.scaling.throughput
    return tp.enabled and tp.sizing == "attainment"


def throughput_series(plan: Plan) -> tuple[SeriesDef, ...]:
    """The throughput series the plan reads (`scaler.sources.plan_series`): the attainment
    sizing's signals only when it sizes by attainment."""
    return plan_series(plan, "throughput")


def throughput_queries(plan: Plan) -> dict[str, str]:
    """Series key -> the instant query read_traffic sends (for `explain` and logs)."""
    T = plan.spec.scaling.throughput.interval_seconds
    return {s.key: _query(plan, s, T) for s in throughput_series(plan)}


def ready_queries(plan: Plan) -> dict[str, str]:
    """Pool -> the kube-state-metrics query of its ready replicas, for attainment plans'
    pools whose scale target is a Deployment or StatefulSet (others have none)."""
    if not _attainment(plan):
        return {}
    out = {}
    for name, pool in plan.pools.items():
        ref = pool.scale_target_ref
        q = ready_query(ref.api_version, ref.kind, plan.namespace, ref.name)
        if q is not None:
            out[name] = q
    return out


def _ready_shared(plan: Plan) -> dict[str, SharedQuery]:
    """Pool -> the one query that reads every scale target's ready count (`ready_queries`)."""
    out = {}
    for name in ready_queries(plan):
        ref = plan.pools[name].scale_target_ref
        sq = ready_shared(ref.api_version, ref.kind, plan.namespace, ref.name)
        if sq is not None:
            out[name] = sq
    return out


@dataclass(frozen=True)
class _WorkerRead:
    """One per-worker query: the series, the pool it reads (engine sources; None: the
    workers' type label says) and the query."""

    series: SeriesDef
    pool: Optional[str]
    query: str
    shared: Optional[SharedQuery] = None


def _worker_reads(plan: Plan) -> tuple[_WorkerRead, ...]:
    """Every per-worker query of a plan: one per series (Dynamo), or one per series and
    pool (engine sources, `scaler.sources.worker_pools`)."""
    T = plan.spec.scaling.load.interval_seconds
    return tuple(
        _WorkerRead(s, pool, _query(plan, s, T, pool), plan_shared_query(plan, s, T, pool))
        for pool in worker_pools(plan) for s in WORKER_SERIES
    )


def worker_queries(plan: Plan) -> dict[str, str]:
    """Series key (`pool.key` for engine sources) -> the per-worker query."""
    return {(f"{r.pool}.{r.series.key}" if r.pool else r.series.key): r.query for r in _worker_reads(plan)}


@dataclass(frozen=True)
class PlanReads:
    """Every query one plan sends, built once (`plan_reads`): building them takes about
    half a millisecond a plan, which 1,000 plans would pay on the event loop every tick."""

    throughput: Mapping[str, str]
    throughput_shared: Mapping[str, Optional[SharedQuery]]
    workers: tuple[_WorkerRead, ...]
    ready: Mapping[str, str]
    ready_shared: Mapping[str, SharedQuery]


def plan_reads(plan: Plan) -> PlanReads:
    return PlanReads(throughput_queries(plan), _throughput_shared(plan), _worker_reads(plan), ready_queries(plan), _ready_shared(plan))


def _no_requests(plan: Plan) -> MetricsUnavailable:
    src = _source(plan)
    names = " / ".join(n for n in (src.requests_started, src.requests_total) if n)
    pool = series_pool(plan, SERIES_BY_KEY["requests"])
    who = "the frontend" if pool is None else f"the {pool} pool's engines"
    return MetricsUnavailable(
        f"plan {plan.name!r}: no request counter ({names}) for selector "
        f"{selector(plan.spec.metrics.selector, pool_extra(plan, pool))}: is {who} scraped?"
    )


def _path(samples: list[Sample]) -> str:
    if not samples:
        return "none"
    return "recorded" if is_recorded(samples[0].labels) else "raw"


def _single(plan: Plan, key: str, samples: list[Sample]) -> Optional[float]:
    if not samples:
        return None
    if len(samples) > 1:
        raise MetricsUnavailable(
            f"plan {plan.name!r}: {len(samples)} series for {key} where one was expected "
            f"(duplicated recording rules?): {[dict(s.labels) for s in samples[:3]]}"
        )
    return samples[0].value


def _value(key: str, v: Optional[float]) -> Optional[float]:
    """A series' value in the scaler's unit; None for no value (NaN, no result, a negative
    count or rate, a fraction outside [0, 1] beyond rounding)."""
    if v is None or not math.isfinite(v) or (key in _NON_NEGATIVE and v < 0):
        return None
    if key in _FRACTIONS:
        # 1 - bucket / count rounds a window with every observation in the bucket to -1e-16
        if not -_ROUNDING <= v <= 1.0 + _ROUNDING:
            return None
        v = min(max(v, 0.0), 1.0)
    return v * SERIES_BY_KEY[key].scale


def _window(plan: Plan, T: float, values: Mapping[str, Optional[float]]) -> TrafficWindow:
    requests = values.get("requests")
    if requests is None:
        raise _no_requests(plan)
    if not math.isfinite(requests) or requests < 0:
        # not a failed read but a poisoned window: skipped, not retried (the loop counts it)
        raise WindowRejected(f"plan {plan.name!r}: request count is {requests}, not a count", reason="invalid_requests")
    rest = {k: _value(k, v) for k, v in values.items() if k != "requests"}
    return TrafficWindow(window_seconds=float(T), requests=float(requests), **rest)


def _throughput_shared(plan: Plan) -> dict[str, Optional[SharedQuery]]:
    T = plan.spec.scaling.throughput.interval_seconds
    return {s.key: plan_shared_query(plan, s, T) for s in throughput_series(plan)}


async def read_traffic_detail(
    client: PromClient, plan: Plan, at: Optional[float] = None, *, shared: Optional[SharedReads] = None,
    reads: Optional[PlanReads] = None,
) -> TrafficReading:
    """`read_traffic` with the queries sent and the path (recorded/raw) each series took."""
    T = plan.spec.scaling.throughput.interval_seconds
    queries = throughput_queries(plan) if reads is None else reads.throughput
    sq = _throughput_shared(plan) if reads is None else reads.throughput_shared
    results = await asyncio.gather(*(_instant(client, shared, q, sq[k], at) for k, q in queries.items()))
    by_key = dict(zip(queries, results))
    values = {k: _single(plan, k, v) for k, v in by_key.items()}
    window = _window(plan, T, values)
    return TrafficReading(window, queries, {k: _path(v) for k, v in by_key.items()})


async def read_traffic(
    client: PromClient, plan: Plan, at: Optional[float] = None, *, shared: Optional[SharedReads] = None
) -> TrafficWindow:
    """The throughput window ending at `at` (Unix seconds; now when None)."""
    return (await read_traffic_detail(client, plan, at, shared=shared)).window


async def read_workers(
    client: PromClient, plan: Plan, at: Optional[float] = None, *, shared: Optional[SharedReads] = None,
    reads: Optional[PlanReads] = None,
) -> tuple[WorkerLoad, ...]:
    """Every reporting worker of the plan's pools, averaged over spec.scaling.load.intervalSeconds.

    Workers are mapped to pools through the source's worker_type labels; workers of other
    types are ignored. No worker reporting gives () (idle workers may publish nothing):
    callers compare the count with the pool's ready replicas.
    """
    worker_reads = _worker_reads(plan) if reads is None else reads.workers
    results = await asyncio.gather(*(_instant(client, shared, r.query, r.shared, at) for r in worker_reads))
    return _workers_from_reads(plan, worker_reads, [[(s.labels, s.value) for s in samples] for samples in results])


def _workers_from(
    plan: Plan, per_series: Sequence[Sequence[tuple[Mapping[str, str], float]]]
) -> tuple[WorkerLoad, ...]:
    """WorkerLoads from (labels, value) pairs per WORKER_SERIES entry (same order), for a
    source whose workers carry their type label (Dynamo)."""
    reads = tuple(_WorkerRead(s, None, "") for s in WORKER_SERIES)
    return _workers_from_reads(plan, reads, per_series)


def _workers_from_reads(
    plan: Plan, reads: Sequence[_WorkerRead], per_read: Sequence[Sequence[tuple[Mapping[str, str], float]]]
) -> tuple[WorkerLoad, ...]:
    """WorkerLoads from (labels, value) pairs per read (same order): the pool is the read's
    (engine sources) or the one the worker's type label names (Dynamo)."""
    src = _source(plan)
    pool_of_type = {src.worker_types[p]: p for p in plan.pool_names}
    fields: dict[tuple[str, str], dict[str, float]] = {}
    for r, samples in zip(reads, per_read):
        s = r.series
        for labels, value in samples:
            wid = labels.get(src.worker_id_label)
            pool = r.pool if r.pool is not None else pool_of_type.get(labels.get(src.worker_type_label, ""))
            if wid is None or pool is None:
                continue
            fields.setdefault((pool, wid), {})[s.key] = value * s.scale
    return tuple(WorkerLoad(worker_id=wid, pool=pool, **vals) for (pool, wid), vals in sorted(fields.items()))


async def read_workers_history(
    client: PromClient, plan: Plan, end: float, ticks: int, *, shared: Optional[SharedReads] = None
) -> list[tuple[float, tuple[WorkerLoad, ...]]]:
    """Per-worker load at each load tick of the grid ending at `end` (step = the load
    interval), oldest first: what live load ticks at those times read. For rebuilding the
    load path's regressions after a restart. One range query per series."""
    T = float(plan.spec.scaling.load.interval_seconds)
    ends = window_ends(float(end), T, ticks)
    reads = _worker_reads(plan)
    results: list[list[Series]] = await asyncio.gather(
        *(_range(client, shared, r.query, r.shared, ends[0], ends[-1], T) for r in reads)
    )
    per_step: list[list[list[tuple[Mapping[str, str], float]]]] = [[[] for _ in reads] for _ in ends]
    for i_series, series_list in enumerate(results):
        for series in series_list:
            for t, v in series.points:
                step = round((t - ends[0]) / T)
                if 0 <= step < len(ends):
                    per_step[step][i_series].append((series.labels, v))
    return [(t_end, _workers_from_reads(plan, reads, per_step[i])) for i, t_end in enumerate(ends)]


def window_ends(end: float, interval: float, intervals: int) -> list[float]:
    """End times of the `intervals` windows of length `interval` ending at `end`, oldest first."""
    if intervals < 1 or interval <= 0:
        raise ValueError("need intervals >= 1 and interval > 0")
    return [end - (intervals - 1 - k) * interval for k in range(intervals)]


async def read_traffic_history_grid(
    client: PromClient, plan: Plan, end: float, intervals: int, *, shared: Optional[SharedReads] = None
) -> list[tuple[float, Optional[TrafficWindow]]]:
    """(window end, window or None when the request counter had no data) for every window
    of the grid ending at `end`, oldest first. One range query per series, step = T."""
    T = plan.spec.scaling.throughput.interval_seconds
    ends = window_ends(float(end), float(T), intervals)
    queries = throughput_queries(plan)
    sq = _throughput_shared(plan)
    results: list[list[Series]] = await asyncio.gather(
        *(_range(client, shared, q, sq[k], ends[0], ends[-1], float(T)) for k, q in queries.items())
    )
    per_key: dict[str, dict[int, float]] = {}
    for key, series in zip(queries, results):
        if len(series) > 1:
            raise MetricsUnavailable(
                f"plan {plan.name!r}: {len(series)} series for {key} where one was expected "
                f"(duplicated recording rules?)"
            )
        # Prometheus answers at start + i*step; index by step so float noise cannot misalign.
        per_key[key] = {
            round((t - ends[0]) / T): v for s in series for t, v in s.points
        }
    out: list[tuple[float, Optional[TrafficWindow]]] = []
    for i, t_end in enumerate(ends):
        if i not in per_key["requests"]:
            out.append((t_end, None))
            continue
        try:
            out.append((t_end, _window(plan, T, {k: per_key[k].get(i) for k in per_key})))
        except WindowRejected:
            # NaN or negative request count: no usable count, like no data (history cannot
            # hold the window; a restart replays the windows after it)
            out.append((t_end, None))
    return out


async def read_traffic_history(
    client: PromClient, plan: Plan, end: float, intervals: int, *, shared: Optional[SharedReads] = None
) -> list[TrafficWindow]:
    """The windows ending at end - (intervals-1)*T, ..., end (see the module doc for the grid).

    Returns the most recent run of consecutive windows that have request data, oldest
    first: predictors assume evenly spaced points, so anything before a gap is dropped.
    [] when there is no history at all (a fresh deployment); a failed query raises.
    """
    grid = await read_traffic_history_grid(client, plan, end, intervals, shared=shared)
    first = 0
    for i, (_, w) in enumerate(grid):
        if w is None:
            first = i + 1
    return [w for _, w in grid[first:] if w is not None]


async def read_ready(
    client: PromClient, plan: Plan, at: Optional[float], workers: Sequence[WorkerLoad],
    *, shared: Optional[SharedReads] = None, reads: Optional[PlanReads] = None,
) -> ReadyReading:
    """Ready replicas per pool at `at`: kube-state-metrics' count where the pool's scale
    target has one (`ready_queries`) and it has a series, else the workers reporting
    per-worker series (`workers`, as read_workers gives them), else no entry."""
    queries = ready_queries(plan) if reads is None else reads.ready
    sq = _ready_shared(plan) if reads is None else reads.ready_shared
    results = await asyncio.gather(*(_instant(client, shared, q, sq.get(p), at) for p, q in queries.items()))
    by_pool = dict(zip(queries, results))
    reporting = ready_replicas(tuple(workers))
    counts: dict[str, int] = {}
    sources: dict[str, str] = {}
    for pool in plan.pool_names:
        value = _single(plan, f"ready replicas of {pool}", by_pool.get(pool, []))
        if value is not None and math.isfinite(value) and value >= 0:
            counts[pool], sources[pool] = int(round(value)), "kube-state-metrics"
        elif pool in reporting:
            counts[pool], sources[pool] = reporting[pool], "workers"
        else:
            sources[pool] = "none"
    return ReadyReading(counts, sources, queries)


def read_traffic_sync(plan: Plan, at: Optional[float] = None, credential: Optional[Credential] = None) -> TrafficReading:
    """One `read_traffic_detail` from synchronous code, with its own client (and the
    credentials entry the plan names, see `credentials.check_access`)."""

    async def _read() -> TrafficReading:
        async with PromClient(plan.spec.metrics.prometheus, credential=credential) as client:
            return await read_traffic_detail(client, plan, at)

    return asyncio.run(_read())


class PromReader:
    """The decision loop's Reader (scaler.service.loop.Reader) over one PromClient.

    A series that comes back empty is logged once (WARNING, with the query: series and
    selector), and again only after it has been back (INFO)."""

    def __init__(self, client: PromClient, shared: Optional[SharedReads] = None) -> None:
        self.client = client
        self.shared = shared  # the scaler's reads shared across plans (None: every plan its own queries)
        self._reads: Optional[tuple[Plan, PlanReads]] = None  # the queries of the plan last read
        self._missing: set[tuple[str, str, str]] = set()  # (namespace, plan, signal)

    def _plan_reads(self, plan: Plan) -> PlanReads:
        if self._reads is None or self._reads[0] is not plan:
            self._reads = (plan, plan_reads(plan))
        return self._reads[1]

    def _note(self, plan: Plan, signal: str, query: str, missing: bool, effect: str) -> None:
        key = (plan.namespace, plan.name, signal)
        if missing and key not in self._missing:
            self._missing.add(key)
            log.warning("plan %s/%s: no series for %s: %s; query: %s", plan.namespace, plan.name, signal, effect, query)
        elif not missing and key in self._missing:
            self._missing.discard(key)
            log.info("plan %s/%s: %s is back; query: %s", plan.namespace, plan.name, signal, query)

    async def traffic(self, plan: Plan, at: float) -> TrafficWindow:
        reading = await read_traffic_detail(self.client, plan, at=at, shared=self.shared, reads=self._plan_reads(plan))
        for key, query in reading.queries.items():
            if key != "requests":  # no request counter raises instead
                self._note(plan, key, query, reading.paths[key] == "none", "no value: the decision goes without it")
        return reading.window

    async def ready(self, plan: Plan, at: Optional[float], workers: tuple[WorkerLoad, ...]) -> dict[str, int]:
        reading = await read_ready(self.client, plan, at, workers, shared=self.shared, reads=self._plan_reads(plan))
        for pool, query in reading.queries.items():
            source = reading.sources[pool]
            effect = (
                f"counting the {reading.counts[pool]} worker(s) reporting per-worker series"
                if source == "workers"
                else "no ready count: the planner uses its previous decision"
            )
            self._note(plan, f"ready_replicas.{pool}", query, source != "kube-state-metrics", effect)
        return dict(reading.counts)

    async def workers(self, plan: Plan, at: Optional[float]) -> tuple[WorkerLoad, ...]:
        return await read_workers(self.client, plan, at=at, shared=self.shared, reads=self._plan_reads(plan))

    async def history(self, plan: Plan, end: float, intervals: int) -> list[TrafficWindow]:
        return await read_traffic_history(self.client, plan, end, intervals, shared=self.shared)

    async def worker_history(
        self, plan: Plan, end: float, ticks: int
    ) -> list[tuple[float, tuple[WorkerLoad, ...]]]:
        return await read_workers_history(self.client, plan, end, ticks, shared=self.shared)
