"""The pure half of `dynplan profile sweep`: which points to measure, and how measured
requests become a profile. No I/O, no clock: `sweep.py` runs the plan and calls these.

Method (the one Dynamo's pre-deployment profiler uses, measured from the client side):

- Prefill: one request at a time (batch 1), `max_tokens: 1`, at ISLs spread evenly over
  [isl_min, isl_max]; each ISL `repeats` times with distinct prompts (no prefix-cache hit).
  TTFT is the median; `prefill_thpt_per_gpu = isl / ttft_ms * 1000 / prefill_gpus`.
- Decode: for `context_points` ISLs and OSL `osl`, `n` concurrent requests for n from 1 up to
  the most the KV cache holds (`max_kv_tokens // (isl + osl)`, in whole 16-token blocks,
  capped by max_concurrency).
  ITL (the median over the streams) and throughput (n / ITL) come from the steady window in
  which all n streams are decoding (after the last first token, before the first last
  token), so neither the batch's prefills nor its tail are counted. `x_kv_usage = n * (isl + osl/2) / max_kv_tokens` and
  `y_context_length = isl + osl/2`, Dynamo's definitions.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from scaler.core.profile import MIN_DECODE_POINTS, MIN_PREFILL_POINTS, Profile, profile_from_raw, profile_problems

# A window shorter than this many tokens per stream is too coarse to time (chunk phase
# alignment alone is one token): the point falls back to per-request ITL.
MIN_WINDOW_TOKENS = 4
MAX_POINTS_PER_AXIS = 64  # a sweep of more is a typo; Dynamo's defaults are 16 prefill, 6 x ~8 decode
MAX_TOKENS = 1_000_000
MAX_CONCURRENCY = 2048  # Dynamo's profiler caps decode concurrency at 2000


@dataclass(frozen=True)
class SweepConfig:
    """What to measure: the grid and the engine facts the arithmetic needs."""

    isl_min: int
    isl_max: int
    isl_points: int
    repeats: int
    osl: int
    context_points: int
    concurrency_points: int
    max_concurrency: int
    max_kv_tokens: int
    prefill_gpus: int = 1
    decode_gpus: int = 1

    def problems(self) -> list[tuple[str, str]]:
        """(option, message) for every inconsistent value; empty when the plan can run."""
        out: list[tuple[str, str]] = []
        if not 1 <= self.isl_min < self.isl_max <= MAX_TOKENS:
            out.append(("--isl-min/--isl-max", f"need 1 <= isl-min < isl-max <= {MAX_TOKENS}, got {self.isl_min} and {self.isl_max}"))
        for name, v, lo, hi in (
            ("--isl-points", self.isl_points, MIN_PREFILL_POINTS, MAX_POINTS_PER_AXIS),
            ("--context-points", self.context_points, 1, MAX_POINTS_PER_AXIS),
            ("--concurrency-points", self.concurrency_points, 2, MAX_POINTS_PER_AXIS),
            ("--repeats", self.repeats, 1, 100),
            ("--osl", self.osl, 2 * MIN_WINDOW_TOKENS, 100_000),
            ("--max-concurrency", self.max_concurrency, 1, MAX_CONCURRENCY),
            ("--prefill-gpus", self.prefill_gpus, 1, 1024),
            ("--decode-gpus", self.decode_gpus, 1, 1024),
        ):
            if not lo <= v <= hi:
                out.append((name, f"must be in [{lo}, {hi}], got {v}"))
        if self.max_kv_tokens < 1:
            out.append(("--max-kv-tokens", f"must be positive, got {self.max_kv_tokens}"))
        elif not out and self.max_kv_tokens < self.isl_min + self.osl:
            out.append(("--max-kv-tokens", f"{self.max_kv_tokens} tokens hold not even one request of ISL {self.isl_min} + OSL {self.osl}"))
        if not out and self.context_points * (self.concurrency_points) < MIN_DECODE_POINTS:
            out.append(("--context-points", f"the decode grid needs at least {MIN_DECODE_POINTS} points"))
        return out

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class PrefillPoint:
    isl: int

    @property
    def key(self) -> str:
        return f"prefill/isl={self.isl}"


@dataclass(frozen=True)
class DecodePoint:
    isl: int
    concurrency: int

    @property
    def key(self) -> str:
        return f"decode/isl={self.isl}/n={self.concurrency}"


@dataclass(frozen=True)
class SweepPlan:
    prefill: tuple[PrefillPoint, ...]
    decode: tuple[DecodePoint, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.prefill) + tuple(p.key for p in self.decode)


def even_grid(lo: int, hi: int, n: int) -> tuple[int, ...]:
    """`n` integers spread evenly over [lo, hi], both ends included, no repeats."""
    if n <= 1 or hi <= lo:
        return (lo,)
    return tuple(sorted({round(lo + (hi - lo) * i / (n - 1)) for i in range(n)}))


KV_BLOCK = 16  # vLLM's default block size: a request holds whole blocks


def concurrency_grid(isl: int, osl: int, max_kv_tokens: int, cap: int, n: int) -> tuple[int, ...]:
    """1, then evenly up to the most requests of `isl + osl` tokens the KV cache holds (at
    most `cap`): the planner reads the high-usage end (the best throughput within an ITL
    target), so the points are spread linearly as Dynamo's profiler spreads them. Each
    request's tokens are rounded up to whole KV blocks, so the heaviest batch fits at its
    end and the engine never preempts part of it."""
    per_request = -(-(isl + osl) // KV_BLOCK) * KV_BLOCK
    most = max(1, min(cap, max_kv_tokens // per_request))
    return even_grid(1, most, n)


def plan_sweep(cfg: SweepConfig) -> SweepPlan:
    """The points in the order they are measured: prefill by ISL, then decode by context and
    concurrency (each context row from light to heavy load)."""
    prefill = tuple(PrefillPoint(i) for i in even_grid(cfg.isl_min, cfg.isl_max, cfg.isl_points))
    decode: list[DecodePoint] = []
    # the longest context must still leave room for OSL tokens and one request in the cache
    ctx_hi = max(cfg.isl_min, min(cfg.isl_max, cfg.max_kv_tokens - cfg.osl))
    for isl in even_grid(cfg.isl_min, ctx_hi, cfg.context_points):
        for n in concurrency_grid(isl, cfg.osl, cfg.max_kv_tokens, cfg.max_concurrency, cfg.concurrency_points):
            decode.append(DecodePoint(isl, n))
    return SweepPlan(prefill, tuple(decode))


# -- what one request reports --------------------------------------------------------------


@dataclass(frozen=True)
class StreamTiming:
    """One streamed request, as the client saw it. Times are seconds on one monotonic clock."""

    sent: float
    chunk_times: tuple[float, ...]  # arrival of each chunk carrying generated text
    prompt_tokens: int | None
    completion_tokens: int | None

    @property
    def ttft_ms(self) -> float:
        return (self.chunk_times[0] - self.sent) * 1000.0

    @property
    def tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens else len(self.chunk_times)


@dataclass(frozen=True)
class Spread:
    """Median and spread of repeated timings (ms or tokens/s)."""

    median: float
    p10: float
    p90: float
    min: float
    max: float
    n: int

    @staticmethod
    def of(values: Sequence[float]) -> Spread:
        vs = sorted(float(v) for v in values)
        if not vs:
            raise ValueError("no values")
        return Spread(median=statistics.median(vs), p10=_quantile(vs, 0.1), p90=_quantile(vs, 0.9), min=vs[0], max=vs[-1], n=len(vs))

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class PrefillResult:
    """One measured prefill point."""

    target_isl: int
    isl: int  # the prompt tokens the server reported (median over the repeats)
    ttft_ms: Spread

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "prefill", "target_isl": self.target_isl, "isl": self.isl, "ttft_ms": self.ttft_ms.to_dict()}


@dataclass(frozen=True)
class DecodeResult:
    """One measured decode point."""

    target_isl: int
    concurrency: int
    isl: int
    osl: float  # generated tokens per request (median)
    itl_ms: Spread  # over the streams of the point
    tokens_per_s: float  # the engine's output tokens per second in the steady window
    ttft_ms: Spread
    window_s: float
    method: str  # "steady-window" | "per-request"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "decode", "target_isl": self.target_isl, "concurrency": self.concurrency, "isl": self.isl,
            "osl": round(self.osl, 2), "itl_ms": self.itl_ms.to_dict(), "tokens_per_s": round(self.tokens_per_s, 3),
            "ttft_ms": self.ttft_ms.to_dict(), "window_s": round(self.window_s, 4), "method": self.method,
        }


def result_from_dict(doc: Mapping[str, Any]) -> PrefillResult | DecodeResult:
    """The inverse of `to_dict` (the resume journal); raises KeyError/TypeError/ValueError."""
    if doc["kind"] == "prefill":
        return PrefillResult(int(doc["target_isl"]), int(doc["isl"]), Spread(**doc["ttft_ms"]))
    if doc["kind"] == "decode":
        return DecodeResult(
            int(doc["target_isl"]), int(doc["concurrency"]), int(doc["isl"]), float(doc["osl"]), Spread(**doc["itl_ms"]),
            float(doc["tokens_per_s"]), Spread(**doc["ttft_ms"]), float(doc["window_s"]), str(doc["method"]),
        )
    raise ValueError(f"unknown kind {doc['kind']!r}")


def result_key(r: PrefillResult | DecodeResult) -> str:
    if isinstance(r, PrefillResult):
        return PrefillPoint(r.target_isl).key
    return DecodePoint(r.target_isl, r.concurrency).key


def prefill_result(target_isl: int, streams: Sequence[StreamTiming]) -> PrefillResult:
    """A prefill point from its repeats (each one request alone, `max_tokens: 1`)."""
    isl = _median_int([s.prompt_tokens for s in streams], target_isl)
    return PrefillResult(target_isl, isl, Spread.of([s.ttft_ms for s in streams]))


def _median_int(values: Iterable[int | None], default: int) -> int:
    known = [v for v in values if v]
    return int(statistics.median_low(known)) if known else default


def decode_result(target_isl: int, streams: Sequence[StreamTiming]) -> DecodeResult:
    """A decode point from its `n` concurrent streams.

    Steady window: from the last stream's first token to the first stream's last token, all
    n are decoding. Each stream's ITL is timed on its own chunks inside the window (first to
    last of them, over the tokens between: chunks x tokens per chunk, for engines that send
    several a chunk), so both ends are that stream's own arrivals and delivery jitter does
    not bias the count. The engine's output rate is n / median ITL: the n streams of one
    batch advance together, and the median ignores a stream whose few chunks arrived in a
    burst. When
    some stream has fewer than MIN_WINDOW_TOKENS in the window (the batch's prefills took
    most of the run), each stream's whole (last - first) / (tokens - 1) is used instead.
    """
    if not streams or any(len(s.chunk_times) < 2 for s in streams):
        raise ValueError("every stream of a decode point needs at least two chunks")
    n = len(streams)
    isl = _median_int([s.prompt_tokens for s in streams], target_isl)
    osl = float(statistics.median(s.tokens for s in streams))
    start = max(s.chunk_times[0] for s in streams)
    end = min(s.chunk_times[-1] for s in streams)
    ttft = Spread.of([s.ttft_ms for s in streams])
    windowed: list[float] = []
    for s in streams:
        inside = [t for t in s.chunk_times if start <= t <= end]
        tokens = (len(inside) - 1) * s.tokens / len(s.chunk_times)
        if tokens < MIN_WINDOW_TOKENS:
            break
        windowed.append((inside[-1] - inside[0]) * 1000.0 / tokens)
    if len(windowed) == n:
        itl = Spread.of(windowed)
        return DecodeResult(target_isl, n, isl, osl, itl, n * 1000.0 / itl.median, ttft, end - start, "steady-window")
    whole = [(s.chunk_times[-1] - s.chunk_times[0]) * 1000.0 / ((len(s.chunk_times) - 1) * s.tokens / len(s.chunk_times)) for s in streams]
    itl = Spread.of(whole)
    return DecodeResult(target_isl, n, isl, osl, itl, n * 1000.0 / itl.median, ttft, 0.0, "per-request")


# -- results -> profile --------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileArrays:
    """The Dynamo arrays built from results, before validation."""

    prefill: dict[str, list[float]]
    decode: dict[str, Any]
    dropped: tuple[str, ...] = field(default=())  # keys of results left out, with why


def profile_arrays(
    prefill: Sequence[PrefillResult], decode: Sequence[DecodeResult], *, max_kv_tokens: int, prefill_gpus: int, decode_gpus: int
) -> ProfileArrays:
    """Dynamo's arrays from measured points (sorted by ISL, then context and KV usage)."""
    dropped: list[str] = []
    seen: set[int] = set()
    isl: list[float] = []
    ttft: list[float] = []
    thpt: list[float] = []
    for r in sorted(prefill, key=lambda r: (r.isl, r.target_isl)):
        if r.isl in seen:  # two targets the server counted alike: the profile needs distinct ISLs
            dropped.append(f"{result_key(r)}: same prompt length as another point ({r.isl} tokens)")
            continue
        seen.add(r.isl)
        isl.append(float(r.isl))
        ttft.append(round(r.ttft_ms.median, 4))
        thpt.append(round(r.isl / r.ttft_ms.median * 1000.0 / prefill_gpus, 3))
    kv: list[float] = []
    ctx: list[float] = []
    itl: list[float] = []
    dthpt: list[float] = []
    for d in sorted(decode, key=lambda d: (d.target_isl, d.concurrency)):
        context = d.isl + d.osl / 2.0
        kv.append(round(min(d.concurrency * context / max_kv_tokens, 1.0), 6))
        ctx.append(round(context, 2))
        itl.append(round(d.itl_ms.median, 4))
        dthpt.append(round(d.tokens_per_s / decode_gpus, 3))
    return ProfileArrays(
        prefill={"prefill_isl": isl, "prefill_ttft": ttft, "prefill_thpt_per_gpu": thpt},
        decode={"x_kv_usage": kv, "y_context_length": ctx, "z_itl": itl, "z_thpt_per_gpu": dthpt, "max_kv_tokens": float(max_kv_tokens)},
        dropped=tuple(dropped),
    )


def build_profile(arrays: ProfileArrays, source: str = "<sweep>") -> tuple[Profile | None, list[tuple[str, str]]]:
    """The profile, or None and the (field, message) problems that keep it from being one."""
    problems = profile_problems(arrays.prefill, arrays.decode)
    if problems:
        return None, problems
    return profile_from_raw(arrays.prefill, arrays.decode, source=source), []


# -- engine facts from /metrics and /v1/models ---------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _samples(text: str, name: str) -> list[tuple[dict[str, str], str]]:
    out = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            out.append((dict(_LABEL.findall(m.group(3) or "")), m.group(4)))
    return out


def _positive_int(text: str) -> int | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return int(v) if math.isfinite(v) and v >= 1 and v == int(v) else None


@dataclass(frozen=True)
class KvCapacity:
    tokens: int
    source: str  # how it was found, for measurement.json and the log


def kv_capacity(metrics_text: str) -> KvCapacity | None:
    """The engine's KV cache size in tokens from its Prometheus text, or None.

    vLLM: the info gauge `vllm:cache_config_info`'s labels `num_gpu_blocks` x `block_size`
    (labels can be "None" before the profile run). SGLang: the gauge
    `sglang:max_total_num_tokens`. Several samples (data-parallel engines, one per rank) must
    agree: the sweep measures one engine, and a disagreement is refused rather than summed.
    """
    values: set[int] = set()
    for labels, _ in _samples(metrics_text, "vllm:cache_config_info"):
        blocks, size = _positive_int(labels.get("num_gpu_blocks", "")), _positive_int(labels.get("block_size", ""))
        if blocks and size:
            values.add(blocks * size)
    if len(values) == 1:
        return KvCapacity(values.pop(), "vllm:cache_config_info num_gpu_blocks x block_size")
    if values:
        return None
    for _, value in _samples(metrics_text, "sglang:max_total_num_tokens"):
        v = _positive_int(value)
        if v:
            values.add(v)
    if len(values) == 1:
        return KvCapacity(values.pop(), "sglang:max_total_num_tokens")
    return None


def engine_name(metrics_text: str, owned_by: str | None) -> str:
    """Which engine serves the endpoint, from its metric names (else /v1/models' owned_by)."""
    for prefix, name in (("vllm:", "vllm"), ("sglang:", "sglang"), ("dynamo_", "dynamo"), ("tgi_", "tgi")):
        if re.search(rf"^{re.escape(prefix)}", metrics_text, re.MULTILINE):
            return name
    return owned_by or "unknown"
