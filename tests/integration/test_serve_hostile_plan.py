"""A hostile plan file dropped into a running `dynplan serve`'s plans directory (red-team H1,
serve side): the registry loads through `planfile.load_plan`, so the alias bomb that took the
scaler from 162 MB to 3.6 GB with a 722 MB log line is one short `plan_load_failed` line, the
process stays small, and the healthy plan keeps being served."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import grpc
import yaml

from keda_client import KedaClient
from procs import ServeProcess
from service_harness import test_plan, trigger, write_plans


def _bomb(doc: dict) -> str:
    """10^8 leaves as `kind` in 1.5 KB: the report's largest alias bomb."""
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n" + yaml.safe_dump(doc, sort_keys=False).replace("kind: Plan", "kind: *a8", 1)


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def _spec_when_served(keda: KedaClient, ref: Any, within: float = 3.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            return await keda.metric_spec(ref, timeout=3)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_alias_bomb_in_the_plans_directory(tmp_path: Path) -> None:
    alpha = test_plan("alpha", "http://127.0.0.1:1", "x")
    serve = ServeProcess(["--plans", str(tmp_path), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                          "--reload-seconds", "0.2"])
    proc = serve.proc
    try:
        assert serve.wait_event("listening", 20), serve.log()
        listening = serve.named("listening")[0]
        port = listening["port"]
        decider = listening["deciderPid"]  # plans are read in the decider process
        before_kb = _peak_rss_kb(decider)
        # Started empty (no warm-up to wait for); the healthy plan arrives with the bomb.
        write_plans(tmp_path, [alpha])
        bomb = dict(alpha, metadata=dict(alpha["metadata"], name="bomb"))
        (tmp_path / "bomb.yaml").write_text(_bomb(bomb))
        t0 = time.monotonic()
        assert serve.wait_event("plan_load_failed", 15), serve.log()
        seen = time.monotonic() - t0
        [event] = serve.named("plan_load_failed")
        assert event["errors"] == [
            f"{tmp_path / 'bomb.yaml'}: invalid YAML (line 2, column 10): aliases (*a0) are not allowed in plan files; "
            "write the value out"
        ]
        assert max(len(line) for line in serve.lines) < 2000  # one 722 MB line before
        peak_kb = _peak_rss_kb(decider)
        assert peak_kb - before_kb < 50_000, (before_kb, peak_kb)  # +3.4 GB before
        assert serve.wait_event("plan_loaded", 15), serve.log()
        address = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(address) as ch:
            # the serving process has the plan within ~50 ms of plan_loaded (scaler.service.decider)
            spec = await _spec_when_served(KedaClient(ch, address), trigger("alpha", "decode"))
            assert spec.metricSpecs[0].metricName == "dynplan-alpha-decode"
        assert seen < 5, seen  # 30 s of expansion before
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
