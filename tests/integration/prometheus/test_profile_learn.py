"""`dynplan profile learn` as a subprocess against a real Prometheus holding per-pod engine
history generated from known curves: the curves are recovered within tolerance, the written
profile round-trips through the loader and `dynplan capacity` answers on it as on the model
the history came from; thin histories and missing flags are refused with their exit codes.

History (vLLM and SGLang, aggregated; Dynamo's router gauges at the end): three pods scraped every 15 s, one load level per
pod per 60-s step. Each step: one ISL (OSL 400, so context = ISL + 200) and one KV usage,
running requests = KV usage x max_kv_tokens / context, four requests finishing with TTFT
and ITL from the known curves times 8% lognormal noise; every seventh step has requests
waiting and a TTFT 300 ms longer (queueing), which learn must leave out. Gauges change
one second after a step starts, so each step's scrapes see its own level only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from helpers import plan_dict
from prometheus import PromFactory
from scaler.cli import main
from scaler.core.interpolation import perf_model
from scaler.core.profile import profile_from_raw
from scaler.devtools.backfill import CompletedRequest, OpenMetricsWriter, engine_history, frontend_history, scrape_times
from scaler.profile_io import load_profile, write_profile_json
from scaler.sources import SOURCES

STEP = 60
SCRAPE = 15
NS = "inference"
MODEL = "llama-8b"
PODS = ("llama-0", "llama-1", "llama-2")
MAX_KV = 200_000.0
OSL = 400.0
ISLS = (500.0, 1000.0, 2000.0, 4000.0, 8000.0)
KVS = tuple(float(x) for x in np.round(np.linspace(0.1, 0.85, 8), 4))
# Recovered points within this relative error of the true curves: prefill bins hold ~60
# steps, decode cells 3 (one per pod), each step the mean of 4 requests with 8% noise.
TOL_PREFILL = 0.04
TOL_DECODE = 0.10


def ttft_ms(isl: float) -> float:
    return 20.0 + 0.04 * isl + 2e-6 * isl * isl


def itl_ms(kv: float, ctx: float) -> float:
    return 5.0 + 20.0 * kv + 0.0005 * ctx


def model_profile() -> Any:
    """The model the history is generated from, as a profile on the same grid."""
    ctxs = [i + OSL / 2 for i in ISLS]
    kv, ctx, itl, thpt = [], [], [], []
    for c in ctxs:
        for u in KVS:
            kv.append(u)
            ctx.append(c)
            itl.append(itl_ms(u, c))
            thpt.append(u * MAX_KV / c / (itl_ms(u, c) / 1000.0))
    prefill = {"prefill_isl": list(ISLS), "prefill_ttft": [ttft_ms(i) for i in ISLS],
               "prefill_thpt_per_gpu": [i / (ttft_ms(i) / 1000.0) for i in ISLS]}
    decode = {"x_kv_usage": kv, "y_context_length": ctx, "z_itl": itl, "z_thpt_per_gpu": thpt, "max_kv_tokens": MAX_KV}
    return profile_from_raw(prefill, decode, source="<model>")


def history(source_name: str, start: float, kv_max: float = 0.85) -> tuple[OpenMetricsWriter, float]:
    source = SOURCES[source_name]
    rng = np.random.default_rng(7)
    cells = [(i, u) for i in ISLS for u in KVS if u <= kv_max + 1e-9]
    requests: list[tuple[str, CompletedRequest]] = []
    load: list[tuple[str, float, float, float, float]] = []
    steps = 0
    for p, pod in enumerate(PODS):
        order = [cells[k] for k in rng.permutation(len(cells))]
        # every seventh step queued (requests waiting, TTFT 300 ms longer)
        schedule = []
        for k, cell in enumerate(order):
            schedule.append((cell, (k + p) % 7 == 6))
        for j, ((isl, kv), queued) in enumerate(schedule):
            t0 = start + j * STEP
            ctx = isl + OSL / 2
            running = kv * MAX_KV / ctx
            used = kv * MAX_KV if source_name == "sglang" else kv  # SGLang's gauge is tokens (token_usage: the fraction)
            load.append((pod, t0 + 1, running, 2.0 if queued else 0.0, used))
            for off in (5.0, 20.0, 35.0, 50.0):
                ttft = ttft_ms(isl) * float(rng.lognormal(0, 0.08)) / 1000.0 + (0.3 if queued else 0.0)
                itl = itl_ms(kv, ctx) * float(rng.lognormal(0, 0.08)) / 1000.0
                requests.append((pod, CompletedRequest(t0 + off, isl, OSL, ttft, itl, ttft + (OSL - 1) * itl)))
        steps = max(steps, len(schedule))
        load.append((pod, start + len(schedule) * STEP + 1, 0.0, 0.0, 0.0))
    end = start + (steps + 1) * STEP
    w = engine_history(requests, pods={p: "unified" for p in PODS}, start=start, end=end, step=SCRAPE, source=source,
                       model=MODEL, namespace=NS, load=load)
    if source_name == "vllm":  # the cache's size: an info gauge of value 1, no model label
        for pod in PODS:
            w.gauge("vllm:cache_config_info", {"pod": pod, "namespace": NS, "engine": "0", "num_gpu_blocks": "12500",
                                               "block_size": "16"}, [(s, 1.0) for s in scrape_times(start, end, SCRAPE)])
    return w, end


def plan_file(d: Path, source: str, url: str, profile: str | None = None) -> Path:
    doc = plan_dict(mode="agg", profile=profile, ttft_ms=300.0, itl_ms=20.0, isl=2000.0, osl=OSL)
    doc["spec"]["metrics"] = {"source": source, "selector": {"namespace": NS, "model_name": MODEL},
                              "scrapeIntervalSeconds": SCRAPE, "prometheus": {"url": url}}
    path = d / f"plan-{profile or 'none'}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def dynplan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaler.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module", params=["vllm", "sglang"])
def served(request: pytest.FixtureRequest, module_prom_factory: PromFactory) -> dict[str, Any]:
    start = float((int(__import__("time").time()) // 3600 - 3) * 3600)  # three hours ago, on the hour
    w, end = history(request.param, start)
    server = module_prom_factory(history=w)
    return {"source": request.param, "url": server.url, "start": start, "end": end}


def learn(served: dict[str, Any], d: Path, *extra: str) -> subprocess.CompletedProcess:
    plan = plan_file(d, served["source"], served["url"])
    since = int(served["end"] - served["start"])
    return dynplan("profile", "learn", "-f", str(plan), "--since", f"{since}s", "--until", str(int(served["end"])),
                   "--step", "60s", "-o", str(d / "learned"), *extra)


def test_learn_recovers_the_curves_and_capacity(served: dict[str, Any], tmp_path: Path) -> None:
    proc = learn(served, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "prefill:" in proc.stdout and "coverage: ISL 500-8000" in proc.stdout
    learned = load_profile(tmp_path / "learned")
    assert (tmp_path / "learned" / "selected_prefill_interpolation" / "raw_data.npz").is_file()
    assert learned.prefill_isl.tolist() == pytest.approx(list(ISLS))
    for isl, t in zip(learned.prefill_isl, learned.prefill_ttft_ms):
        assert t == pytest.approx(ttft_ms(isl), rel=TOL_PREFILL)
    assert len(learned.decode_kv_usage) == len(ISLS) * len(KVS)
    for kv, ctx, itl in zip(learned.decode_kv_usage, learned.decode_context, learned.decode_itl_ms):
        assert itl == pytest.approx(itl_ms(kv, ctx), rel=TOL_DECODE)
    assert learned.max_kv_tokens == pytest.approx(MAX_KV)
    m = json.loads((tmp_path / "learned" / "measurement.json").read_text())
    assert m["method"] == "learned from Prometheus history" and m["source"] == served["source"]
    assert m["pods"] == {"worker": 3}
    # every seventh step of each pod was queued: left out of the prefill fit
    assert m["samples"]["prefill"]["excluded"]["queued"] == 16  # 5 + 5 + 6 of 40 steps per pod
    assert m["coverage"]["kvUsagePoints"][1] == pytest.approx(0.85, abs=1e-6)
    checked = CliRunner().invoke(main, ["profile", "check", str(tmp_path / "learned")])
    assert checked.exit_code == 0 and "learned from Prometheus history" in checked.output.splitlines()[0]
    # the planner's reading of both, inside the covered range
    ours, truth = perf_model(learned), perf_model(model_profile())
    for isl in (700.0, 3000.0, 6000.0):
        assert ours.prefill.ttft_ms(isl) == pytest.approx(truth.prefill.ttft_ms(isl), rel=0.05)
    # capacity on the learned profile answers as on the model
    write_profile_json(model_profile(), tmp_path / "model")
    answers = {}
    for name in ("model", "learned"):
        plan = plan_file(tmp_path, served["source"], served["url"], profile=name)
        for sizing in ("dynamo", "attainment"):
            doc = yaml.safe_load(plan.read_text())
            doc["spec"]["scaling"]["throughput"]["sizing"] = sizing
            plan.write_text(yaml.safe_dump(doc, sort_keys=False))
            # in-process: the command's code path without another interpreter's imports
            out = CliRunner().invoke(main, ["capacity", "-f", str(plan), "--rate", "40", "-o", "json"])
            assert out.exit_code == 0, out.output
            answers[(name, sizing)] = json.loads(out.output)
    for sizing in ("dynamo", "attainment"):
        a, b = answers[("model", sizing)], answers[("learned", sizing)]
        ra, rb = a["pools"]["worker"]["replicas"], b["pools"]["worker"]["replicas"]
        assert abs(ra - rb) <= max(1, round(0.1 * ra)), (sizing, ra, rb)


@pytest.mark.parametrize("served", ["vllm"], indirect=True)  # the refusals are the fit's, the same for every source
def test_thin_histories_are_refused_and_nothing_is_written(served: dict[str, Any], tmp_path: Path) -> None:
    proc = learn(served, tmp_path, "--min-kv-coverage", "0.9")
    assert proc.returncode == 3, proc.stderr
    assert "no samples with KV usage above 0.9 (the highest point: 0.85)" in proc.stderr
    assert not (tmp_path / "learned").exists()
    # an hour before the history: nothing at all
    plan = plan_file(tmp_path, served["source"], served["url"])
    proc = dynplan("profile", "learn", "-f", str(plan), "--since", "1h", "--until", str(int(served["start"]) - 60),
                   "-o", str(tmp_path / "learned"), "--max-kv-tokens", "1000")
    assert proc.returncode == 3, proc.stderr
    assert f"no {served['source']} series of the worker pool's pods match " in proc.stderr
    assert "is the range right, and the selector (dynplan doctor -f PLAN)?" in proc.stderr
    assert not (tmp_path / "learned").exists()


# -- Dynamo: the frontend's per-worker router gauges ---------------------------------------
DYN_NS = "inference-llama-8b"
BLOCK = 16


def dynamo_history(start: float) -> tuple[OpenMetricsWriter, float]:
    """Three decode-type workers (aggregated engines), one ISL per step for all (the context
    is the plan's), each worker at another KV level; each scrape's gauges carry 8% noise;
    every seventh worker-step has three prompts' tokens in prefill and a TTFT 300 ms longer."""
    src = SOURCES["dynamo"]
    rng = np.random.default_rng(11)
    base = {"model": MODEL, "dynamo_namespace": DYN_NS}
    requests: list[CompletedRequest] = []
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    steps = [(isl, m) for isl in ISLS for m in range(len(KVS))]
    end = start + (len(steps) + 1) * STEP
    for j, (isl, m) in enumerate(steps):
        t0 = start + j * STEP
        ctx = isl + OSL / 2
        for off in (10.0, 30.0, 50.0):  # the plan-level ISL and OSL of the step
            requests.append(CompletedRequest(t0 + off, isl, OSL, ttft_ms(isl) / 1000, 0.01, 4.0))
        for p, worker in enumerate(PODS):
            kv = KVS[(m + p) % len(KVS)]
            queued = (j * len(PODS) + p) % 7 == 6
            for s in scrape_times(t0 + SCRAPE, t0 + STEP, SCRAPE):
                noise = lambda: float(rng.lognormal(0, 0.08))  # noqa: E731
                for attr, v in (("worker_last_isl", isl), ("worker_last_ttft_seconds", ttft_ms(isl) * noise() / 1000 + (0.3 if queued else 0.0)),
                                ("worker_last_itl_seconds", itl_ms(kv, ctx) * noise() / 1000),
                                ("worker_active_prefill_tokens", 3 * isl if queued else isl),
                                ("worker_active_decode_blocks", kv * MAX_KV / BLOCK)):
                    points.setdefault((getattr(src, attr), worker), []).append((s, v))
    w = frontend_history(requests, start=start, end=end, step=SCRAPE, labels=base, source=src)
    for (metric, worker), pts in points.items():
        w.gauge(metric, {**base, "worker_id": worker, "dp_rank": "0", "worker_type": "decode"}, pts)
    return w, end


def test_learn_from_dynamo_router_gauges(module_prom_factory: PromFactory, tmp_path: Path) -> None:
    start = float((int(__import__("time").time()) // 3600 - 3) * 3600)
    w, end = dynamo_history(start)
    server = module_prom_factory(history=w)
    doc = plan_dict(mode="agg", profile=None, ttft_ms=300.0, itl_ms=20.0, isl=2000.0, osl=OSL)
    doc["spec"]["metrics"] = {"source": "dynamo", "selector": {"dynamo_namespace": DYN_NS}, "scrapeIntervalSeconds": SCRAPE,
                              "prometheus": {"url": server.url}}
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))
    args = ["profile", "learn", "-f", str(plan), "--since", f"{int(end - start)}s", "--until", str(int(end)), "-o", str(tmp_path / "learned")]
    proc = dynplan(*args)
    assert proc.returncode == 2 and "--kv-block-size: is required with source dynamo" in proc.stderr
    proc = dynplan(*args, "--kv-block-size", str(BLOCK), "--max-kv-tokens", str(int(MAX_KV)))
    assert proc.returncode == 0, proc.stderr
    learned = load_profile(tmp_path / "learned")
    for isl, t in zip(learned.prefill_isl, learned.prefill_ttft_ms):
        assert t == pytest.approx(ttft_ms(isl), rel=TOL_PREFILL)
    assert len(learned.decode_kv_usage) == len(ISLS) * len(KVS)
    for kv, ctx, itl in zip(learned.decode_kv_usage, learned.decode_context, learned.decode_itl_ms):
        assert itl == pytest.approx(itl_ms(kv, ctx), rel=TOL_DECODE)
    m = json.loads((tmp_path / "learned" / "measurement.json").read_text())
    assert m["samples"]["prefill"]["excluded"]["queued"] == sum(1 for k in range(len(ISLS) * len(KVS) * len(PODS)) if k % 7 == 6)
    assert m["maxKvTokens"] == {"value": MAX_KV, "from": "--max-kv-tokens"}
