"""The live local demo: `python -m scaler.devtools.demo` (`make demo`), from a clone.

Everything runs on 127.0.0.1, end to end, with real parts:
1. a fake Dynamo frontend (`python -m scaler.devtools.fake_frontend`) replaying the Azure
   LLM code trace (examples/traces, CC-BY 4.0, Microsoft Azure LLM inference trace 2023)
   time-compressed; with `--source vllm|sglang` (`make demo SOURCE=vllm`) it exports vLLM
   or SGLang engine pods' series instead, and the plan reads them with pool selectors;
2. a real Prometheus (Debian's binary) in a temporary directory on a free port, scraping the
   frontend every second and evaluating the plan's recording rules every second;
3. `dynplan serve` on a free port, with the example plan (examples/llama-8b-disagg.yaml)
   deciding every 10 s instead of every 180 s (see `DEMO_OVERRIDES`);
4. a KEDA-like client that, every poll, calls GetMetricSpec -> GetMetrics -> IsActive for
   both pools over gRPC, prints the observed rate and the desired replicas, and applies them
   to the fake frontend's pools (as KEDA and the HPA resize Deployments), closing the loop.

It ends by itself (100 s of polling after a start-up of about 10 s) and stops every process it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import IO, Any, Mapping, Optional, Sequence

import yaml

from scaler import naming
from scaler.core.plan import POOL_NAMES_BY_MODE, Plan
from scaler.render.rules import rule_groups

EXAMPLE_PLAN = Path("examples") / "llama-8b-disagg.yaml"
TRACE = Path("examples") / "traces" / "azure-llm-2023-code.csv"
POOLS = POOL_NAMES_BY_MODE["disagg"]
INTERVAL_SECONDS = 10
# What the demo changes in the example plan, so that a two-minute local run shows decisions:
# a 10 s decision interval (rules evaluated every second), a predictor that answers after two
# windows, and no latency correction or queueing factor, which would be learned from the fake
# frontend's toy latencies rather than from the profile. The Prometheus URL is set per run.
DEMO_OVERRIDES: dict[str, Any] = {
    "spec": {
        "scaling": {
            "throughput": {
                "intervalSeconds": INTERVAL_SECONDS,
                "predictor": {"type": "kalman", "minPoints": 2},
                "correction": False,
                "queueing": {"enabled": False},
            },
        },
        # no real workers start behind the fake frontend: nothing to wait for before scaling down
        "pools": {"prefill": {"startupSeconds": 0}, "decode": {"startupSeconds": 0}},
        # the demo's Prometheus scrapes every second: ranges stay the 10-s windows (4 x 1 s)
        "metrics": {"prometheus": {"timeoutSeconds": 1.0, "retries": 1}, "scrapeIntervalSeconds": 1},
        "rules": {"evaluationIntervalSeconds": 1},
    },
}
LISTEN_RE = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')


class DemoError(RuntimeError):
    pass


def repo_root(starts: Optional[Sequence[Path]] = None) -> Path:
    """The clone the demo runs from: the nearest directory holding pyproject.toml and the
    example plan, going up from this file, then from the working directory."""
    for start in starts if starts is not None else (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if (d / "pyproject.toml").is_file() and (d / EXAMPLE_PLAN).is_file():
                return d
    raise DemoError(
        f"the demo runs from a clone of the dynplan repository (it reads {EXAMPLE_PLAN} and {TRACE.parent}/); "
        "none found above this module or the working directory"
    )


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# The engine pods' names the fake frontend exports with --source vllm|sglang, and the
# namespace label on their series.
ENGINE_POD_PREFIX = "llama"
ENGINE_NAMESPACE = "inference"


def demo_plan(root: Path, prometheus_url: str, source: str = "dynamo") -> dict[str, Any]:
    """The example disaggregated plan with `DEMO_OVERRIDES`, its profile path made absolute;
    with an engine source, its metrics read the fake engine pods (pool selectors by pod name)."""
    path = root / EXAMPLE_PLAN
    doc = _merged(yaml.safe_load(path.read_text(encoding="utf-8")), DEMO_OVERRIDES)
    spec = doc["spec"]
    spec["profile"] = str((path.parent / spec["profile"]).resolve())
    spec["metrics"]["prometheus"]["url"] = prometheus_url
    if source != "dynamo":
        spec["metrics"].update(source=source, selector={"namespace": ENGINE_NAMESPACE}, scrapeIntervalSeconds=1)
        for pool in POOLS:
            spec["pools"][pool]["selector"] = {"pod": f"=~{ENGINE_POD_PREFIX}-{pool}-.*"}
    return doc


def rule_file_document(plan_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The plan's recording rules as a Prometheus rule file (the generator's groups)."""
    plan = Plan.model_validate(plan_doc)
    groups = []
    for g in rule_groups(plan):
        groups.append({
            "name": g.name,
            "interval": g.interval,
            "rules": [{"record": r.record, "expr": r.expr, "labels": dict(r.labels)} for r in g.rules],
        })
    return {"groups": groups}


class Processes:
    """Children of the demo; all stopped (TERM, then KILL) on exit."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv), **kwargs)
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# The scaler's JSON `listening` event (serve --log-format json): its gRPC and metrics ports.
LISTENING = re.compile(r'"event": "listening".*"port": (\d+), "metricsPort": (\d+)')


def _wait_line(stream: IO[str], pattern: re.Pattern[str], timeout: float, what: str, sink: Optional[IO[str]] = None) -> re.Match[str]:
    """Wait for a matching line; a daemon thread keeps draining the pipe (into `sink`)."""
    found: list[re.Match[str]] = []
    tail: deque[str] = deque(maxlen=20)
    done = threading.Event()

    def reader() -> None:
        for line in stream:
            tail.append(line)
            if sink is not None:
                sink.write(line)
                sink.flush()
            if not found:
                m = pattern.search(line)
                if m:
                    found.append(m)
                    done.set()
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    if not done.wait(timeout) or not found:
        raise DemoError(f"{what} did not start within {timeout:g}s:\n{''.join(tail)}")
    return found[0]


def _wait_http(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise DemoError(f"{what} not ready at {url} within {timeout:g}s")


def _observed_rate(metrics_url: str) -> Optional[float]:
    try:
        with urllib.request.urlopen(metrics_url, timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    m = re.search(r'^dynplan_observed\{[^}]*quantity="rate"[^}]*\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


async def keda_poll_loop(
    address: str, metrics_url: str, plan: Plan, duration: float, poll: float, out: IO[str],
    apply_to: Optional[IO[str]] = None,
) -> int:
    """Poll like KEDA and print one line per poll; return the number of successful polls.

    With `apply_to`, every answer is also applied, as KEDA and the HPA would resize the
    Deployments: one 'POOL REPLICAS' line per pool to the fake frontend, which closes the loop
    (its latencies and backlog follow the replicas the scaler asked for)."""
    import grpc

    from scaler.proto import externalscaler_pb2 as pb
    from scaler.proto import externalscaler_pb2_grpc as pb_grpc

    ok = 0
    waiting_said = False
    start = time.monotonic()
    # Ctrl-C / SIGTERM end the polling at once; the caller then stops every child.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        columns = "  ".join(POOLS)  # each pool's column is as wide as its name
        print(f"{'time':>6}  {'rate req/s':>10}  {columns}  active", file=out, flush=True)
        while time.monotonic() - start < duration and not stop.is_set():
            t = time.monotonic() - start
            replicas: dict[str, str] = {}
            active: dict[str, bool] = {}
            for pool in POOLS:
                ref = pb.ScaledObjectRef(
                    name=naming.scaled_object_name(plan.name, pool), namespace=plan.namespace,
                    scalerMetadata={"scalerAddress": address, "plan": plan.name, "pool": pool},
                )
                try:
                    spec = await stub.GetMetricSpec(ref, timeout=3)
                    name = spec.metricSpecs[0].metricName
                    values = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=name), timeout=3)
                    act = await stub.IsActive(ref, timeout=3)
                    v = values.metricValues[0]
                    replicas[pool] = f"{(v.metricValueFloat if v.metricValueFloat > 0 else v.metricValue):g}"
                    active[pool] = act.result
                except grpc.aio.AioRpcError as exc:
                    replicas[pool] = exc.code().name
            answered = all(r.replace(".", "").isdigit() for r in replicas.values())
            if not answered and ok == 0:
                # Before the first decision (Prometheus needs a few scrapes and one closed
                # window): the scaler rightly answers UNAVAILABLE; say so once.
                if not waiting_said:
                    print("(waiting for the first closed window: UNAVAILABLE until then)", file=out, flush=True)
                    waiting_said = True
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            rate = _observed_rate(metrics_url)
            rate_text = "-" if rate is None or rate != rate else f"{rate:.2f}"
            flags = "/".join("yes" if active.get(p) else "no" for p in POOLS)
            cells = "  ".join(f"{replicas[p]:>{len(p)}}" for p in POOLS)
            print(f"{t:>5.0f}s  {rate_text:>10}  {cells}  {flags}", file=out, flush=True)
            if answered:
                ok += 1
                if apply_to is not None:
                    try:
                        for p in POOLS:
                            apply_to.write(f"{p} {max(1, int(float(replicas[p])))}\n")
                        apply_to.flush()
                    except (BrokenPipeError, ValueError):
                        apply_to = None  # the frontend went away; keep polling
            try:
                await asyncio.wait_for(stop.wait(), poll)
            except asyncio.TimeoutError:
                pass
    if stop.is_set():
        raise KeyboardInterrupt
    return ok


def run(duration: float, speed: float, poll: float, keep_dir: bool, out: IO[str], source: str = "dynamo") -> int:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise DemoError("the demo needs Debian's prometheus package (make prometheus)")
    root = repo_root()
    trace = root / TRACE
    # The rule file needs no URL; the plan the scaler reads gets Prometheus' once it is known.
    plan_doc = demo_plan(root, "http://127.0.0.1:1", source)
    plan = Plan.model_validate(plan_doc)
    work = Path(tempfile.mkdtemp(prefix="dynplan-demo-"))
    procs = Processes()
    python = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        # 1. the fake frontend
        frontend = procs.start(
            "fake frontend",
            [python, "-m", "scaler.devtools.fake_frontend", "--trace", str(trace), "--speed", str(speed),
             "--listen", "127.0.0.1:0", "--pool-sizes-from-stdin", "--source", source,
             *(["--dynamo-namespace", plan.spec.metrics.selector["dynamo_namespace"]] if source == "dynamo"
               else ["--model", ENGINE_POD_PREFIX, "--namespace", ENGINE_NAMESPACE])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root, env=env,
        )
        assert frontend.stdout is not None
        frontend_port = int(_wait_line(frontend.stdout, re.compile(r"^(\d+)\s*$"), 20, "fake frontend")[1])
        # 2. Prometheus with the plan's recording rules
        (work / "rules.yml").write_text(yaml.safe_dump(rule_file_document(plan_doc), sort_keys=False))
        (work / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(work / "rules.yml")],
            "scrape_configs": [{"job_name": "dynamo-frontend", "static_configs": [{"targets": [f"127.0.0.1:{frontend_port}"]}]}],
        }))
        prom = procs.start(
            "prometheus",
            [prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             "--web.listen-address=127.0.0.1:0", "--log.level=info"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=work,
        )
        assert prom.stderr is not None
        prom_port = int(_wait_line(prom.stderr, LISTEN_RE, 20, "prometheus")[1])
        prom_url = f"http://127.0.0.1:{prom_port}"
        _wait_http(prom_url + "/-/ready", 20, "prometheus")
        # 3. dynplan serve
        plans = work / "plans"
        plans.mkdir()
        (plans / naming.plan_file_name(plan.namespace, plan.name)).write_text(yaml.safe_dump(demo_plan(root, prom_url, source), sort_keys=False))
        scaler_log = open(work / "scaler.log", "w")
        scaler = procs.start(
            "dynplan serve",
            [python, "-m", "scaler.cli", "serve", "--plans", str(plans), "--listen", "127.0.0.1:0",
             "--metrics-listen", "127.0.0.1:0", "--settle-seconds", "2.5", "--log-level", "info",
             "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=root, env=env,
        )
        assert scaler.stderr is not None
        m = _wait_line(scaler.stderr, LISTENING, 30, "dynplan serve", scaler_log)
        address = f"127.0.0.1:{m[1]}"
        metrics_url = f"http://127.0.0.1:{m[2]}/metrics"
        print(
            f"fake frontend :{frontend_port} ({speed:g}x replay of {trace.name}) -> prometheus {prom_url} -> "
            f"dynplan serve {address} (decides every {INTERVAL_SECONDS} s) -> KEDA-like poll every {poll:g} s\n"
            f"scaler log (one JSON line per decision): {work / 'scaler.log'}",
            file=out, flush=True,
        )
        ok = asyncio.run(keda_poll_loop(address, metrics_url, plan, duration, poll, out, apply_to=frontend.stdin))
        print(f"done: {ok} polls answered with replicas for both pools", file=out, flush=True)
        return 0 if ok > 0 else 1
    finally:
        procs.stop_all()
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaler.devtools.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=100.0, help="seconds of polling (default 100)")
    ap.add_argument("--speed", type=float, default=30.0, help="trace time compression (default 30x)")
    ap.add_argument("--poll", type=float, default=5.0, help="KEDA poll interval in seconds (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, TSDB)")
    ap.add_argument("--source", choices=("dynamo", "vllm", "sglang"), default="dynamo",
                    help="the metrics the fake frontend exports and the plan reads (default dynamo)")
    args = ap.parse_args(argv)
    # SIGTERM behaves like Ctrl-C: unwind through `finally` and stop the children.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return run(args.duration, args.speed, args.poll, args.keep, sys.stdout, args.source)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; stopped every process the demo started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
