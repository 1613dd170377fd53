"""A plan ConfigMap defines plans of its own namespace only. The collector names each file
after its ConfigMap (`namespace_<ns>.configmap_<name>.<key>`, UNIQUE_FILENAMES=true); the
scaler refuses a collected plan of another namespace unless the ConfigMap was in the
trusted namespace (the scaler's, where `render manifests` puts every team's plans by
default). Rendered ConfigMaps, collected as k8s-sidecar collects them, into a scaler on a
real gRPC channel; and one `dynplan serve` process taking the trusted namespace from
POD_NAMESPACE."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from click.testing import CliRunner

from helpers import flat_profile, plan_dict, write_plan
from keda_client import KedaClient, Trigger
from procs import ServeProcess
from scaler.cli import main
from scaler.render.objects import ConfigMapPlacement
from scaler.render.pipeline import render_manifests
from scaler.service.logs import event_of
from service_harness import rewrite_plan, rpc_error, running_scaler, scrape

PLAN = "llama-8b"
SCALER_NS = "keda"


def _rendered_configmap(tmp_path: Path, namespace: str, placement: ConfigMapPlacement, max_decode: int = 16) -> dict[str, Any]:
    """The plan ConfigMap `render manifests` writes for plan `namespace/llama-8b`."""
    doc = plan_dict(name=PLAN, max_replicas={"decode": max_decode})
    doc["metadata"]["namespace"] = namespace
    src = write_plan(tmp_path / "src" / f"{namespace}-{placement}-{max_decode}", doc, profile=flat_profile())
    out = tmp_path / "out" / f"{namespace}-{placement}-{max_decode}"
    out.parent.mkdir(exist_ok=True)
    render_manifests([str(src)], str(out), scaler_namespace=SCALER_NS, configmap_namespace=placement)
    (cm,) = [d for f in sorted(out.glob("dynplan-plan-*.configmap.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return dict(cm)


def _forged(configmap: dict[str, Any], in_namespace: str, name: str) -> dict[str, Any]:
    """What someone who may create ConfigMaps in `in_namespace` applies: another team's plan data."""
    forged = json.loads(json.dumps(configmap))
    forged["metadata"]["namespace"], forged["metadata"]["name"] = in_namespace, name
    return forged


def _collect(configmap: dict[str, Any], folder: Path) -> list[Path]:
    """k8s-sidecar with UNIQUE_FILENAMES=true: every key of the ConfigMap becomes
    `namespace_<namespace>.configmap_<name>.<key>` in one flat folder."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = configmap["metadata"]
    written = []
    for key, text in configmap["data"].items():
        path = folder / f"namespace_{meta['namespace']}.configmap_{meta['name']}.{key}"
        rewrite_plan(path, yaml.safe_load(text))
        written.append(path)
    return written


def _trigger(namespace: str, pool: str = "decode") -> Trigger:
    return Trigger(scaled_object=f"{PLAN}-{pool}", namespace=namespace, metadata={"plan": PLAN, "pool": pool})


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _refusal(path: Path, plan_namespace: str, configmap_namespace: str, trusted: str = f"'{SCALER_NS}'") -> str:
    return (f"{path}: metadata.namespace: is '{plan_namespace}', but the file comes from a ConfigMap in namespace "
            f"'{configmap_namespace}': a ConfigMap defines plans of its own namespace only (of any namespace in the "
            f"trusted namespace: {trusted})")


async def test_a_configmap_defines_plans_of_its_own_namespace_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dynplan.registry")
    plans = tmp_path / "plans"
    own = _rendered_configmap(tmp_path, "team-a", "plan")        # team-a applies its plan in team-a
    central = _rendered_configmap(tmp_path, "team-b", "scaler")  # the admin renders team-b's into keda
    assert (own["metadata"]["namespace"], central["metadata"]["namespace"]) == ("team-a", SCALER_NS)
    (a_file,) = _collect(own, plans)
    (b_file,) = _collect(central, plans)
    # team-a forges team-b's plan (same data key as the real one) and defines a plan of team-c
    forged_b = _forged(_rendered_configmap(tmp_path, "team-b", "scaler", max_decode=1), "team-a", "innocent")
    forged_c = _forged(_rendered_configmap(tmp_path, "team-c", "plan"), "team-a", "dynplan-plan-team-c.llama-8b")
    (spoof_b,) = _collect(forged_b, plans)
    (spoof_c,) = _collect(forged_c, plans)
    assert spoof_b.name == "namespace_team-a.configmap_innocent.team-b.llama-8b.yaml" != b_file.name
    async with running_scaler(plans, reload_seconds=0.05, trusted_namespace=SCALER_NS) as (server, keda):
        registry = server.registry
        assert sorted(registry.index) == [("team-a", PLAN), ("team-b", PLAN)]
        assert registry.index[("team-a", PLAN)].loaded.path == a_file
        assert registry.index[("team-b", PLAN)].loaded.path == b_file  # the keda file: trusted
        assert registry.index[("team-b", PLAN)].plan.pool("decode").max_replicas == 16  # not the forged 1
        assert {p: f.message for p, f in registry.failures.items()} == {
            spoof_b: _refusal(spoof_b, "team-b", "team-a"),
            spoof_c: _refusal(spoof_c, "team-c", "team-a"),
        }
        failed = [e for e in map(event_of, caplog.records) if e and e["event"] == "plan_load_failed"]
        assert sorted((e["file"], e["errors"], e["serving"]) for e in failed) == sorted([
            (str(spoof_b), [_refusal(spoof_b, "team-b", "team-a")], None),
            (str(spoof_c), [_refusal(spoof_c, "team-c", "team-a")], None),
        ])
        metrics = await scrape(server)
        assert f'dynplan_plan_load_failing{{file="{spoof_c}"}} 1.0' in metrics
        assert f'dynplan_plan_load_failing{{file="{a_file}"}}' not in metrics
        # over the real channel: team-a's and team-b's plans answer, team-c's does not exist
        for ns in ("team-a", "team-b"):
            (spec,) = (await keda.metric_spec(_trigger(ns), timeout=3)).metricSpecs
            assert spec.metricName == f"dynplan-{PLAN}-decode"
        err = await rpc_error(keda.metric_spec(_trigger("team-c"), timeout=3))
        assert err.code() == grpc.StatusCode.NOT_FOUND

        # team-a's own file turns into team-c's plan: refused, its last good version serves on
        doc = yaml.safe_load(a_file.read_text())
        doc["metadata"]["namespace"] = "team-c"
        rewrite_plan(a_file, doc)
        await _until(lambda: a_file in registry.failures)
        assert registry.failures[a_file].message == _refusal(a_file, "team-c", "team-a")
        assert registry.index[("team-a", PLAN)].loaded.path == a_file and ("team-c", PLAN) not in registry.index
        assert [e["serving"] for e in map(event_of, caplog.records)
                if e and e["event"] == "plan_load_failed" and e["file"] == str(a_file)] == [f"team-a/{PLAN}"]
        assert (await rpc_error(keda.metric_spec(_trigger("team-c"), timeout=3))).code() == grpc.StatusCode.NOT_FOUND

        # the real team-b ConfigMap is deleted: the forged one does not take the plan over
        b_file.unlink()
        await _until(lambda: ("team-b", PLAN) not in registry.index)
        await asyncio.sleep(0.2)  # a few more scans
        assert ("team-b", PLAN) not in registry.index and spoof_b in registry.failures


async def test_without_a_trusted_namespace_every_collected_file_is_checked(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    (b_file,) = _collect(_rendered_configmap(tmp_path, "team-b", "scaler"), plans)
    async with running_scaler(plans) as (server, _keda):
        assert server.registry.index == {}
        assert server.registry.failures[b_file].message == _refusal(b_file, "team-b", SCALER_NS, "none (--trusted-namespace)")


async def test_files_the_collector_did_not_name_are_not_checked(tmp_path: Path) -> None:
    """A plain directory, a projected volume, a local run: any plan loads from any name."""
    plans = tmp_path / "plans"
    cm = _rendered_configmap(tmp_path, "team-b", "scaler")
    ((key, text),) = cm["data"].items()
    plans.mkdir()
    (plans / key).write_text(text)
    (plans / "namespace_team-a.yaml").write_text(text.replace("name: llama-8b", "name: other", 1))
    async with running_scaler(plans, trusted_namespace="team-a") as (server, _keda):
        assert server.registry.failures == {}
        assert sorted(server.registry.index) == [("team-b", PLAN), ("team-b", "other")]


def test_serve_takes_the_trusted_namespace_from_pod_namespace(tmp_path: Path) -> None:
    """`dynplan serve` (two processes, the default) with POD_NAMESPACE=keda, as the
    manifests set it: the keda ConfigMap's plan of team-b serves, team-a's forgery of it
    does not; a bad --trusted-namespace exits 2."""
    plans = tmp_path / "plans"
    central = _rendered_configmap(tmp_path, "team-b", "scaler")
    _collect(central, plans)
    (forged,) = _collect(_forged(_rendered_configmap(tmp_path, "team-c", "plan"), "team-a", "x"), plans)
    env = {**os.environ, "POD_NAMESPACE": SCALER_NS}
    with ServeProcess(["--plans", str(plans), "--listen", "127.0.0.1:0", "--metrics-listen", "", "--reload-seconds", "60"],
                      env) as serve:
        assert serve.wait_event("listening", 20), serve.log()
        (listening,) = serve.named("listening")
        assert listening["plans"] == 1
        (failed,) = serve.named("plan_load_failed")
        assert failed["file"] == str(forged) and failed["errors"] == [_refusal(forged, "team-c", "team-a")]

        async def ask() -> None:
            address = f"127.0.0.1:{listening['port']}"
            async with grpc.aio.insecure_channel(address) as ch:
                keda = KedaClient(ch, address)
                (spec,) = (await keda.metric_spec(_trigger("team-b"), timeout=3)).metricSpecs
                assert spec.metricName == f"dynplan-{PLAN}-decode"
                assert (await rpc_error(keda.metric_spec(_trigger("team-c"), timeout=3))).code() == grpc.StatusCode.NOT_FOUND

        asyncio.run(ask())
    bad = CliRunner().invoke(main, ["serve", "--plans", str(plans), "--trusted-namespace", "Keda!"])
    assert bad.exit_code == 2, bad.output
    assert "--trusted-namespace: 'Keda!' is not a namespace name (a DNS-1123 label)" in bad.output
    assert bad.exception is None or isinstance(bad.exception, SystemExit)
