"""1,000 plans on one `dynplan serve`, against the floor of a Python gRPC scaler (issue 13, item 3).

Run: .venv/bin/python -m bench.bench_fleet [--plans 1000] [--seconds 65] [--rate 600] [--json FILE]
(about 5 minutes for 1,000 plans on 2 cores; `--plans 100 --seconds 20` in about a minute).

What it does, all with real parts:
1. Writes N plans as a user would (`plan-0000`..., namespaces ns-0..ns-9): disagg, Dynamo
   source, `useRecordingRules: true`, throughput every 30 s, the plan defaults otherwise
   (attainment sizing, Kalman predictor, load scaling off), one shared profile (the example
   H200 one, copied beside the plans), pools scaling Deployments.
2. Backfills a real Prometheus (`promtool tsdb create-blocks-from openmetrics`) with exactly
   the recorded series each plan reads (the recorded half of `scaler.prom.reader`'s
   throughput and per-worker queries, one worker per pool) and kube-state-metrics' ready
   count of each Deployment, one sample every 30 s (the recording rules' cadence in
   kube-prometheus-stack), from before the scaler's warm-up horizon (the longest fold,
   `2 * warmup_intervals - 1` windows, plus the rules' range) to past the end of the run:
   Prometheus answers instant queries at "now" from a block whose samples run into the
   future (checked at start: the benchmark stops if it does not). Values vary per plan and
   window: request rates 1-30 req/s on a slow wave with noise, ISL ~3000, OSL ~150, TTFT and
   ITL rising with the rate, so every tick decides something real.
3. Starts `dynplan serve --plans DIR` as a subprocess (the real command: nothing here depends
   on the scaler's internals) and times its warm-up: until every plan answers GetMetrics.
4. Starts the floor (`bench.floor_scaler`: grpc.aio answering from a dict) in its own process.
5. Drives both with one client (`bench.grpc_client`), alternating short segments (floor,
   scaler, floor, ...) so that machine noise and the scaler's decision bursts on the 30 s
   grid fall on both: (a) paced, `--rate` GetMetrics/s open-loop over every plan and pool,
   `--seconds` for each target; (b) saturation, `--callers` back-to-back callers.
6. Measures the scaler over the paced + saturation run: Prometheus queries per 30-s tick
   (Prometheus' own `prometheus_http_requests_total{handler=~"/api/v1/query(_range)?"}`,
   read from its /metrics, which is not a query), decision lag (every throughput decision's
   `lagSeconds` from the scaler's JSON log, and `dynplan_decision_lag_seconds` max over
   plans from its /metrics at the end), decisions more than one interval late or missing,
   RSS (VmRSS of the scaler and its child processes, summed, sampled every second) and CPU.
7. Prints a table, checks the issue's targets (p99 at the rate within 1.5x the floor,
   saturation >= 0.8x the floor, no decision more than one interval late, RSS < 500 MB) and
   writes `--json FILE`. Every process it starts is stopped on exit, error or Ctrl-C.

Not a test: the figures depend on the machine and its load; the exit status is 0 whether or
not the targets are met (1 only when the run itself fails).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import yaml

from bench.grpc_client import PoolRef, Run, ScalerClient, cpu_seconds, descendants, latency_summary, tree_pss_mb, tree_rss_mb

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "examples" / "profiles" / "h200-llama3.1-8b-fp8-tp1"
INTERVAL = 30  # throughput intervalSeconds of every plan, and the backfill's sample step
NAMESPACES = 10
POOLS = ("prefill", "decode")
QUERY_HANDLERS = ("/api/v1/query", "/api/v1/query_range")
TARGETS = {"p99_ratio_max": 1.5, "saturation_ratio_min": 0.8, "rss_mb_max": 500.0}


def plan_name(i: int) -> str:
    return f"plan-{i:04d}"


def namespace(i: int) -> str:
    return f"ns-{i % NAMESPACES}"


def plan_doc(i: int, prometheus_url: str) -> dict[str, Any]:
    name = plan_name(i)
    return {
        "apiVersion": "dynplan/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": name, "namespace": namespace(i)},
        "spec": {
            "mode": "disagg",
            "sla": {"ttftMs": 200, "itlMs": 20},
            "workload": {"isl": 3000, "osl": 150},
            "profile": PROFILE.name,
            "pools": {
                pool: {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{name}-{pool}"}}
                for pool in POOLS
            },
            "scaling": {"throughput": {"enabled": True, "intervalSeconds": INTERVAL}},
            "metrics": {
                "source": "dynamo",
                "useRecordingRules": True,
                "selector": {"dynamo_namespace": name},
                "prometheus": {"url": prometheus_url},
            },
        },
    }


def write_plans(directory: Path, n: int, prometheus_url: str) -> list[PoolRef]:
    """The plan files (the profile they name is copied beside them once) and their pools."""
    if not (directory / PROFILE.name).exists():
        shutil.copytree(PROFILE, directory / PROFILE.name)
    refs: list[PoolRef] = []
    for i in range(n):
        doc = plan_doc(i, prometheus_url)
        (directory / f"{plan_name(i)}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        refs.extend(PoolRef(doc["metadata"]["namespace"], plan_name(i), pool) for pool in POOLS)
    return refs


# -- the recorded series ---------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesNames:
    """What a plan of `plan_doc`'s shape reads, from the scaler's own query builders."""

    throughput: dict[str, str]  # series key -> recorded series name
    worker: dict[str, str]
    labels: dict[str, str]  # the recorded series' selector for plan 0 (e.g. dynplan_plan="plan-0000")
    ready_metric: str
    ready_label: str
    warmup_windows: int  # the longest fold a warm-up reads
    range_seconds: int  # what the recorded series' rules read over


def series_names(plans_dir: Path) -> SeriesNames:
    from scaler.core.replay import warmup_intervals
    from scaler.planfile import load_plan
    from scaler.prom.reader import ready_queries, throughput_queries, worker_queries
    from scaler.sources import READY_METRICS, query_range

    plan = load_plan(plans_dir / f"{plan_name(0)}.yaml").plan

    selectors = set()

    def recorded(queries: dict[str, str]) -> dict[str, str]:
        # `recorded{dynplan_plan="..."} or on() (raw)`: the name and selector are the recorded half's
        out = {}
        for key, q in queries.items():
            head, sep, _ = q.partition(" or on() ")
            m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}", head)
            if not sep or m is None:
                raise SystemExit(f"bench_fleet: series {key} is not read from a recorded series: {q[:120]}")
            out[key] = m.group(1)
            selectors.add(m.group(2))
        return out

    assert set(ready_queries(plan)) == set(POOLS), "a Deployment pool has a kube-state-metrics ready query"
    metric, label = READY_METRICS[("apps/v1", "Deployment")]
    throughput, worker = recorded(throughput_queries(plan)), recorded(worker_queries(plan))
    (selector,) = selectors  # one selector for every series of a plan
    labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"', selector))
    if ",".join(f'{k}="{v}"' for k, v in labels.items()) != selector:
        raise SystemExit(f"bench_fleet: the recorded series' selector is not plain equality matchers: {selector}")
    return SeriesNames(
        throughput=throughput,
        worker=worker,
        labels=labels,
        ready_metric=metric,
        ready_label=label,
        warmup_windows=2 * warmup_intervals(plan) - 1,
        range_seconds=query_range(INTERVAL, plan.spec.metrics.scrape_interval_seconds),
    )


def plan_values(i: int, times: list[int]) -> Iterator[tuple[str, dict[str, str], list[float]]]:
    """(series key, extra labels, values at `times`) of plan i: a slow wave of 1-30 req/s
    with noise, and latencies and queues that follow it."""
    rng = random.Random(i)
    base, amp = rng.uniform(2.0, 25.0), rng.uniform(0.1, 0.5)
    period, phase = rng.uniform(600.0, 2400.0), rng.uniform(0.0, 2 * math.pi)
    isl0, osl0 = rng.uniform(2500.0, 3500.0), rng.uniform(120.0, 180.0)
    cols: dict[str, list[float]] = {}
    for t in times:
        rate = base * (1 + amp * math.sin(2 * math.pi * t / period + phase)) * (1 + 0.08 * rng.gauss(0, 1))
        rate = min(30.0, max(1.0, rate))
        isl = isl0 * (1 + 0.05 * rng.gauss(0, 1))
        osl = osl0 * (1 + 0.05 * rng.gauss(0, 1))
        ttft = max(0.02, 0.05 + 0.004 * rate * (1 + 0.1 * rng.gauss(0, 1)))  # seconds, as recorded
        itl = 0.008 + 0.0002 * rate
        row = {
            "requests": rate * INTERVAL, "isl": isl, "osl": osl, "ttft_ms": ttft, "itl_ms": itl,
            "request_duration_s": ttft + osl * itl, "backlog": float(max(0, round(rate / 10 + rng.gauss(0, 1)))),
            # fraction of TTFTs over the SLA bucket: a few percent, more when busy
            "ttft_miss": min(1.0, max(0.0, 0.002 * rate * (1 + 0.3 * rng.gauss(0, 1)))),
            "prefill.active_prefill_tokens": isl * rate * ttft, "prefill.active_decode_blocks": 0.0,
            "prefill.last_ttft_ms": ttft, "prefill.last_isl": isl, "prefill.last_itl_ms": 0.0,
            "decode.active_prefill_tokens": 0.0, "decode.active_decode_blocks": rate * (ttft + osl * itl) * (isl + osl) / 16,
            "decode.last_ttft_ms": ttft, "decode.last_isl": isl, "decode.last_itl_ms": itl,
        }
        for k, v in row.items():
            cols.setdefault(k, []).append(v)
    for key, values in cols.items():
        pool, _, series = key.rpartition(".")
        extra = {"worker_id": f"{plan_name(i)}-{pool}-0", "worker_type": pool} if pool else {}
        yield (series, extra, values)


def write_backfill(path: Path, names: SeriesNames, n: int, start: int, end: int) -> tuple[int, int]:
    """OpenMetrics text of every plan's recorded series on the 30 s grid from `start` to `end`,
    family by family (OpenMetrics wants each family's samples together). (series, samples)."""
    times = list(range(start, end + 1, INTERVAL))
    families: dict[str, list[str]] = {}
    # every series a plan reads has values here, else each plan would fall back to its own query
    # and the figure of queries per tick would measure the benchmark, not the scaler
    written = {key for key, _, _ in plan_values(0, times[:1])}
    missing = (set(names.throughput) | set(names.worker)) - written
    if missing:
        raise SystemExit(f"bench_fleet: no backfilled values for the series {sorted(missing)}: add them to plan_values")
    for i in range(n):
        # plan 0's selector with plan i's name and namespace (whatever labels the reads select on)
        own = {plan_name(0): plan_name(i), namespace(0): namespace(i)}
        selected = {k: own.get(v, v) for k, v in names.labels.items()}
        for key, extra, values in plan_values(i, times):
            name = names.throughput.get(key) or names.worker[key]
            labels = ",".join(f'{k}="{v}"' for k, v in {**selected, **extra}.items())
            families.setdefault(name, []).append(
                "".join(f"{name}{{{labels}}} {v:.6g} {t}\n" for t, v in zip(times, values))
            )
        for k, pool in enumerate(POOLS):
            ready = 1 + (i + k) % 4
            labels = f'namespace="{namespace(i)}",{names.ready_label}="{plan_name(i)}-{pool}"'
            families.setdefault(names.ready_metric, []).append(
                "".join(f"{names.ready_metric}{{{labels}}} {ready} {t}\n" for t in times)
            )
    series = 0
    with open(path, "w") as f:
        for name, chunks in families.items():
            f.write(f"# TYPE {name} gauge\n")
            f.writelines(chunks)
            series += len(chunks)
        f.write("# EOF\n")
    return series, series * len(times)


# -- processes -----------------------------------------------------------------------------
_LIBC = ctypes.CDLL(None)  # loaded before any fork: the child only calls into it


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a child still running when this process dies (even by SIGKILL) gets SIGTERM
    _LIBC.prctl(1, signal.SIGTERM)


def tree_env() -> dict[str, str]:
    """The environment of the processes started: `scaler` imports from this tree (the one
    measured), whatever the venv's editable install points at."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_process(proc: subprocess.Popen, timeout: float = 12.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def query_counts(prom_url: str) -> dict[str, float]:
    """Prometheus' own count of instant and range queries answered (from its /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    counts = dict.fromkeys(QUERY_HANDLERS, 0.0)
    for fam in text_string_to_metric_families(http_get(prom_url + "/metrics")):
        if fam.name == "prometheus_http_requests":
            for s in fam.samples:
                if s.name.endswith("_total") and s.labels.get("handler") in counts:
                    counts[s.labels["handler"]] += s.value
    return counts


def scaler_metrics(url: str) -> dict[str, Any]:
    """From the scaler's /metrics: the decision-lag gauge per plan, windows caught up (total)."""
    from prometheus_client.parser import text_string_to_metric_families

    lag: dict[str, float] = {}
    caught_up = 0.0
    for fam in text_string_to_metric_families(http_get(url + "/metrics", timeout=30)):
        for s in fam.samples:
            if s.name == "dynplan_decision_lag_seconds":
                lag[s.labels["plan"]] = s.value
            elif s.name == "dynplan_windows_caught_up_total":
                caught_up += s.value
    return {"lag": lag, "caught_up": caught_up}


class Sampler:
    """Max RSS of a process tree, sampled every second in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_mb = 0.0
        self.last_mb = 0.0
        self.max_pss_mb = 0.0
        self.max_processes = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(1.0)

    def sample(self) -> None:
        try:
            self.last_mb = tree_rss_mb(self.pid)
            pss = tree_pss_mb(self.pid)
            self.max_processes = max(self.max_processes, len(descendants(self.pid)))
        except OSError:
            return
        self.max_mb = max(self.max_mb, self.last_mb)
        self.max_pss_mb = max(self.max_pss_mb, pss)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def decisions_from_log(log: Path) -> list[dict[str, Any]]:
    """Every throughput decision the scaler logged: plan, windowEnd, madeAt, lagSeconds."""
    out = []
    with open(log, errors="replace") as f:
        for line in f:
            if '"decision"' not in line:
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == "decision" and doc.get("kind") == "throughput":
                out.append({k: doc.get(k) for k in ("namespace", "plan", "windowEnd", "madeAt", "lagSeconds")})
    return out


def log_events(log: Path, event: str, since: float = 0.0, until: float = math.inf) -> int:
    """How many `event` lines the scaler logged between two Unix times."""
    n = 0
    with open(log, errors="replace") as f:
        for line in f:
            if f'"{event}"' not in line:
                continue
            try:
                doc = json.loads(line)
                at = datetime.strptime(doc["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
            except (ValueError, KeyError):
                continue
            if doc.get("event") == event and since <= at <= until:
                n += 1
    return n


# -- the load ------------------------------------------------------------------------------
def serving_count(metrics_url: str) -> Optional[int]:
    """Plans the scaler's /decisions index says it serves (code OK); None without the index."""
    try:
        doc = json.loads(http_get(metrics_url + "/decisions", timeout=10))
    except (OSError, ValueError):
        return None
    return sum(1 for p in doc.get("plans", []) if p.get("code") == "OK")


async def wait_warm(client: ScalerClient, proc: subprocess.Popen, timeout: float, metrics_url: str) -> float:
    """Seconds until every plan answers GetMetrics OK (one pool per plan: a plan decides both).

    Polled through the scaler's /decisions index (one cheap request a second) until it says
    every plan is served, then confirmed by a GetMetrics per plan: a thousand RPCs every
    round would load the warm-up being timed."""
    t0 = time.monotonic()
    waiting = {(r.scaledObjectRef.namespace, r.scaledObjectRef.scalerMetadata["plan"]): r for r in client.requests}
    plans = len(waiting)
    while waiting:
        if proc.poll() is not None:
            raise SystemExit(f"bench_fleet: dynplan serve exited ({proc.returncode}) during warm-up")
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"bench_fleet: {len(waiting)} plans still not answering after {timeout:.0f} s")
        serving = await asyncio.to_thread(serving_count, metrics_url)
        if serving is not None and serving < plans:
            await asyncio.sleep(0.5)
            continue
        keys = list(waiting)
        for k in range(0, len(keys), 200):
            batch = keys[k:k + 200]
            codes = await asyncio.gather(*(client.status(waiting[key], timeout=10) for key in batch))
            for key, code in zip(batch, codes):
                if code == "OK":
                    del waiting[key]
        if waiting:
            await asyncio.sleep(0.5)
    return time.monotonic() - t0


async def alternate(
    clients: dict[str, ScalerClient], seconds: float, segment: float, load: Callable[[ScalerClient, float], Any]
) -> dict[str, tuple[Run, float]]:
    """Run `load(client, segment_seconds)` on each client in turn, segment by segment, until
    each has had `seconds`; (Run, seconds loaded) per client."""
    out = {name: (Run(), 0.0) for name in clients}
    done = 0.0
    while done < seconds - 1e-9:
        seg = min(segment, seconds - done)
        for name, client in clients.items():
            t = time.perf_counter()
            run = await load(client, seg)
            total, secs = out[name]
            total.extend(run)
            out[name] = (total, secs + time.perf_counter() - t)
        done += seg
    return out


def figures(run: Run, seconds: float) -> dict[str, Any]:
    return {**latency_summary(run.latencies, seconds), "errors": dict(run.errors)}


# -- main ----------------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench.bench_fleet", description=__doc__.split("\n")[0])
    ap.add_argument("--plans", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=65.0, help="paced load per target (floor and scaler each)")
    ap.add_argument("--rate", type=float, default=600.0, help="paced GetMetrics/s over every plan and pool")
    ap.add_argument("--segment", type=float, default=1.0, help="seconds per target before switching (paced)")
    # 30 s: each target's segments span a whole decision cycle (the 30-s grid), so neither gets
    # more of the decider's burst than the other by where its segments fall (10 s gave 0.73-1.03x)
    ap.add_argument("--saturation-seconds", type=float, default=30.0, help="back-to-back load per target")
    ap.add_argument("--saturation-segment", type=float, default=2.5)
    ap.add_argument("--callers", type=int, default=64, help="back-to-back callers (saturation)")
    ap.add_argument("--channels", type=int, default=4, help="client connections per target")
    ap.add_argument("--warmup-timeout", type=float, default=240.0)
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--workdir", type=Path, help="keep plans, Prometheus data and logs here (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.plans < 1 or args.seconds <= 0 or args.rate <= 0 or args.callers < 1:
        ap.error("--plans, --seconds, --rate and --callers must be positive")
    return args


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "scaler"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty(scaler/)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(args: argparse.Namespace, work: Path, stack: ExitStack) -> dict[str, Any]:
    from tests.support.prometheus import PromServer, binaries, write_config

    t_start = time.monotonic()
    prometheus, promtool = binaries()
    plans_dir = work / "plans"
    prom_dir = work / "prometheus"
    for d in (plans_dir, prom_dir / "data"):
        d.mkdir(parents=True)
    # the series' names come from a plan file; the files name Prometheus once it listens
    write_plans(plans_dir, 1, "http://127.0.0.1:9090")
    names = series_names(plans_dir)

    # history: the longest warm-up fold and its range before now, to past the run's end
    now = int(time.time()) // INTERVAL * INTERVAL
    start = now - (names.warmup_windows + 2) * INTERVAL - names.range_seconds
    horizon = args.warmup_timeout + 2 * (args.seconds + args.saturation_seconds) + 300
    end = now + int(horizon) // INTERVAL * INTERVAL
    t = time.monotonic()
    om = prom_dir / "history.om"
    n_series, n_samples = write_backfill(om, names, args.plans, start, end)
    proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(prom_dir / "data")],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"bench_fleet: promtool failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    om.unlink()
    backfill_s = time.monotonic() - t
    write_config(prom_dir / "prometheus.yml", scrape_interval="30s", evaluation_interval="30s")
    server = PromServer(prom_dir, prom_dir / "prometheus.yml", prom_dir / "data", prom_dir / "prometheus.log",
                        _binary=prometheus)
    server.start()
    stack.callback(server.stop)
    # the benchmark stands on this: a backfilled block answers an instant query at "now"
    probe = names.throughput["requests"] + "{" + ",".join(f'{k}="{v}"' for k, v in names.labels.items()) + "}"
    if len(server.query(probe)) != 1 or len(server.query(probe, at=time.time() + 60)) != 1:
        raise SystemExit(f"bench_fleet: Prometheus does not answer {probe} at now from the backfilled block")
    prom_url = server.url
    refs = write_plans(plans_dir, args.plans, prom_url)

    # the scaler
    grpc_port, metrics_port = free_port(), free_port()
    dynplan = Path(sys.executable).parent / "dynplan"
    scaler_log = work / "dynplan-serve.log"
    log_f = stack.enter_context(open(scaler_log, "wb"))
    queries_before_scaler = query_counts(prom_url)
    t_scaler = time.monotonic()
    scaler = subprocess.Popen(
        [str(dynplan), "serve", "--plans", str(plans_dir), "--listen", f"127.0.0.1:{grpc_port}",
         "--metrics-listen", f"127.0.0.1:{metrics_port}", "--log-format", "json", "--log-level", "info",
         "--shutdown-timeout", "3"],
        stdout=log_f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work, preexec_fn=_die_with_parent,
        env=tree_env(),
    )
    stack.callback(stop_process, scaler)

    # the floor
    refs_file = work / "floor-refs.json"
    refs_file.write_text(json.dumps([[r.namespace, r.plan, r.pool, 1 + (i % 7)] for i, r in enumerate(refs)]))
    floor = subprocess.Popen([sys.executable, "-m", "bench.floor_scaler", str(refs_file)], cwd=ROOT, env=tree_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
    stack.callback(stop_process, floor)
    assert floor.stdout is not None
    floor_port = json.loads(floor.stdout.readline())["port"]
    sampler = stack.enter_context(Sampler(scaler.pid))  # its thread starts after the forks

    metrics_url = f"http://127.0.0.1:{metrics_port}"
    out: dict[str, Any] = {
        "commit": commit(), "plans": args.plans, "pools": len(refs), "interval_seconds": INTERVAL,
        "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
        "backfill": {"series": n_series, "samples": n_samples, "from": start, "to": end, "seconds": round(backfill_s, 2)},
    }

    async def measure() -> None:
        clients = {
            "floor": ScalerClient(f"127.0.0.1:{floor_port}", refs, args.channels),
            "scaler": ScalerClient(f"127.0.0.1:{grpc_port}", refs, args.channels),
        }
        await clients["floor"].connect()
        # the scaler's port opens after its plans load; its answers come after the warm-up
        deadline = time.monotonic() + args.warmup_timeout
        while not port_open(grpc_port):
            # polled with a plain socket: a gRPC channel refused once backs off for seconds
            if scaler.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench_fleet: dynplan serve is not listening (exit {scaler.poll()}); log: {scaler_log}")
            await asyncio.sleep(0.1)
        await clients["scaler"].connect()
        await wait_warm(clients["scaler"], scaler, max(1.0, deadline - time.monotonic()), metrics_url)
        warm_s = time.monotonic() - t_scaler
        q_warm = query_counts(prom_url)
        out["warmup"] = {
            "seconds": round(warm_s, 2),
            "prometheus_queries": {h: q_warm[h] - queries_before_scaler[h] for h in QUERY_HANDLERS},
            "cpu_seconds": round(cpu_seconds(scaler.pid), 2),
            "rss_mb": round(sampler.max_mb, 1),
        }
        before = scaler_metrics(metrics_url)
        cpu0, wall0 = cpu_seconds(scaler.pid), time.time()

        rate = args.rate
        paced = await alternate(clients, args.seconds, args.segment, lambda c, s: c.open_loop(rate, s))
        sat = await alternate(clients, args.saturation_seconds, args.saturation_segment,
                              lambda c, s: c.closed_loop(args.callers, s))
        wall1 = time.time()
        cpu1 = cpu_seconds(scaler.pid)
        q_end = query_counts(prom_url)
        after = scaler_metrics(metrics_url)
        for c in clients.values():
            await c.close()
        out["paced"] = {"rate": rate, "segment_seconds": args.segment,
                        **{name: figures(r, secs) for name, (r, secs) in paced.items()}}
        out["saturation"] = {"callers": args.callers, "segment_seconds": args.saturation_segment,
                             **{name: figures(r, secs) for name, (r, secs) in sat.items()}}
        out["paced"]["p99_ratio"] = out["paced"]["scaler"]["p99_ms"] / out["paced"]["floor"]["p99_ms"]
        out["saturation"]["ratio"] = out["saturation"]["scaler"]["rps"] / out["saturation"]["floor"]["rps"]
        span = wall1 - wall0
        ticks = span / INTERVAL
        queries = {h: q_end[h] - q_warm[h] for h in QUERY_HANDLERS}
        total_q = sum(queries.values())
        out["prometheus"] = {
            "source": 'prometheus_http_requests_total{handler=~"/api/v1/query(_range)?"} (Prometheus /metrics)',
            "run_seconds": round(span, 2), "ticks": round(ticks, 2), "queries": queries,
            "per_tick": total_q / ticks, "per_plan_per_tick": total_q / ticks / args.plans,
        }
        out["_window"] = (wall0, wall1)
        out["_lag_gauge"] = after["lag"]
        out["caught_up_windows"] = after["caught_up"] - before["caught_up"]
        out["cpu_seconds"] = {"run": round(cpu1 - cpu0, 2), "run_cores": round((cpu1 - cpu0) / span, 3),
                              "total": round(cpu1, 2)}

    try:
        asyncio.run(measure())
    finally:
        sampler.sample()
    window = out.pop("_window")
    lag_gauge = out.pop("_lag_gauge")
    settle = min(15.0, INTERVAL / 4)
    logged = decisions_from_log(scaler_log)
    made = [d for d in logged if d["madeAt"] is not None and window[0] <= d["madeAt"] <= window[1]]
    lags = [d["lagSeconds"] for d in made if d["lagSeconds"] is not None]
    # windows due (end + settle) in the run with a whole interval left to decide them
    due = [g for g in range(int(window[0]) // INTERVAL * INTERVAL, int(window[1]) + 1, INTERVAL)
           if window[0] <= g + settle and g + settle + INTERVAL <= window[1]]
    # a due window is late when its decision came more than one interval after it was due, or never
    lag_of = {(d["plan"], d["windowEnd"]): d["lagSeconds"] for d in logged}
    due_lags = [lag_of.get((plan_name(i), float(g))) for g in due for i in range(args.plans)]
    missing = sum(1 for x in due_lags if x is None)
    out["decisions"] = {
        "made_in_run": len(made),
        "windows_due": len(due) * args.plans,
        "missing": missing,
        "lag_max_seconds": max(lags) if lags else None,
        "lag_p99_seconds": sorted(lags)[int(0.99 * (len(lags) - 1))] if lags else None,
        "lag_gauge_max_seconds": max(lag_gauge.values()) if lag_gauge else None,
        "late": sum(1 for x in due_lags if x is None or x > INTERVAL),
        "caught_up_windows": out.pop("caught_up_windows"),
        "failed_in_run": log_events(scaler_log, "decision_failed", *window),
        "failed_in_warmup": log_events(scaler_log, "decision_failed", until=window[0]),
    }
    out["rss_mb"] = {"max": round(sampler.max_mb, 1), "end": round(sampler.last_mb, 1), "processes": sampler.max_processes,
                     "pss_max": round(sampler.max_pss_mb, 1)}
    p, s = out["paced"], out["saturation"]
    out["targets"] = {
        "p99_within_1.5x_floor": p["p99_ratio"] <= TARGETS["p99_ratio_max"],
        "saturation_at_least_0.8x_floor": s["ratio"] >= TARGETS["saturation_ratio_min"],
        "never_more_than_one_interval_late": out["decisions"]["late"] == 0 and out["decisions"]["caught_up_windows"] == 0,
        "rss_below_500mb": out["rss_mb"]["max"] < TARGETS["rss_mb_max"],
    }
    out["loadavg_end"] = os.getloadavg()
    out["total_seconds"] = round(time.monotonic() - t_start, 1)
    return out


def report(out: dict[str, Any]) -> str:
    p, s, d, q = out["paced"], out["saturation"], out["decisions"], out["prometheus"]
    lines = [
        f"dynplan serve, {out['plans']} plans ({out['pools']} pools), commit {out['commit']}, {out['cpus']} CPUs",
        f"backfill: {out['backfill']['series']} series, {out['backfill']['samples']} samples in {out['backfill']['seconds']:.1f} s",
        f"warm-up: every plan answering after {out['warmup']['seconds']:.1f} s "
        f"({sum(out['warmup']['prometheus_queries'].values()):.0f} Prometheus queries, {out['warmup']['cpu_seconds']:.1f} CPU s)",
        "",
        f"{'':34}{'floor':>12}{'scaler':>12}{'ratio':>8}",
    ]

    def row(label: str, key: str, block: dict[str, Any], ratio: Optional[float] = None) -> None:
        f, sc = block["floor"][key], block["scaler"][key]
        r = f"{ratio:8.2f}" if ratio is not None else (f"{sc / f:8.2f}" if f else "")
        lines.append(f"{label:34}{f:12.2f}{sc:12.2f}{r}")

    row(f"paced {p['rate']:.0f}/s: answered OK/s", "rps", p)
    row("paced: p50 ms", "p50_ms", p)
    row("paced: p99 ms", "p99_ms", p, p["p99_ratio"])
    row("paced: max ms", "max_ms", p)
    row(f"saturation ({s['callers']} callers): OK/s", "rps", s, s["ratio"])
    row("saturation: p99 ms", "p99_ms", s)
    errors = {k: (p[k]["errors"], s[k]["errors"]) for k in ("floor", "scaler")}
    lines += [
        f"errors (paced, saturation): {errors}",
        "",
        f"Prometheus queries during the run: {sum(q['queries'].values()):.0f} over {q['run_seconds']:.0f} s = "
        f"{q['per_tick']:.0f} per 30-s tick ({q['per_plan_per_tick']:.1f} per plan per tick; "
        f"query {q['queries']['/api/v1/query']:.0f}, query_range {q['queries']['/api/v1/query_range']:.0f})",
        f"decisions made in the run: {d['made_in_run']}; windows due: {d['windows_due']}, never decided {d['missing']}; "
        f"lag max {d['lag_max_seconds']} s, p99 {d['lag_p99_seconds']} s, gauge max {d['lag_gauge_max_seconds']} s; "
        f"due windows late > {out['interval_seconds']} s or never: {d['late']}; caught up: {d['caught_up_windows']:.0f}; "
        f"failed reads: {d['failed_in_run']} in the run, {d['failed_in_warmup']} before",
        f"scaler RSS max {out['rss_mb']['max']:.0f} MB ({out['rss_mb']['processes']} process(es), summed; "
        f"PSS max {out['rss_mb']['pss_max']:.0f} MB), "
        f"CPU {out['cpu_seconds']['run']:.1f} s in the run ({out['cpu_seconds']['run_cores']:.2f} cores), "
        f"{out['cpu_seconds']['total']:.1f} s in all",
        "targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in out["targets"].items()),
        f"total {out['total_seconds']:.0f} s; load average {out['loadavg_start'][0]:.1f} at the start, "
        f"{out['loadavg_end'][0]:.1f} at the end (other processes share the machine: both targets see them)",
    ]
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: every process is stopped


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`&`)
    try:
        with ExitStack() as stack:
            if args.workdir:
                work = args.workdir
                work.mkdir(parents=True, exist_ok=True)
                if any(work.iterdir()):
                    raise SystemExit(f"bench_fleet: --workdir {work} is not empty")
            else:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dynplan-fleet-")))
            out = run(args, work, stack)
    except KeyboardInterrupt:
        print("bench_fleet: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(report(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
