"""Running a sweep (`sweep_plan` says what to measure) against a live endpoint: the requests,
the resume journal, and writing the result. The edge: network, clock, files.

Files, for `-o DIR`:
- `<parent>/.<name>.sweep/journal.jsonl`: a header line (endpoint, model, grid), then one line
  per measured point, flushed as it is measured. `--resume` reads it and measures only what
  is missing; a finished sweep removes it.
- DIR: the profile in Dynamo's layout (`profile_io.write_profile`) and `measurement.json`,
  built in a sibling temporary directory and renamed into place: DIR is never half-written.
  An interrupted sweep (Ctrl-C, SIGTERM, the time limit, the endpoint gone) writes DIR only
  when the points measured so far make a valid profile, marked `"complete": false` with the
  missing points listed; otherwise nothing, and the journal keeps what was measured.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from scaler.errors import EndpointIncompatible, EndpointUnavailable, FieldError, InputError
from scaler.profiling.openai_client import Client, run_all
from scaler.profiling.prompts import Calibrator, prompt_text
from scaler.profiling.sweep_plan import (
    DecodePoint,
    DecodeResult,
    PrefillPoint,
    PrefillResult,
    SweepConfig,
    SweepPlan,
    build_profile,
    decode_result,
    prefill_result,
    profile_arrays,
    result_from_dict,
)

JOURNAL_VERSION = 1
MAX_JOURNAL_BYTES = 16 << 20
WARMUP_CONCURRENCY = 64  # prefix-cache warm-up requests in flight at once
_RETRY_PAUSE_S = 1.0
_UNCOMPARED = {"startedAt"}  # header keys a resumed run may differ in

Result = PrefillResult | DecodeResult
Progress = Callable[[int, int, str], None]

METHOD = (
    "dynplan profile sweep, client-side timing of an OpenAI-compatible stream (/v1/completions or /v1/chat/completions). "
    "Prefill: one request at a time (batch 1), max_tokens 1, distinct synthetic prompts; TTFT = first streamed "
    "token - request sent, median of the repeats; prefill_thpt_per_gpu = isl / ttft * 1000 / prefill GPUs. "
    "Decode: n concurrent requests of ISL isl and OSL osl (ignore_eos), the prompts sent once first with "
    "max_tokens 1 to warm the prefix cache; ITL = median over the streams of each stream's ITL inside the steady "
    "window in which all n stream (last first token to first last token), throughput = n / ITL; y_context_length = isl + osl/2, x_kv_usage = n * context / "
    "max_kv_tokens, z_thpt_per_gpu = output tokens/s / decode GPUs. ISLs are the server's usage.prompt_tokens."
)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def work_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.sweep"


class Journal:
    """The resume journal: a header, then one JSON line per measured point."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.header = path, header

    @staticmethod
    def open(out: Path, header: dict[str, Any], *, resume: bool) -> tuple[Journal, list[Result]]:
        """A new journal, or with `resume` the existing one and its points (header must match)."""
        work = work_dir_for(out)
        path = work / "journal.jsonl"
        if not resume:
            shutil.rmtree(work, ignore_errors=True)  # an older interrupted sweep (--overwrite)
            return Journal(path, header), []
        from scaler.bounded_input import read_regular_file
        from scaler.errors import InputBoundExceeded

        try:
            lines = read_regular_file(path, MAX_JOURNAL_BYTES).decode("utf-8").splitlines()
        except FileNotFoundError:
            raise InputError([FieldError(str(out), "--resume", f"no interrupted sweep to resume (no {path})")]) from None
        except (OSError, UnicodeDecodeError, InputBoundExceeded) as exc:
            raise InputError([FieldError(str(path), "--resume", f"cannot read the journal: {exc}")]) from None
        try:
            old = json.loads(lines[0])
        except (IndexError, ValueError):
            raise InputError([FieldError(str(path), "--resume", "the journal has no header; remove it and sweep again")]) from None
        differs = sorted(k for k in set(old) | set(header) if k not in _UNCOMPARED and old.get(k) != header.get(k))
        if differs:
            raise InputError([FieldError(
                str(path), "--resume",
                f"the interrupted sweep was run with other settings ({', '.join(differs)}); rerun with the same flags, "
                "or without --resume and with --overwrite to start again",
            )])
        results: list[Result] = []
        for line in lines[1:]:
            try:
                results.append(result_from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the interruption: that point is measured again
        return Journal(path, {**header, "startedAt": old.get("startedAt", header.get("startedAt"))}), results

    def append(self, result: Result) -> None:
        if not self.path.exists():  # written with the first point: a sweep that measured nothing leaves nothing
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.parent / ".journal.tmp"
            tmp.write_text(json.dumps(self.header) + "\n", encoding="utf-8")
            tmp.replace(self.path)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(result.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


@dataclass
class SweepRun:
    """A sweep in progress: the plan, what is measured, why it stopped."""

    plan: SweepPlan
    cfg: SweepConfig
    results: dict[str, Result] = field(default_factory=dict)
    stopped: Optional[str] = None  # None: complete

    @property
    def missing(self) -> list[str]:
        return [k for k in self.plan.keys if k not in self.results]


@dataclass(frozen=True)
class Measurer:
    """How one point is measured against one endpoint."""

    client: Client
    calibrator: Calibrator
    repeats: int
    osl: int
    ignore_eos: bool = True
    _salts: random.Random = field(default_factory=lambda: random.Random(int.from_bytes(os.urandom(8), "big")))

    def _words(self, isl: int) -> int:
        return self.calibrator.size(isl).words

    def _salt(self) -> int:
        # fresh per prompt and per run, so no measured prefill is a prefix-cache hit, even on resume
        return self._salts.getrandbits(62)

    def prefill(self, run: SweepRun, point: PrefillPoint, deadline: float) -> PrefillResult:
        words = self._words(point.isl)
        streams = [
            self.client.stream(prompt_text(words, self._salt()), 1, deadline=deadline, ignore_eos=self.ignore_eos)
            for _ in range(self.repeats)
        ]
        return prefill_result(point.isl, streams)

    def decode(self, run: SweepRun, point: DecodePoint, deadline: float) -> DecodeResult:
        words = self._words(point.isl)
        prompts = [prompt_text(words, self._salt()) for _ in range(point.concurrency)]
        # Warm the prefix cache with the same prompts, so the measured batch's prefills are
        # cheap and its steady window long (what Dynamo's profiler does); an engine without a
        # prefix cache still gives a window, only a shorter one.
        run_all(lambda p: self.client.stream(p, 1, deadline=deadline, ignore_eos=self.ignore_eos), prompts, WARMUP_CONCURRENCY)
        streams = run_all(
            lambda p: self.client.stream(p, self.osl, deadline=deadline, ignore_eos=self.ignore_eos),
            prompts, point.concurrency, start_together=True,
        )
        return decode_result(point.isl, streams)


def run_sweep(
    run: SweepRun,
    measurer: Measurer,
    journal: Journal,
    *,
    deadline: float,
    progress: Optional[Progress] = None,
    clock: Callable[[], float] = time.monotonic,
) -> SweepRun:
    """Measure every point not yet in `run.results`, journalling each.

    Stops at `deadline` (monotonic seconds) between points and marks the run stopped. A point
    the endpoint fails on is retried once; a second failure raises (EndpointUnavailable),
    with everything measured before it journalled. KeyboardInterrupt passes through.
    """
    points: list[PrefillPoint | DecodePoint] = [*run.plan.prefill, *run.plan.decode]
    total = len(points)
    done = sum(1 for p in points if p.key in run.results)
    for point in points:
        if point.key in run.results:
            continue
        if clock() >= deadline:
            run.stopped = "the time limit"
            break
        if progress:
            progress(done, total, point.key)
        result: Result | None = None
        for attempt in (1, 2):
            try:
                if isinstance(point, PrefillPoint):
                    result = measurer.prefill(run, point, deadline)
                else:
                    result = measurer.decode(run, point, deadline)
                break
            except EndpointUnavailable:
                if clock() >= deadline:
                    run.stopped = "the time limit"
                    return run
                if attempt == 2:
                    raise
                time.sleep(_RETRY_PAUSE_S)
        assert result is not None
        run.results[point.key] = result
        journal.append(result)
        done += 1
        if progress:
            progress(done, total, point.key)
    return run


def measurement_doc(run: SweepRun, facts: dict[str, Any], arrays_dropped: tuple[str, ...]) -> dict[str, Any]:
    """measurement.json: how, where, when, and every point's timings and spread."""
    from scaler import __version__

    ordered = [run.results[k] for k in run.plan.keys if k in run.results]
    # per target length, what the server counted (journalled points included, on resume)
    counted = {r.target_isl: r.isl for r in ordered}
    deviations = [abs(isl - target) for target, isl in counted.items()]
    return {
        "tool": "dynplan profile sweep",
        "dynplanVersion": __version__,
        "method": METHOD,
        **facts,
        "complete": run.stopped is None,
        "stoppedBy": run.stopped,
        "config": run.cfg.to_dict(),
        "prompts": {
            "targets": len(counted),
            "exact": sum(1 for d in deviations if d == 0),
            "maxDeviationTokens": max(deviations, default=0),
        },
        "missingPoints": run.missing,
        "droppedPoints": list(arrays_dropped),
        "points": [r.to_dict() for r in ordered],
    }


def finish(run: SweepRun, out: Path, facts: dict[str, Any]) -> tuple[bool, list[tuple[str, str]]]:
    """Write DIR from what was measured, when that is a valid profile: (written, problems)."""
    from scaler.profile_io import write_profile

    prefill = [r for r in run.results.values() if isinstance(r, PrefillResult)]
    decode = [r for r in run.results.values() if isinstance(r, DecodeResult)]
    arrays = profile_arrays(
        prefill, decode, max_kv_tokens=run.cfg.max_kv_tokens, prefill_gpus=run.cfg.prefill_gpus, decode_gpus=run.cfg.decode_gpus
    )
    profile, problems = build_profile(arrays, source=str(out))
    if profile is None:
        return False, problems
    doc = measurement_doc(run, facts, arrays.dropped)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_profile(profile, tmp)
    (tmp / "measurement.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return True, []


def endpoint_facts(client: Client, model: str, metrics_url: str | None) -> dict[str, Any]:
    """What the endpoint says about itself: the model entry, its /metrics text (or None)."""
    models = client.models()
    ids = [str(m.get("id")) for m in models]
    entry = next((m for m in models if m.get("id") == model), None)
    if entry is None:
        shown = ", ".join(repr(i[:80]) for i in ids[:10]) or "none"
        raise EndpointIncompatible(f"{client.base_url}/v1/models: model {model!r} is not served here (served: {shown}); check --model")
    try:
        metrics = client.metrics_text(metrics_url)
    except (EndpointUnavailable, EndpointIncompatible):
        if metrics_url is not None:
            raise
        metrics = None  # an endpoint without /metrics: --max-kv-tokens says it
    return {"entry": entry, "metrics": metrics}
