"""Two teams' plans of the same name, rendered separately into one scaler namespace: what
lands in shared places (the scaler's namespace, the collector's flat /plans directory, one
Grafana) must not collide, and `dynplan serve` over the collected directory serves both.
Also the upgrade from the names without the namespace (docs/operations.md, Upgrading)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import yaml

from helpers import flat_profile, plan_dict, write_plan
from keda_client import Trigger
from scaler import naming, sources
from scaler.planfile import load_plan
from scaler.render.pipeline import render_manifests
from service_harness import rpc_error, running_scaler, scrape

PLAN = "llama-8b"
SCALER_NS = "keda"
# team-a is disaggregated and team-b aggregated, with different profiles: a plan served from
# the other team's file would show in its pools and its profile.
TEAMS = {"team-a": ("disagg", flat_profile(40000.0, 10000.0)), "team-b": ("agg", flat_profile(20000.0, 5000.0))}


def _render(tmp_path: Path, namespace: str) -> Path:
    mode, profile = TEAMS[namespace]
    doc = plan_dict(name=PLAN, mode=mode)
    doc["metadata"]["namespace"] = namespace
    path = write_plan(tmp_path / "src" / namespace, doc, profile=profile)
    out = tmp_path / "out" / namespace
    out.parent.mkdir(exist_ok=True)
    render_manifests([str(path)], str(out), scaler_namespace=SCALER_NS)
    return out


def _objects(out: Path) -> list[dict[str, Any]]:
    """Every object of a rendered directory, as `kubectl apply -k` would create it."""
    resources = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    return [d for name in resources for d in yaml.safe_load_all((out / name).read_text()) if d is not None]


def _collect(
    objects: list[dict[str, Any]], label: str, value: str, folder: Path, unique_filenames: bool = False
) -> dict[str, str]:
    """What a k8s-sidecar collector does: every data key of every ConfigMap labelled
    `label=value` (in any watched namespace) becomes a file of one flat folder, named by its
    key, or (UNIQUE_FILENAMES=true, as dynplan's plan collector runs) by its ConfigMap and key."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}  # file -> the ConfigMap it came from
    for obj in objects:
        if obj["kind"] != "ConfigMap" or obj["metadata"].get("labels", {}).get(label) != value:
            continue
        meta = obj["metadata"]
        source = f"{meta['namespace']}/{meta['name']}"
        for key, text in obj["data"].items():
            name = naming.collected_file_name(meta["namespace"], meta["name"], key) if unique_filenames else key
            assert name not in written, f"{name} of {source} overwrites the one of {written[name]}"
            written[name] = source
            (folder / name).write_text(text)
    return written


def _trigger(out: Path, pool: str) -> Trigger:
    """The trigger KEDA sends for a rendered ScaledObject (its namespace and metadata)."""
    (so,) = [o for o in _objects(out) if o["kind"] == "ScaledObject" and o["metadata"]["labels"][naming.POOL_LABEL] == pool]
    (trig,) = so["spec"]["triggers"]
    return Trigger(scaled_object=so["metadata"]["name"], namespace=so["metadata"]["namespace"], metadata=dict(trig["metadata"]))


async def test_same_named_plans_of_two_namespaces_share_a_scaler(tmp_path: Path) -> None:
    outs = {ns: _render(tmp_path, ns) for ns in TEAMS}
    objects = [o for out in outs.values() for o in _objects(out)]
    # Both renders applied to one cluster: no object replaces another.
    ids = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects]
    assert len(ids) == len(set(ids)) == 2 * 3 + 3  # per team a plan and a dashboard ConfigMap, a rule; 2 + 1 ScaledObjects
    in_scaler_ns = sorted(name for kind, ns, name in ids if ns == SCALER_NS)
    assert in_scaler_ns == ["dynplan-dashboard-team-a.llama-8b", "dynplan-dashboard-team-b.llama-8b",
                            "dynplan-plan-team-a.llama-8b", "dynplan-plan-team-b.llama-8b"]
    # The collectors' flat folders: one file per plan (named by its ConfigMap, as the plan
    # collector runs), and one dashboard per plan in Grafana (by key, as its sidecar does).
    plans = tmp_path / "plans"
    collected = {ns: f"namespace_keda.configmap_dynplan-plan-{ns}.{PLAN}.{ns}.{PLAN}.yaml" for ns in TEAMS}
    assert _collect(objects, naming.PLAN_CONFIGMAP_LABEL, "true", plans, unique_filenames=True) == {
        collected["team-a"]: "keda/dynplan-plan-team-a.llama-8b", collected["team-b"]: "keda/dynplan-plan-team-b.llama-8b"}
    dashboards = _collect(objects, "grafana_dashboard", "1", tmp_path / "grafana")
    assert sorted(dashboards) == ["dynplan-team-a.llama-8b.dashboard.json", "dynplan-team-b.llama-8b.dashboard.json"]
    uids = {yaml.safe_load((tmp_path / "grafana" / key).read_text())["uid"] for key in dashboards}
    assert len(uids) == 2 and all(len(u) <= 40 for u in uids)
    # One Prometheus evaluating both teams' rules: every recorded series and alert is the team's own.
    written = [
        {(r.get("record") or r["alert"], tuple(sorted(r["labels"].items()))) for g in yaml.safe_load(
            (out / naming.rules_file(ns, PLAN)).read_text())["groups"] for r in g["rules"]}
        for ns, out in outs.items()
    ]
    assert written[0] and not written[0] & written[1]
    assert {dict(labels)[sources.NAMESPACE_LABEL] for rules in written for _, labels in rules} == set(TEAMS)

    # the scaler's own namespace holds every team's plan ConfigMap: trusted, as the manifests set it
    async with running_scaler(plans, profile_roots=(plans,), trusted_namespace=SCALER_NS) as (server, keda):
        registry = server.registry
        assert registry.failures == {}
        assert sorted(registry.index) == [("team-a", PLAN), ("team-b", PLAN)]
        for ns, (mode, profile) in TEAMS.items():
            served = registry.index[(ns, PLAN)]
            assert served.loaded.path == plans / collected[ns]
            assert served.plan.spec.mode == mode
            assert served.loaded.profile is not None and served.loaded.profile.fingerprint == profile.fingerprint
        # GetMetricSpec over a real channel, with each rendered ScaledObject's trigger.
        for ns, pools in (("team-a", ("prefill", "decode")), ("team-b", ("worker",))):
            for pool in pools:
                spec = await keda.metric_spec(_trigger(outs[ns], pool), timeout=3)
                (metric,) = spec.metricSpecs
                assert metric.metricName == naming.metric_name(PLAN, pool) and metric.targetSize > 0
        # Each namespace sees its own plan only: team-a's has no worker pool.
        a_worker = Trigger(scaled_object=f"{PLAN}-worker", namespace="team-a", metadata={"plan": PLAN, "pool": "worker"})
        err = await rpc_error(keda.metric_spec(a_worker, timeout=3))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "has no pool 'worker'" in (err.details() or "")


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_upgrade_keeps_the_old_file_serving_until_its_configmap_is_deleted(tmp_path: Path) -> None:
    """The ConfigMap of an older dynplan (`dynplan-plan-<plan>`, key `<plan>.yaml`) and the new
    one (`<namespace>.<plan>.yaml`) define the same plan: the scaler serves the file it
    loaded first, reports the other as a duplicate, and hands over when the old one goes."""
    out = _render(tmp_path, "team-a")
    (cm,) = [o for o in _objects(out) if o["metadata"]["name"] == "dynplan-plan-team-a.llama-8b"]
    new_text = cm["data"]["team-a.llama-8b.yaml"]
    old = yaml.safe_load(new_text)
    old["spec"]["pools"]["decode"]["maxReplicas"] = 7  # what the older render said
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / f"{PLAN}.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    assert load_plan(plans / f"{PLAN}.yaml").plan.name == PLAN
    async with running_scaler(plans, reload_seconds=0.05) as (server, keda):
        registry = server.registry
        assert registry.index[("team-a", PLAN)].loaded.path == plans / f"{PLAN}.yaml"
        new = plans / f"team-a.{PLAN}.yaml"
        new.write_text(new_text)  # the collector copies the new ConfigMap in
        await _until(lambda: new in registry.failures)
        assert registry.failures[new].message == f"{new}: plan team-a/{PLAN} is already defined by {plans / f'{PLAN}.yaml'}"
        assert registry.index[("team-a", PLAN)].plan.pool("decode").max_replicas == 7  # still the old version
        assert f'dynplan_plan_load_failing{{file="{new}"}} 1.0' in await scrape(server)
        # `kubectl delete configmap dynplan-plan-llama-8b`: the collector removes its file.
        (plans / f"{PLAN}.yaml").unlink()
        await _until(lambda: registry.index.get(("team-a", PLAN)) is not None and registry.index[("team-a", PLAN)].loaded.path == new)
        assert registry.failures == {}
        assert registry.index[("team-a", PLAN)].plan.pool("decode").max_replicas == 16
        trig = _trigger(out, "decode")
        assert (await keda.metric_spec(trig, timeout=3)).metricSpecs[0].metricName == naming.metric_name(PLAN, "decode")
