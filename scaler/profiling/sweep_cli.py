"""`dynplan profile sweep --url URL --model NAME -o DIR`: measure a profile on a live
OpenAI-compatible endpoint (the method: `sweep_plan`; running it: `sweep`).

Exit codes: 0 complete; 2 bad flags, or an endpoint that is not an OpenAI streaming one;
3 the endpoint unreachable or failing (a partial profile is written if valid); 1 the time
limit stopped the sweep; 130 Ctrl-C or SIGTERM (likewise). `--resume` continues any of them.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click

from scaler.clikit import handle_errors

DEFAULT_MAX_CONTEXT = 8192  # when the endpoint does not say its max_model_len
_ISL_MARGIN = 16  # tokens kept below the context limit: a prompt's count can land a few over


def _option_error(option: str, message: str) -> Exception:
    from scaler.errors import FieldError, InputError

    return InputError([FieldError(option, "", message)])


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@click.command("sweep")
@click.option("--url", required=True, help="Base URL of the OpenAI-compatible endpoint, e.g. http://vllm:8000 (with or without /v1).")
@click.option("--model", required=True, help="Model name, as /v1/models lists it.")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False), help="Profile directory to write.")
@click.option("--api-key-file", type=click.Path(dir_okay=False), help="File holding the API key (sent as a Bearer token, never shown).")
@click.option("--isl-min", type=int, default=100, show_default=True, help="Shortest input length, tokens.")
@click.option("--isl-max", type=int, help="Longest input length (default: the model's context limit less --osl).")
@click.option("--isl-points", type=int, default=16, show_default=True, help="Prefill points between --isl-min and --isl-max.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Requests per prefill point (the TTFT is their median).")
@click.option("--osl", type=int, default=500, show_default=True, help="Output tokens per decode request.")
@click.option("--context-points", type=int, default=6, show_default=True, help="Decode input lengths between --isl-min and --isl-max.")
@click.option("--concurrency-points", type=int, default=8, show_default=True, help="Decode concurrencies per input length, 1 .. KV capacity.")
@click.option("--max-concurrency", type=int, default=256, show_default=True, help="Most concurrent decode requests.")
@click.option("--max-kv-tokens", type=int, help="The engine's KV cache size, tokens (default: read from its /metrics).")
@click.option("--metrics-url", help="Where the engine's Prometheus metrics are (default: URL/metrics).")
@click.option("--gpus", type=int, default=1, show_default=True, help="GPUs of the engine (TP x PP), for per-GPU throughput.")
@click.option("--prefill-gpus", type=int, help="GPUs of a prefill engine, if not --gpus (disaggregated).")
@click.option("--decode-gpus", type=int, help="GPUs of a decode engine, if not --gpus (disaggregated).")
@click.option("--tokenizer", type=click.Path(dir_okay=False, exists=True), help="The model's tokenizer.json (optional extra 'tokenizer'); default: count with the server's usage.")
@click.option("--ignore-eos/--no-ignore-eos", default=True, show_default=True, help="Send ignore_eos/min_tokens so every decode request makes --osl tokens.")
@click.option("--time-limit", type=float, default=3600.0, show_default=True, help="Stop after this many seconds (a valid partial profile is kept).")
@click.option("--request-timeout", type=float, default=600.0, show_default=True, help="Total deadline of one request, seconds.")
@click.option("--api", type=click.Choice(["completions", "chat"]), default="completions", show_default=True,
              help="Stream /v1/completions, or /v1/chat/completions (the prompt as one user message; its template's tokens count in ISL).")
@click.option("--dry-run", is_flag=True, help="Print the points the sweep would measure (reads the endpoint's facts only) and exit.")
@click.option("--resume", is_flag=True, help="Continue an interrupted sweep into DIR with the same flags.")
@click.option("--overwrite", is_flag=True, help="Replace DIR (and drop an interrupted sweep's journal).")
@handle_errors
def sweep(
    url: str, model: str, output: str, api_key_file: Optional[str], isl_min: int, isl_max: Optional[int], isl_points: int,
    repeats: int, osl: int, context_points: int, concurrency_points: int, max_concurrency: int, max_kv_tokens: Optional[int],
    metrics_url: Optional[str], gpus: int, prefill_gpus: Optional[int], decode_gpus: Optional[int], tokenizer: Optional[str],
    ignore_eos: bool, time_limit: float, request_timeout: float, api: str, dry_run: bool, resume: bool, overwrite: bool,
) -> None:
    """Measure a profile on a live OpenAI-compatible endpoint (vLLM, SGLang, Dynamo, TGI).

    Prefill TTFT at batch 1 over input lengths, then decode ITL and throughput over
    concurrency x context up to the KV capacity; writes Dynamo's layout and measurement.json.
    """
    from scaler.errors import EndpointUnavailable
    from scaler.profiling import sweep as sw
    from scaler.profiling import sweep_plan as sp
    from scaler.profiling.openai_client import Client, parse_base_url, read_api_key
    from scaler.profiling.prompts import Calibrator, tokenizer_counter
    from scaler.progress import tty_progress

    started = time.monotonic()
    base = parse_base_url(url)
    if metrics_url is not None:
        metrics_url = parse_base_url(metrics_url, "--metrics-url")
    if not (0 < time_limit <= 7 * 86400):
        raise _option_error("--time-limit", f"must be in (0, 604800] seconds, got {time_limit:g}")
    if not (0 < request_timeout <= 86400):
        raise _option_error("--request-timeout", f"must be in (0, 86400] seconds, got {request_timeout:g}")
    out = Path(output)
    journal_path = sw.work_dir_for(out) / "journal.jsonl"
    if resume and overwrite:
        raise _option_error("--resume", "--resume continues a sweep, --overwrite starts again: pick one")
    if out.exists() and not out.is_dir():
        raise _option_error("--output", f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (overwrite or resume or dry_run):
        raise _option_error("--output", f"{out} exists and is not empty; pass --overwrite to replace it")
    if journal_path.exists() and not (overwrite or resume or dry_run):
        raise _option_error("--output", f"an interrupted sweep into {out} can be continued: pass --resume (or --overwrite to start again)")
    key = read_api_key(api_key_file) if api_key_file else None
    client = Client(base, model, key, timeout_s=request_timeout, api=api)

    facts = sw.endpoint_facts(client, model, metrics_url)
    metrics = facts["metrics"]
    kv_source = "--max-kv-tokens"
    if max_kv_tokens is None:
        found = sp.kv_capacity(metrics or "")
        if found is None:
            where = metrics_url or f"{base}/metrics"
            raise _option_error(
                "--max-kv-tokens",
                f"the engine's KV capacity is not in {where} (vllm:cache_config_info or sglang:max_total_num_tokens); pass it",
            )
        max_kv_tokens, kv_source = found.tokens, found.source
    entry = facts["entry"]
    max_len = entry.get("max_model_len")
    max_len = max_len if isinstance(max_len, int) and not isinstance(max_len, bool) and max_len > 0 else None
    context_limit = min(max_len or DEFAULT_MAX_CONTEXT, max_kv_tokens)
    if isl_max is None:
        isl_max = max(isl_min + 1, context_limit - osl - _ISL_MARGIN)
    elif max_len is not None and isl_max + osl > max_len:
        raise _option_error("--isl-max", f"{isl_max} + --osl {osl} exceeds the model's context limit {max_len} (/v1/models max_model_len)")
    cfg = sp.SweepConfig(
        isl_min=isl_min, isl_max=isl_max, isl_points=isl_points, repeats=repeats, osl=osl, context_points=context_points,
        concurrency_points=concurrency_points, max_concurrency=max_concurrency, max_kv_tokens=max_kv_tokens,
        prefill_gpus=prefill_gpus or gpus, decode_gpus=decode_gpus or gpus,
    )
    if gpus < 1:
        raise _option_error("--gpus", f"must be at least 1, got {gpus}")
    problems = cfg.problems()
    if problems:
        from scaler.errors import FieldError, InputError

        raise InputError([FieldError(opt, "", msg) for opt, msg in problems])
    plan = sp.plan_sweep(cfg)
    engine = sp.engine_name(metrics or "", entry.get("owned_by") if isinstance(entry.get("owned_by"), str) else None)
    if dry_run:
        _print_plan(plan, cfg, engine, kv_source)
        return
    header = {
        "journal": sw.JOURNAL_VERSION, "url": base, "model": model, "api": api, "config": cfg.to_dict(), "tokenizer": tokenizer,
        "ignoreEos": ignore_eos, "startedAt": sw.now_iso(),
    }
    journal, prior = sw.Journal.open(out, header, resume=resume)
    run = sw.SweepRun(plan, cfg, {sp.result_key(r): r for r in prior if sp.result_key(r) in set(plan.keys)})

    def server_count(text: str) -> int:
        timing = client.stream(text, 1, ignore_eos=ignore_eos)
        if timing.prompt_tokens is None:
            raise _option_error("--tokenizer", "the server's usage has no prompt_tokens to count with; pass --tokenizer")
        return timing.prompt_tokens

    counter = tokenizer_counter(tokenizer) if tokenizer else server_count
    calibrator = Calibrator(counter)
    measurer = sw.Measurer(client, calibrator, repeats, osl, ignore_eos)
    deadline = started + time_limit
    failure: Exception | None = None
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # a Job's stop is a Ctrl-C
    try:
        with tty_progress("sweeping") as progress:
            if run.missing:
                calibrator.fit(max(1, isl_min // 2), max(2, isl_max // 2))
            sw.run_sweep(run, measurer, journal, deadline=deadline, progress=progress)
    except KeyboardInterrupt:
        run.stopped, interrupted = "an interrupt", True
    except EndpointUnavailable as exc:
        run.stopped, failure = "an endpoint failure", exc
    finally:
        signal.signal(signal.SIGTERM, previous)

    facts_doc = {
        "engine": engine, "model": model, "url": base, "api": f"/v1/{'chat/' if api == 'chat' else ''}completions",
        "maxKvTokens": max_kv_tokens, "maxKvTokensSource": kv_source,
        "maxModelLen": max_len, "prefillGpus": cfg.prefill_gpus, "decodeGpus": cfg.decode_gpus,
        "tokenCounting": f"tokenizer {Path(tokenizer).name}" if tokenizer else "server usage.prompt_tokens (calibrated)",
        "startedAt": journal.header.get("startedAt"), "endedAt": sw.now_iso(), "seconds": round(time.monotonic() - started, 1),
    }
    written, problems = sw.finish(run, out, facts_doc)
    if run.stopped is None:
        if not written:
            from scaler.errors import FieldError, ProfileError

            raise ProfileError([FieldError(str(out), f, m) for f, m in problems])
        journal.remove()
        _summary(out)
        return
    measured = f"{len(run.results)} of {len(plan.keys)} points"
    kept = (
        f"a partial profile is in {out} (measurement.json lists the {len(run.missing)} missing points)"
        if written else "no profile written: the points measured so far do not make a valid one"
    )
    message = f"sweep stopped by {run.stopped} after {measured}; {kept}; --resume continues it"
    if failure is not None:
        raise EndpointUnavailable(f"{failure}; {message}")
    click.echo(f"{'interrupted' if interrupted else 'error'}: {message}", err=True)
    sys.exit(130 if interrupted else 1)


def _print_plan(plan: Any, cfg: Any, engine: str, kv_source: str) -> None:
    rows: dict[int, list[int]] = {}
    for d in plan.decode:
        rows.setdefault(d.isl, []).append(d.concurrency)
    decode_requests = sum(2 * d.concurrency for d in plan.decode)  # the warm-up and the measured batch
    click.echo(f"engine {engine}; max_kv_tokens {cfg.max_kv_tokens} ({kv_source})")
    click.echo(f"prefill: {len(plan.prefill)} points x {cfg.repeats} requests, ISL " + " ".join(str(p.isl) for p in plan.prefill))
    click.echo(f"decode: {len(plan.decode)} points, OSL {cfg.osl}, {decode_requests} requests")
    for isl, ns in rows.items():
        click.echo(f"  ISL {isl}: concurrency " + " ".join(str(n) for n in ns))


def _summary(out: Path) -> None:
    from scaler.profile_io import load_profile

    p = load_profile(out)
    click.echo(
        f"prefill: {len(p.prefill_isl)} points, ISL {p.prefill_isl.min():.0f}..{p.prefill_isl.max():.0f}, "
        f"TTFT {p.prefill_ttft_ms.min():.1f}..{p.prefill_ttft_ms.max():.1f} ms, "
        f"{p.prefill_thpt_per_gpu.min():.0f}..{p.prefill_thpt_per_gpu.max():.0f} tokens/s/GPU"
    )
    click.echo(
        f"decode: {len(p.decode_itl_ms)} points, context {p.decode_context.min():.0f}..{p.decode_context.max():.0f}, "
        f"KV usage {p.decode_kv_usage.min():.1%}..{p.decode_kv_usage.max():.1%}, ITL {p.decode_itl_ms.min():.2f}..{p.decode_itl_ms.max():.2f} ms, "
        f"{p.decode_thpt_per_gpu.min():.0f}..{p.decode_thpt_per_gpu.max():.0f} tokens/s/GPU (max_kv_tokens {p.max_kv_tokens:.0f})"
    )
    click.echo(f"wrote {out}: Dynamo's layout (JSON and npz) and measurement.json")
    for context in sorted(set(p.decode_context.tolist())):
        top = float(p.decode_kv_usage[p.decode_context == context].max())
        if top < 0.9:  # the planner holds ITL flat above it: optimistic if the engine is loaded further
            click.echo(
                f"warning: context {context:.0f} measured up to KV usage {top:.0%} only (--max-concurrency); "
                "above it the planner holds its ITL flat",
                err=True,
            )
