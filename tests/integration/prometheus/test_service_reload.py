"""Plan hot reload: a good change makes a new decision; a bad file keeps the last good
version serving and is reported by a log line and a metric."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from scaler.devtools.backfill import OpenMetricsWriter
from scaler.service.logs import event_of
from service_harness import add_history, busy, history_end, loop_of, rewrite_plan, running_scaler, scrape, test_plan, trigger, write_plans

E = history_end()


async def _next_version(server, version: int, timeout: float = 5.0) -> int:
    return await asyncio.wait_for(_wait(server, version), timeout)


async def _wait(server, version: int) -> int:
    while server.registry.version == version:
        await server.registry.wait_changed(version, 1.0)
    return server.registry.version


async def test_hot_reload_good_then_bad_then_fixed(tmp_path: Path, prom_factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dynplan.registry")
    prom = prom_factory(history=add_history(OpenMetricsWriter(), "inference-llama-8b", [busy(50)] * 3, E))
    doc = test_plan("llama-8b", prom.url, "inference-llama-8b")
    write_plans(tmp_path, [doc])
    path = tmp_path / "llama-8b-inference.yaml"
    async with running_scaler(tmp_path, reload_seconds=0.1) as (server, keda):
        first = loop_of(server, "llama-8b")
        await first.warm_up(E)
        assert (await keda.poll(trigger("llama-8b", "prefill")))[0].value == 4

        # Good change: picked up by the directory watch, no restart.
        doc["spec"]["pools"]["prefill"]["maxReplicas"] = 2
        version = server.registry.version
        rewrite_plan(path, doc)
        await _next_version(server, version)
        second = loop_of(server, "llama-8b")
        assert second is not first and second.plan.pool("prefill").max_replicas == 2
        # Until the new version decides, the previous decision keeps serving (no gap).
        assert (await keda.poll(trigger("llama-8b", "prefill")))[0].value == 4
        decision = await second.warm_up(E)
        assert [r.value for r in decision.pools["prefill"].reasons] == ["at_max"]
        assert (await keda.poll(trigger("llama-8b", "prefill")))[0].value == 2

        # Bad change: reported, and the last good version keeps serving.
        path.write_text(path.read_text().replace("maxReplicas: 2", "maxReplicas: -3"))
        for _ in range(50):
            if server.registry.failures:
                break
            await asyncio.sleep(0.1)
        assert loop_of(server, "llama-8b") is second
        assert (await keda.poll(trigger("llama-8b", "prefill")))[0].value == 2
        text = await scrape(server)
        assert f'dynplan_plan_load_failing{{file="{path}"}} 1.0' in text
        assert f'dynplan_plan_load_errors_total{{file="{path}"}} 1.0' in text
        events = [event_of(r) for r in caplog.records]
        failed = [e for e in events if e is not None and e["event"] == "plan_load_failed"]
        assert failed and failed[-1]["file"] == str(path)
        assert failed[-1]["serving"] == "inference/llama-8b"
        assert any("spec.pools.prefill.maxReplicas" in e for e in failed[-1]["errors"])

        # Fixed again: the failure clears.
        doc["spec"]["pools"]["prefill"]["maxReplicas"] = 3
        version = server.registry.version
        rewrite_plan(path, doc)
        await _next_version(server, version)
        assert not server.registry.failures
        text = await scrape(server)
        assert f'dynplan_plan_load_failing{{file="{path}"}} 0.0' in text
        await loop_of(server, "llama-8b").warm_up(E)
        assert (await keda.poll(trigger("llama-8b", "prefill")))[0].value == 3


async def test_new_and_removed_plan_files_and_duplicates(tmp_path: Path) -> None:
    url = "http://127.0.0.1:1"
    write_plans(tmp_path, [test_plan("a", url, "x")])
    async with running_scaler(tmp_path) as (server, keda):
        assert sorted(server.registry.index) == [("inference", "a")]
        write_plans(tmp_path / "unused", [])  # a subdirectory is not a plan
        (tmp_path / "b-inference.yaml").write_text(
            (tmp_path / "a-inference.yaml").read_text().replace("name: a", "name: b")
        )
        # Same (namespace, name) as an existing plan in another file: rejected, first one kept.
        (tmp_path / "z-dup.yaml").write_text((tmp_path / "a-inference.yaml").read_text())
        assert await server.registry.scan() is True
        assert sorted(server.registry.index) == [("inference", "a"), ("inference", "b")]
        assert "already defined by" in server.registry.failures[tmp_path / "z-dup.yaml"].message
        assert server.registry.index[("inference", "a")].loaded.path == tmp_path / "a-inference.yaml"
        (tmp_path / "b-inference.yaml").unlink()
        assert await server.registry.scan() is True
        assert sorted(server.registry.index) == [("inference", "a")]
        err = (await keda.metric_spec(trigger("a", "decode"))).metricSpecs[0]
        assert err.metricName == "dynplan-a-decode"
