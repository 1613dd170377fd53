"""The live local demo: `python -m scaler.demo` (`make demo`).

Everything runs on 127.0.0.1, end to end, with real parts:
1. a synthetic Dynamo frontend (`python -m scaler.exporter`) replaying the Azure LLM code
   trace (examples/traces, CC-BY 4.0, Microsoft Azure LLM inference trace 2023)
   time-compressed;
2. a real Prometheus (Debian's binary) in a temporary directory on a free port, scraping the
   exporter every second and evaluating the plan's recording rules every second;
3. `dynplan serve` on a free port, with a demo plan whose throughput interval is 10 s;
4. a KEDA-like client that, every poll, calls GetMetricSpec -> GetMetrics -> IsActive for
   both pools over gRPC and prints the observed rate and the desired replicas.

It ends by itself (100 s of polling after a start-up of about 10 s) and stops every process it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
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
from typing import IO, TYPE_CHECKING, Any, Optional, Sequence

import yaml

if TYPE_CHECKING:
    from .core.plan import Plan

REPO = Path(__file__).resolve().parent.parent
TRACE = REPO / "examples" / "traces" / "azure-llm-2023-code.csv"
PROFILE = REPO / "examples" / "profiles" / "h200-llama3.1-8b-fp8-tp1"
PLAN_NAME = "llama-8b"
NAMESPACE = "inference"
DYNAMO_NAMESPACE = "inference-llama-8b"
INTERVAL_SECONDS = 10
LISTEN_RE = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')


class DemoError(RuntimeError):
    pass


def demo_plan(prometheus_url: str) -> dict:
    """A disaggregated plan on the example profile, deciding every 10 s."""
    return {
        "apiVersion": "dynplan/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": PLAN_NAME, "namespace": NAMESPACE},
        "spec": {
            "mode": "disagg",
            "sla": {"ttftMs": 200, "itlMs": 20},
            "workload": {"isl": 2048, "osl": 128},
            "profile": str(PROFILE),
            "pools": {
                pool: {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"llama-{pool}"},
                    "gpusPerReplica": 1,
                    "minReplicas": 1,
                    "maxReplicas": 16,
                }
                for pool in ("prefill", "decode")
            },
            "budget": {"maxGpus": 24},
            "scaling": {
                "throughput": {"enabled": True, "intervalSeconds": INTERVAL_SECONDS,
                               "predictor": {"type": "kalman", "minPoints": 2}, "correction": False},
                "load": {"enabled": False},
            },
            "metrics": {
                "source": "dynamo",
                "selector": {"dynamo_namespace": DYNAMO_NAMESPACE},
                "prometheus": {"url": prometheus_url, "timeoutSeconds": 1.0, "retries": 1},
            },
            "rules": {"evaluationIntervalSeconds": 1},
        },
    }


def rule_file_document(plan_doc: dict) -> dict:
    """The plan's recording rules as a Prometheus rule file (via the generator when present)."""
    from .core.plan import Plan

    plan = Plan.model_validate(plan_doc)
    try:
        from .render.rules import rule_groups
    except ImportError:  # generator not installed: build the same rules from the table
        return _rules_from_sources(plan)
    groups = []
    for g in rule_groups(plan):
        groups.append({
            "name": g.name,
            "interval": g.interval,
            "rules": [{"record": r.record, "expr": r.expr, "labels": dict(r.labels)} for r in g.rules],
        })
    return {"groups": groups}


def _rules_from_sources(plan: Plan) -> dict[str, Any]:
    from . import sources

    source = sources.SOURCES[plan.spec.metrics.source]
    window = plan.spec.scaling.throughput.interval_seconds
    rules = [
        {
            "record": sources.record_name(source, s, window),
            "expr": sources.raw_expr(source, s, plan.spec.metrics.selector, window),
            "labels": {sources.PLAN_LABEL: plan.name},
        }
        for s in sources.SERIES
        if s.kind == "throughput"
    ]
    return {"groups": [{"name": f"dynplan-{plan.name}-throughput", "interval": "1s", "rules": rules}]}


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


async def keda_poll_loop(address: str, metrics_url: str, duration: float, poll: float, out: IO[str]) -> int:
    """Poll like KEDA and print one line per poll; return the number of successful polls."""
    import grpc

    from .proto import externalscaler_pb2 as pb
    from .proto import externalscaler_pb2_grpc as pb_grpc

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
        print(f"{'time':>6}  {'rate req/s':>10}  {'prefill':>7}  {'decode':>6}  active", file=out, flush=True)
        while time.monotonic() - start < duration and not stop.is_set():
            t = time.monotonic() - start
            replicas: dict[str, str] = {}
            active: dict[str, bool] = {}
            for pool in ("prefill", "decode"):
                ref = pb.ScaledObjectRef(
                    name=f"{PLAN_NAME}-{pool}", namespace=NAMESPACE,
                    scalerMetadata={"scalerAddress": address, "plan": PLAN_NAME, "pool": pool},
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
            flags = "/".join("yes" if active.get(p) else "no" for p in ("prefill", "decode"))
            print(f"{t:>5.0f}s  {rate_text:>10}  {replicas['prefill']:>7}  {replicas['decode']:>6}  {flags}", file=out, flush=True)
            if answered:
                ok += 1
            try:
                await asyncio.wait_for(stop.wait(), poll)
            except asyncio.TimeoutError:
                pass
    if stop.is_set():
        raise KeyboardInterrupt
    return ok


def run(duration: float, speed: float, poll: float, keep_dir: bool, out: IO[str]) -> int:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise DemoError("the demo needs Debian's prometheus package (make prometheus)")
    work = Path(tempfile.mkdtemp(prefix="dynplan-demo-"))
    procs = Processes()
    python = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        # 1. exporter
        exporter = procs.start(
            "exporter",
            [python, "-m", "scaler.exporter", "--trace", str(TRACE), "--speed", str(speed),
             "--listen", "127.0.0.1:0", "--dynamo-namespace", DYNAMO_NAMESPACE],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=env,
        )
        assert exporter.stdout is not None
        exporter_port = int(_wait_line(exporter.stdout, re.compile(r"^(\d+)\s*$"), 20, "exporter")[1])
        # 2. Prometheus with the plan's recording rules
        plan_doc = demo_plan("http://127.0.0.1:1")  # URL fixed below, once the port is known
        (work / "rules.yml").write_text(yaml.safe_dump(rule_file_document(plan_doc), sort_keys=False))
        (work / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(work / "rules.yml")],
            "scrape_configs": [{"job_name": "dynamo-frontend", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
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
        (plans / f"{PLAN_NAME}.yaml").write_text(yaml.safe_dump(demo_plan(prom_url), sort_keys=False))
        scaler_log = open(work / "scaler.log", "w")
        scaler = procs.start(
            "dynplan serve",
            [python, "-m", "scaler.cli", "serve", "--plans", str(plans), "--listen", "127.0.0.1:0",
             "--metrics-listen", "127.0.0.1:0", "--settle-seconds", "2.5", "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )
        assert scaler.stderr is not None
        m = _wait_line(scaler.stderr, re.compile(r"listening on \S+ \(port (\d+)\), metrics port (\d+)"), 30, "dynplan serve", scaler_log)
        address = f"127.0.0.1:{m[1]}"
        metrics_url = f"http://127.0.0.1:{m[2]}/metrics"
        print(
            f"exporter :{exporter_port} ({speed:g}x replay of {TRACE.name}) -> prometheus {prom_url} -> "
            f"dynplan serve {address} (decides every {INTERVAL_SECONDS} s) -> KEDA-like poll every {poll:g} s\n"
            f"scaler log (one JSON line per decision): {work / 'scaler.log'}",
            file=out, flush=True,
        )
        ok = asyncio.run(keda_poll_loop(address, metrics_url, duration, poll, out))
        print(f"done: {ok} polls answered with replicas for both pools", file=out, flush=True)
        return 0 if ok > 0 else 1
    finally:
        procs.stop_all()
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaler.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=100.0, help="seconds of polling (default 100)")
    ap.add_argument("--speed", type=float, default=30.0, help="trace time compression (default 30x)")
    ap.add_argument("--poll", type=float, default=5.0, help="KEDA poll interval in seconds (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, TSDB)")
    args = ap.parse_args(argv)
    # SIGTERM behaves like Ctrl-C: unwind through `finally` and stop the children.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return run(args.duration, args.speed, args.poll, args.keep, sys.stdout)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; stopped every process the demo started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
