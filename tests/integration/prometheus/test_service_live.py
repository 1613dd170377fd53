"""The decision loop running on its own against live scraping: a synthetic Dynamo frontend
-> a real Prometheus with the plan's recording rules -> `dynplan serve` -> KEDA client.

The loop must warm up, then tick on the interval grid (window ends are multiples of the
interval since the epoch), and serve replicas that follow the live traffic."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from rules import recording_rules
from scaler.core.plan import Plan
from scaler.devtools.frontend_exporter import SyntheticFrontend
from service_harness import T, loop_of, running_scaler, test_plan, trigger, write_plans

RATE = 20.0  # req/s, ISL 3000, OSL 600 on the flat profile: prefill 1.5 -> 2, decode 1.2 -> 2


def _feed(frontend: SyntheticFrontend, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        for _ in range(int(RATE / 10)):
            frontend.observe_request(3000, 600, 0.05, 0.005, 3.0)


async def test_live_loop_ticks_on_the_grid_and_follows_traffic(tmp_path: Path, prom_factory) -> None:
    stop = threading.Event()
    with SyntheticFrontend(dynamo_namespace="live") as frontend:
        port = frontend.serve("127.0.0.1", 0)
        feeder = threading.Thread(target=_feed, args=(frontend, stop), daemon=True)
        feeder.start()
        try:
            doc = test_plan("llama-8b", "http://placeholder:1", "live")
            rules = recording_rules(Plan.model_validate(doc), tmp_path / "rules.yml", kinds=("throughput",))
            prom = prom_factory(scrape_targets=[f"127.0.0.1:{port}"], rule_files=[rules])
            doc["spec"]["metrics"]["prometheus"]["url"] = prom.url
            write_plans(tmp_path / "plans", [doc])
            async with running_scaler(tmp_path / "plans", run_loops=True, settle_seconds=1.5) as (server, keda):
                loop = loop_of(server, "llama-8b")
                for _ in range(300):
                    if loop.latest is not None:
                        break
                    await asyncio.sleep(0.1)
                first = loop.latest
                assert first is not None, f"no decision after 30 s; last error: {loop.last_error}"
                assert first.window_end % T == 0
                for _ in range(200):
                    if loop.latest.window_end == first.window_end + T:
                        break
                    await asyncio.sleep(0.1)
                second = loop.latest
                assert second.window_end == first.window_end + T, "the loop did not tick on the next window"
                assert abs(second.decision.throughput.observed_rate - RATE) / RATE < 0.2
                # Read a settle delay after the window closed, not before.
                assert second.made_at >= second.window_end + 1.5
                for pool in ("prefill", "decode"):
                    [r] = await keda.poll(trigger("llama-8b", pool))
                    assert (r.raw_int, r.raw_float, r.active) == (2, 2.0, True)
        finally:
            stop.set()
            feeder.join(5)
