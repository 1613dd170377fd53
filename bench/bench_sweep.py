"""How well `dynplan profile sweep` recovers a known engine: the test engine
(scaler/devtools/openai_engine.py) with the latency model of tests/integration/test_profile_sweep.py,
swept through the real command, compared point by point with the model's exact profile, and
`core.planner.capacity` on both at several rates and both sizings.

Run: .venv/bin/python -m bench.bench_sweep [--runs 3]
Not a test: timing errors depend on how busy the machine is (the load average is printed);
the integration test asserts the tolerances, this prints the errors for docs/profiles.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from scaler.core import planner
from scaler.core.interpolation import perf_model
from scaler.core.plan import Plan
from scaler.devtools.openai_engine import LatencyModel, OpenAIEngineServer, ServerConfig
from scaler.profile_io import load_profile

ROOT = Path(__file__).resolve().parent.parent
LATENCY = LatencyModel(prefill_base_ms=40.0, prefill_per_token_ms=0.06, step_base_ms=15.0, step_per_seq_ms=0.4,
                       step_per_kv_token_ms=0.0006, noise=0.02)
MAX_KV, OSL = 24_000, 32
GRID = ["--isl-max", "1500", "--isl-points", "4", "--repeats", "5", "--osl", str(OSL), "--context-points", "3",
        "--concurrency-points", "2", "--max-concurrency", "16"]
# not multiples of 10: the model prefills exactly 10,000 tokens/s at ISL 1000, and a rate on a
# replica boundary would compare ceil(x - e) with ceil(x + e)
RATES = (7, 13, 27, 45, 73, 110)


def _plan(sizing: str) -> Plan:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from helpers import make_plan

    return make_plan(mode="disagg", ttft_ms=200.0, itl_ms=25.0, isl=1000.0, osl=40.0, sizing=sizing)


def one_run(seed: int) -> dict[str, object]:
    with OpenAIEngineServer(LATENCY, max_kv_tokens=MAX_KV, config=ServerConfig(max_model_len=4096), seed=seed) as server:
        out = Path(tempfile.mkdtemp()) / "profile"
        proc = subprocess.run([sys.executable, "-m", "scaler.cli", "profile", "sweep", "--url", server.url, "--model", "test-model",
                               "-o", str(out), *GRID], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    doc = json.loads((out / "measurement.json").read_text())
    got = load_profile(out)
    want = LATENCY.profile([p["isl"] for p in doc["points"] if p["kind"] == "prefill"],
                           [(p["isl"], p["concurrency"]) for p in doc["points"] if p["kind"] == "decode"],
                           osl=OSL, max_kv_tokens=MAX_KV)
    agree = {"prefill": [0, 0], "decode": [0, 0]}  # [equal, cases]
    worse = 0
    for sizing in ("dynamo", "attainment"):
        plan = _plan(sizing)
        for rate in RATES:
            a = planner.capacity(plan, perf_model(got), rate, 1000.0, 40.0)
            b = planner.capacity(plan, perf_model(want), rate, 1000.0, 40.0)
            for pool in agree:
                agree[pool][0] += a.pools[pool].replicas == b.pools[pool].replicas
                agree[pool][1] += 1
                worse += a.pools[pool].replicas < b.pools[pool].replicas
    return {
        "sweep_s": doc["seconds"],
        "ttft_err_ms": [round(float(x), 1) for x in got.prefill_ttft_ms - want.prefill_ttft_ms],
        "itl_rel_max": round(float(np.max(np.abs(got.decode_itl_ms / want.decode_itl_ms - 1))), 4),
        "thpt_rel_max": round(float(np.max(np.abs(got.decode_thpt_per_gpu / want.decode_thpt_per_gpu - 1))), 4),
        "replicas_equal": {k: f"{v[0]}/{v[1]}" for k, v in agree.items()},
        "replicas_fewer_than_model": worse,
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    for seed in range(args.runs):
        print(json.dumps({"seed": seed, **one_run(seed)}), flush=True)


if __name__ == "__main__":
    main()
