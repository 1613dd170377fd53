"""A hostile plan file dropped into a running `dynplan serve`'s plans directory (red-team H1,
serve side): the registry loads through `planfile.load_plan`, so the alias bomb that took the
scaler from 162 MB to 3.6 GB with a 722 MB log line is one short `plan_load_failed` line, the
process stays small, and the healthy plan keeps being served."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import yaml

from helpers import REPO
from keda_client import KedaClient
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


async def test_alias_bomb_in_the_plans_directory(tmp_path: Path) -> None:
    alpha = test_plan("alpha", "http://127.0.0.1:1", "x")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaler.cli", "serve", "--plans", str(tmp_path), "--listen", "127.0.0.1:0",
         "--metrics-listen", "127.0.0.1:0", "--reload-seconds", "0.2"],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    lines: list[str] = []
    ready, failed, loaded = threading.Event(), threading.Event(), threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if '"event": "listening"' in line:
                ready.set()
            if '"event": "plan_load_failed"' in line:
                failed.set()
            if '"event": "plan_loaded"' in line:
                loaded.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert ready.wait(20), "".join(lines)
        port = next(json.loads(line)["port"] for line in lines if '"event": "listening"' in line)
        before_kb = _peak_rss_kb(proc.pid)
        # Started empty (no warm-up to wait for); the healthy plan arrives with the bomb.
        write_plans(tmp_path, [alpha])
        bomb = dict(alpha, metadata=dict(alpha["metadata"], name="bomb"))
        (tmp_path / "bomb.yaml").write_text(_bomb(bomb))
        t0 = time.monotonic()
        assert failed.wait(15), "".join(lines)
        seen = time.monotonic() - t0
        [event] = [json.loads(line) for line in lines if '"event": "plan_load_failed"' in line]
        assert event["errors"] == [
            f"{tmp_path / 'bomb.yaml'}: invalid YAML (line 2, column 10): aliases (*a0) are not allowed in plan files; "
            "write the value out"
        ]
        assert max(len(line) for line in lines) < 2000  # one 722 MB line before
        peak_kb = _peak_rss_kb(proc.pid)
        assert peak_kb - before_kb < 50_000, (before_kb, peak_kb)  # +3.4 GB before
        assert loaded.wait(15), "".join(lines)
        address = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(address) as ch:
            spec = await KedaClient(ch, address).metric_spec(trigger("alpha", "decode"), timeout=3)
            assert spec.metricSpecs[0].metricName == "dynplan-alpha-decode"
        assert seen < 5, seen  # 30 s of expansion before
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
