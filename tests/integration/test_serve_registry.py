"""The plans directory under a running scaler: hot reloads never answer NOT_FOUND, a lost
duplicate takes over when its rival goes, symlink loops are skipped, a big plan loads off
the event loop, and a removed plan leaves no series in /metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import grpc
import pytest
import yaml

from helpers import flat_profile
from procs import closed_port
from scaler.core.observations import TrafficWindow
from scaler.errors import MetricsUnavailable
from scaler.service.logs import event_of
from scaler.service.server import ScalerServer, ServeConfig
from service_harness import T, loop_of, rewrite_plan, running_scaler, scrape, test_plan, trigger, write_plans


def _down() -> str:
    return f"http://127.0.0.1:{closed_port()}"


async def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_valid_reloads_never_answer_not_found(tmp_path: Path) -> None:
    """M3: the new version is in the index before the old one is retired (its loop running,
    so retiring yields to the RPCs), and open streams survive every reload."""
    doc = test_plan("alpha", _down(), "x")
    write_plans(tmp_path, [doc])
    path = tmp_path / "alpha-inference.yaml"
    async with running_scaler(tmp_path, run_loops=True, reload_seconds=0.05) as (server, keda):
        codes: dict[str, int] = {}
        stop = asyncio.Event()

        async def caller() -> None:
            while not stop.is_set():
                try:
                    await keda.metric_spec(trigger("alpha", "prefill"), timeout=3)
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] = codes.get(exc.code().name, 0) + 1

        stream = keda.stub.StreamIsActive(keda.ref(trigger("alpha", "prefill")))
        callers = [asyncio.create_task(caller()) for _ in range(8)]
        for i in range(12):
            doc["spec"]["pools"]["decode"]["maxReplicas"] = 15 + i % 2  # 16 is the file's first value
            version = server.registry.version
            rewrite_plan(path, doc)
            await _wait_for(lambda: server.registry.version != version)
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*callers)
        assert codes.get("NOT_FOUND", 0) == 0 and codes["OK"] > 100, codes
        assert loop_of(server, "alpha").plan.pool("decode").max_replicas == 16
        # The stream is still open (it would have ended NOT_FOUND): only now cancelled.
        assert not stream.done()
        stream.cancel()


async def test_lost_duplicate_is_served_when_its_rival_goes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """M2: dup-b.yaml loses to dup-a.yaml; removing dup-a hands the plan to dup-b at the next scan."""
    caplog.set_level(logging.INFO, logger="dynplan.registry")
    a = test_plan("dup", _down(), "x")
    write_plans(tmp_path, [a])
    (tmp_path / "dup-inference.yaml").rename(tmp_path / "dup-a.yaml")
    async with running_scaler(tmp_path, reload_seconds=0.05) as (server, keda):
        b = json.loads(json.dumps(a))
        b["spec"]["pools"]["decode"]["maxReplicas"] = 7
        rewrite_plan(tmp_path / "dup-b.yaml", b)
        await _wait_for(lambda: tmp_path / "dup-b.yaml" in server.registry.failures)
        assert loop_of(server, "dup").loaded.path == tmp_path / "dup-a.yaml"
        (tmp_path / "dup-a.yaml").unlink()
        # dup-b takes over before dup-a's loop is retired: the plan is never missing.
        seen: set[str] = set()

        def owner() -> str:
            plan_loop = server.registry.index.get(("inference", "dup"))
            seen.add("none" if plan_loop is None else plan_loop.loaded.path.name)
            return "none" if plan_loop is None else plan_loop.loaded.path.name

        deadline = time.monotonic() + 10
        while owner() != "dup-b.yaml":
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0)  # every event-loop turn: a gap would show as "none"
        assert seen == {"dup-a.yaml", "dup-b.yaml"}
        served = loop_of(server, "dup")
        assert served.loaded.path == tmp_path / "dup-b.yaml" and served.plan.pool("decode").max_replicas == 7
        assert (await keda.metric_spec(trigger("dup", "decode"))).metricSpecs[0].metricName == "dynplan-dup-decode"
        assert not server.registry.failures
        text = await scrape(server)
        assert f'dynplan_plan_load_failing{{file="{tmp_path / "dup-b.yaml"}"}} 0.0' in text
        # The removed file's series are gone with it.
        assert "dup-a.yaml" not in text


async def test_symlink_loops_are_skipped_logged_once_and_changes_still_seen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """L1: `ln -s . l1; ln -s . l2` used to make the scan walk 2^40 paths forever."""
    caplog.set_level(logging.INFO, logger="dynplan.registry")
    doc = test_plan("alpha", _down(), "x")
    write_plans(tmp_path, [doc])
    os.symlink(".", tmp_path / "l1")
    os.symlink(".", tmp_path / "l2")
    os.symlink("..", tmp_path / "profile" / "up")
    async with running_scaler(tmp_path, reload_seconds=0.05) as (server, _keda):
        t0 = time.monotonic()
        assert await server.registry.scan() is False
        assert time.monotonic() - t0 < 1.0
        version = server.registry.version
        doc["spec"]["pools"]["decode"]["maxReplicas"] = 5
        rewrite_plan(tmp_path / "alpha-inference.yaml", doc)
        await _wait_for(lambda: server.registry.version != version)
        assert loop_of(server, "alpha").plan.pool("decode").max_replicas == 5
        # A change to the profile below the loops is seen too (it reloads the plan).
        version = server.registry.version
        profile_file = next(p for p in (tmp_path / "profile").rglob("*") if p.is_file())
        st = profile_file.stat()
        os.utime(profile_file, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        await _wait_for(lambda: server.registry.version != version)
        for _ in range(5):
            await server.registry.scan()
    skipped = [e for e in map(event_of, caplog.records) if e is not None and e["event"] == "plans_dir_skipped"]
    assert sorted(Path(e["reason"].split(":")[0]).name for e in skipped) == ["l1", "l2", "up"], skipped
    assert all("symlink loop" in e["reason"] for e in skipped)


def test_walk_is_bounded_in_depth_and_entries(tmp_path: Path) -> None:
    from scaler.service.registry import walk_support

    deep = tmp_path
    for i in range(12):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    walk = walk_support(tmp_path, max_depth=8)
    assert walk.stats == () and len(walk.skipped) == 1 and "deeper than 8 levels" in walk.skipped[0]
    wide = tmp_path / "wide"
    wide.mkdir()
    for i in range(50):
        (wide / f"f{i}").write_text("x")
    walk = walk_support(wide, max_entries=20)
    assert len(walk.stats) == 20 and "more than 20 entries" in walk.skipped[-1]


async def test_adding_a_plan_builds_its_model_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """M1: the model was built on the event loop (PlanLoop.__init__): a 12,000-point inline
    profile stalled every plan's RPCs 2.3 s. Here the build is made slow on purpose (1 s,
    what a big profile costs) and the unrelated plan is polled meanwhile; every build must
    run off the event loop thread."""
    import threading

    import scaler.core.interpolation as interpolation

    real = interpolation.perf_model
    built_on: list[str] = []

    def slow_perf_model(profile):  # type: ignore[no-untyped-def]
        built_on.append(threading.current_thread().name)
        time.sleep(1.0)  # stands for seconds of CloughTocher building; releases the GIL
        return real(profile)

    write_plans(tmp_path, [test_plan("alpha", _down(), "x")])
    async with running_scaler(tmp_path, reload_seconds=0.05) as (server, keda):
        monkeypatch.setattr(interpolation, "perf_model", slow_perf_model)
        latencies: list[float] = []
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await keda.metric_spec(trigger("alpha", "prefill"), timeout=3)
                latencies.append(time.perf_counter() - t0)
                await asyncio.sleep(0.01)

        poller = asyncio.create_task(poll())
        await asyncio.sleep(0.1)
        doc = test_plan("big", _down(), "x")
        (tmp_path / ".big.tmp").write_text(yaml.safe_dump(doc, sort_keys=False))
        (tmp_path / ".big.tmp").rename(tmp_path / "big.yaml")
        await _wait_for(lambda: ("inference", "big") in server.registry.index, timeout=10)
        stop.set()
        await poller
        assert loop_of(server, "big").model is not None
    assert built_on and threading.main_thread().name not in built_on, built_on
    assert max(latencies) < 0.5, f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} calls"


class _Reader:
    """Known traffic from memory; `fail` makes every read fail as Prometheus would."""

    def __init__(self) -> None:
        self.fail = False

    def _check(self) -> None:
        if self.fail:
            raise MetricsUnavailable("Prometheus is down (test)")

    async def traffic(self, plan, at):  # type: ignore[no-untyped-def]
        self._check()
        return TrafficWindow(window_seconds=T, requests=500.0, isl=3000.0, osl=600.0, ttft_ms=50.0, itl_ms=5.0,
                             request_duration_s=3.0)

    async def workers(self, plan, at):  # type: ignore[no-untyped-def]
        self._check()
        return ()

    async def history(self, plan, end, intervals):  # type: ignore[no-untyped-def]
        self._check()
        return [await self.traffic(plan, end) for _ in range(intervals)]

    async def worker_history(self, plan, end, ticks):  # type: ignore[no-untyped-def]
        return []

    async def ready(self, plan, at, workers):  # type: ignore[no-untyped-def]
        return {}


async def test_removed_plan_leaves_no_series(tmp_path: Path) -> None:
    """L6: every series labelled with a removed plan goes (histograms and the query error
    counter included); the other plan's stay."""
    write_plans(tmp_path, [test_plan("gone", _down(), "x"), test_plan("kept", _down(), "y")])
    reader = _Reader()
    cfg = ServeConfig(plans_dir=tmp_path, listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", reload_seconds=0.05)
    server = ScalerServer(cfg, reader_factory=lambda loaded: reader, run_loops=False)
    await server.start()
    try:
        for name in ("gone", "kept"):
            plan_loop = loop_of(server, name)
            await plan_loop.warm_up()
            await plan_loop.tick_throughput(plan_loop.next_end or 0.0)
            reader.fail = True
            with pytest.raises(MetricsUnavailable):
                await plan_loop.tick_throughput(plan_loop.next_end or 0.0)
            reader.fail = False
        text = await scrape(server)
        of_gone = [line for line in text.splitlines() if 'plan="gone"' in line]
        families = {line.split("{")[0] for line in of_gone}
        assert {"dynplan_decision_duration_seconds_bucket", "dynplan_decision_compute_seconds_count",
                "dynplan_prometheus_query_errors_total", "dynplan_desired_replicas"} <= families, families
        kept_before = [line for line in text.splitlines() if 'plan="kept"' in line]
        (tmp_path / "gone-inference.yaml").unlink()
        await _wait_for(lambda: ("inference", "gone") not in server.registry.index)
        text = await scrape(server)
        assert [line for line in text.splitlines() if 'plan="gone"' in line] == []
        assert [line for line in text.splitlines() if 'plan="kept"' in line] == kept_before
    finally:
        await server.stop(grace=0.5)


async def test_reload_keeps_series_of_a_surviving_plan(tmp_path: Path) -> None:
    """M3 / L6: a reload under the same key keeps the plan's series (no gap in dashboards)."""
    doc = test_plan("alpha", _down(), "x")
    write_plans(tmp_path, [doc])
    reader = _Reader()
    cfg = ServeConfig(plans_dir=tmp_path, listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", reload_seconds=0.05)
    server = ScalerServer(cfg, reader_factory=lambda loaded: reader, run_loops=False)
    await server.start()
    try:
        await loop_of(server, "alpha").warm_up()
        before = [line for line in (await scrape(server)).splitlines() if "dynplan_desired_replicas{" in line]
        assert len(before) == 2
        version = server.registry.version
        doc["spec"]["pools"]["decode"]["maxReplicas"] = 9
        rewrite_plan(tmp_path / "alpha-inference.yaml", doc)
        await _wait_for(lambda: server.registry.version != version)
        after = [line for line in (await scrape(server)).splitlines() if "dynplan_desired_replicas{" in line]
        assert after == before
    finally:
        await server.stop(grace=0.5)



async def test_a_profile_change_reloads_only_the_plans_that_read_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Info item: any non-plan file change reloaded (and warmed up) every plan."""
    from helpers import write_plan

    caplog.set_level(logging.INFO, logger="dynplan.registry")
    for name in ("a", "b"):
        doc = test_plan(name, _down(), "x")
        doc["spec"]["profile"] = f"prof-{name}"
        write_plan(tmp_path, doc, profile=flat_profile(), filename=f"{name}.yaml")
    async with running_scaler(tmp_path, reload_seconds=0.05) as (server, _keda):
        a, b = loop_of(server, "a"), loop_of(server, "b")
        caplog.clear()
        (tmp_path / "README.txt").write_text("not a plan, not a profile\n")
        await server.registry.scan()
        assert loop_of(server, "a") is a and loop_of(server, "b") is b
        profile_file = next(p for p in sorted((tmp_path / "prof-a").rglob("*")) if p.is_file())
        st = profile_file.stat()
        os.utime(profile_file, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        await server.registry.scan()
        assert loop_of(server, "a") is not a and loop_of(server, "b") is b
    loaded = [e["plan"] for e in map(event_of, caplog.records) if e is not None and e["event"] == "plan_loaded"]
    assert loaded == ["a"]


async def test_profile_roots_confine_what_a_plan_can_make_the_scaler_read(tmp_path: Path) -> None:
    """The red-team's prof-path-escape: with --profile-root, spec.profile outside the plans
    directory and the roots is refused naming the field; the plans inside are served."""
    import shutil

    plans, profiles, elsewhere = tmp_path / "plans", tmp_path / "profiles", tmp_path / "elsewhere"
    inside, outside = test_plan("inside", _down(), "x"), test_plan("outside", _down(), "x")
    write_plans(plans, [inside])  # writes plans/profile
    shutil.copytree(plans / "profile", profiles / "p")
    shutil.copytree(plans / "profile", elsewhere)
    inside["spec"]["profile"] = str(profiles / "p")
    outside["spec"]["profile"] = "../elsewhere"
    rewrite_plan(plans / "inside-inference.yaml", inside)
    rewrite_plan(plans / "outside-inference.yaml", outside)
    async with running_scaler(plans, profile_roots=(profiles,)) as (server, _keda):
        assert set(server.registry.index) == {("inference", "inside")}
        failures = {Path(f.file).name: f.message for f in server.registry.failures.values()}
        assert "spec.profile" in failures["outside-inference.yaml"]
        assert "lies outside the directories this scaler reads profiles from" in failures["outside-inference.yaml"]
