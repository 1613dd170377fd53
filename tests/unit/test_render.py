"""`dynplan render manifests`: golden files, determinism, atomic writes, errors, stdout stream.

Update the golden files after an intended change with
`DYNPLAN_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_render.py` and review the diff.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import REPO, SYNTHETIC_PROFILE_DIR, plan_dict, with_changes, write_plan
from scaler.cli import main
from scaler.render.pipeline import render_manifests
from scaler.render.templating import number, quote, template_dir

FIXTURES = REPO / "tests" / "fixtures" / "render"
GOLDEN = REPO / "tests" / "golden" / "render"
DISAGG = FIXTURES / "disagg.yaml"
AGG = FIXTURES / "agg.yaml"


def run(*args: str) -> "CliRunner.Result":  # type: ignore[name-defined]
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def test_golden_files_for_disagg_and_agg_plans(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("render", "manifests", "-f", str(DISAGG), "-f", str(AGG), "-o", str(out))
    assert result.exit_code == 0, result.output
    got = tree(out)
    if os.environ.get("DYNPLAN_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        GOLDEN.mkdir(parents=True)
        for name, data in got.items():
            (GOLDEN / name).write_bytes(data)
    want = tree(GOLDEN)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs from tests/golden/render/{name}"


def test_file_set_and_kustomization_resources(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_manifests([str(DISAGG), str(AGG)], str(out))
    assert sorted(p.name for p in out.iterdir()) == [
        "dynplan-dashboard-inference.llama-disagg.configmap.yaml",
        "dynplan-dashboard-serving.qwen-agg.configmap.yaml",
        "dynplan-inference.llama-disagg.dashboard.json",
        "dynplan-llama-disagg.prometheusrule.yaml",
        "dynplan-plan-inference.llama-disagg.configmap.yaml",
        "dynplan-plan-serving.qwen-agg.configmap.yaml",
        "dynplan-qwen-agg.prometheusrule.yaml",
        "dynplan-serving.qwen-agg.dashboard.json",
        "inference.llama-disagg.rules.test.yaml",
        "inference.llama-disagg.rules.yaml",
        "kustomization.yaml",
        "llama-disagg-decode.scaledobject.yaml",
        "llama-disagg-prefill.scaledobject.yaml",
        "qwen-agg-worker.scaledobject.yaml",
        "serving.qwen-agg.rules.test.yaml",
        "serving.qwen-agg.rules.yaml",
    ]
    kust = yaml.safe_load((out / "kustomization.yaml").read_text())
    # Only Kubernetes objects are resources; the plain rule files and their tests are not.
    assert kust["resources"] == [
        "dynplan-dashboard-inference.llama-disagg.configmap.yaml",
        "dynplan-dashboard-serving.qwen-agg.configmap.yaml",
        "dynplan-llama-disagg.prometheusrule.yaml",
        "dynplan-plan-inference.llama-disagg.configmap.yaml",
        "dynplan-plan-serving.qwen-agg.configmap.yaml",
        "dynplan-qwen-agg.prometheusrule.yaml",
        "llama-disagg-decode.scaledobject.yaml",
        "llama-disagg-prefill.scaledobject.yaml",
        "qwen-agg-worker.scaledobject.yaml",
    ]


def test_scaled_object_fields_follow_the_plan(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_manifests([str(DISAGG), str(AGG)], str(out))
    decode = yaml.safe_load((out / "llama-disagg-decode.scaledobject.yaml").read_text())
    spec = decode["spec"]
    assert decode["metadata"] == {
        "name": "llama-disagg-decode",
        "namespace": "inference",
        "labels": {
            "app.kubernetes.io/managed-by": "dynplan",
            "dynplan.io/plan-name": "llama-disagg",
            "dynplan.io/pool": "decode",
            "team": "llm-serving",
        },
    }
    assert spec["scaleTargetRef"] == {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "name": "llama-dgd-decode",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 12)
    assert spec["pollingInterval"] == 10  # min(15 s, load interval 10 s)
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 2, "behavior": "currentReplicasIfHigher"}
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"] == {
        "stabilizationWindowSeconds": 30,
        "selectPolicy": "Max",
        # at most half the pool per start-up (startupSeconds defaults to 120)
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 120}],
        "tolerance": "0.05",
    }
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 12, "periodSeconds": 15}]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleUp"]["tolerance"] == "0.05"
    assert spec["triggers"] == [
        {
            "type": "external",
            "name": "dynplan-decode",
            "metricType": "AverageValue",
            "metadata": {"plan": "llama-disagg", "pool": "decode", "scalerAddress": "dynplan-scaler.keda.svc:9090"},
        }
    ]

    worker = yaml.safe_load((out / "qwen-agg-worker.scaledobject.yaml").read_text())["spec"]
    assert worker["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "qwen-worker"}
    assert worker["pollingInterval"] == 30
    assert worker["cooldownPeriod"] == 600
    assert worker["fallback"] == {"failureThreshold": 5, "replicas": 4, "behavior": "static"}
    assert worker["triggers"][0]["type"] == "external-push"
    assert worker["triggers"][0]["useCachedMetrics"] is True
    hpa = worker["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert "tolerance" not in hpa["scaleUp"] and "tolerance" not in hpa["scaleDown"]
    assert hpa["scaleUp"]["stabilizationWindowSeconds"] == 15


def test_default_polling_interval_and_fallback(tmp_path: Path) -> None:
    path = write_plan(tmp_path, plan_dict(min_replicas={"prefill": 0, "decode": 3}), profile=None)
    shutil.copytree(SYNTHETIC_PROFILE_DIR, tmp_path / "profile")
    out = tmp_path / "out"
    render_manifests([str(path)], str(out))
    prefill = yaml.safe_load((out / "llama-8b-prefill.scaledobject.yaml").read_text())["spec"]
    decode = yaml.safe_load((out / "llama-8b-decode.scaledobject.yaml").read_text())["spec"]
    assert prefill["pollingInterval"] == 15  # throughput only: KEDA's 15 s
    assert prefill["fallback"]["replicas"] == 1  # max(minReplicas, 1): an outage never scales to zero
    assert decode["fallback"]["replicas"] == 3


def test_rules_and_prometheus_rule_hold_the_same_groups(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_manifests([str(DISAGG)], str(out))
    rule = yaml.safe_load((out / "dynplan-llama-disagg.prometheusrule.yaml").read_text())
    plain = yaml.safe_load((out / "inference.llama-disagg.rules.yaml").read_text())
    assert rule["spec"]["groups"] == plain["groups"]
    assert rule["metadata"]["labels"]["prometheus"] == "k8s"
    assert rule["metadata"]["labels"]["role"] == "recording-rules"
    groups = {g["name"]: g for g in plain["groups"]}
    assert sorted(groups) == ["dynplan-llama-disagg-slo", "dynplan-llama-disagg-throughput", "dynplan-llama-disagg-worker"]
    assert groups["dynplan-llama-disagg-throughput"]["interval"] == "30s"
    assert groups["dynplan-llama-disagg-worker"]["interval"] == "10s"
    assert groups["dynplan-llama-disagg-slo"]["interval"] == "60s"
    for g in plain["groups"]:
        assert set(g) == {"name", "interval", "rules"}  # no labels / query_offset (promtool 2.42)
        for r in g["rules"]:
            if "record" in r and not g["name"].endswith("-slo"):
                assert r["labels"] == {"dynplan_plan": "llama-disagg", "dynplan_namespace": "inference"}
            else:  # the SLI ratios carry their SLI, the alerts their severity
                assert r["labels"]["dynplan_plan"] == "llama-disagg" and ("sli" in r["labels"] or "severity" in r["labels"])
    first = groups["dynplan-llama-disagg-throughput"]["rules"][0]
    # the fixture's 60-s window at the default 30-s scrapes: counted over 120 s, scaled to 60 s
    assert first["record"] == "dynplan_plan:dynamo_frontend_requests_started:increase60s_over120s"
    assert first["expr"] == (
        '(sum(increase(dynamo_frontend_requests_started_total{dynamo_namespace="inference-llama-dgd",'
        'model="meta-llama/llama-3.1-8b-instruct"}[120s])) or sum(increase(dynamo_frontend_requests_total'
        '{dynamo_namespace="inference-llama-dgd",model="meta-llama/llama-3.1-8b-instruct"}[120s]))) * 60 / 120'
    )
    # Throughput-only plan: no per-worker group; explicit evaluation interval.
    render_manifests([str(AGG)], str(tmp_path / "agg"))
    agg = yaml.safe_load((tmp_path / "agg" / "serving.qwen-agg.rules.yaml").read_text())
    assert [(g["name"], g["interval"]) for g in agg["groups"]] == [("dynplan-qwen-agg-throughput", "45s"), ("dynplan-qwen-agg-slo", "45s")]
    assert agg["groups"][0]["rules"][1]["expr"] == (  # 90 s at 30-s scrapes: over 120 s
        "sum(increase(dynamo_frontend_input_sequence_tokens_sum{}[120s])) / "
        "sum(increase(dynamo_frontend_input_sequence_tokens_count{}[120s]))"
    )


def test_configmap_carries_the_plan_with_profile_inlined(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_manifests([str(DISAGG), str(AGG)], str(out), scaler_namespace="scalers")
    cm = yaml.safe_load((out / "dynplan-plan-inference.llama-disagg.configmap.yaml").read_text())
    assert cm["metadata"]["namespace"] == "scalers"  # --scaler-namespace
    assert cm["metadata"]["labels"]["dynplan.io/plan"] == "true"
    assert cm["metadata"]["labels"]["dynplan.io/plan-namespace"] == "inference"
    assert list(cm["data"]) == ["inference.llama-disagg.yaml"]
    doc = yaml.safe_load(cm["data"]["inference.llama-disagg.yaml"])
    assert "profile" not in doc["spec"]
    import json

    want_prefill = json.loads((SYNTHETIC_PROFILE_DIR / "prefill_raw_data.json").read_text())
    assert doc["spec"]["profileData"]["prefill"]["prefill_isl"] == [float(x) for x in want_prefill["prefill_isl"]]
    assert doc["spec"]["scaling"]["load"] == {"enabled": True, "intervalSeconds": 10}
    # spec.scaler.namespace wins over --scaler-namespace.
    agg = yaml.safe_load((out / "dynplan-plan-serving.qwen-agg.configmap.yaml").read_text())
    assert agg["metadata"]["namespace"] == "dynplan-system"
    # The scaler loads it from a flat directory, with no profile files around.
    from scaler.planfile import load_plan

    flat = tmp_path / "plans"
    flat.mkdir()
    (flat / "inference.llama-disagg.yaml").write_text(cm["data"]["inference.llama-disagg.yaml"])
    loaded = load_plan(flat / "inference.llama-disagg.yaml")
    assert loaded.plan.name == "llama-disagg" and loaded.profile is not None


def test_render_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("render", "manifests", "-f", str(DISAGG), "-f", str(AGG), "-o", str(a)).exit_code == 0
    # Other -f order, rendered again over an existing output: byte-identical.
    assert run("render", "manifests", "-f", str(AGG), "-f", str(DISAGG), "-o", str(b)).exit_code == 0
    assert run("render", "manifests", "-f", str(AGG), "-f", str(DISAGG), "-o", str(b)).exit_code == 0
    assert tree(a) == tree(b)
    s1, s2 = io.StringIO(), io.StringIO()
    render_manifests([str(DISAGG), str(AGG)], "-", stdout=s1)
    render_manifests([str(AGG), str(DISAGG)], "-", stdout=s2)
    assert s1.getvalue() == s2.getvalue()


def test_rerender_replaces_the_whole_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_manifests([str(DISAGG), str(AGG)], str(out))
    render_manifests([str(DISAGG)], str(out))
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if "qwen-agg" in n]  # the dropped plan's files are gone
    assert "qwen-agg" not in (out / "kustomization.yaml").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or old dirs left behind


def test_output_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    render_manifests([str(AGG)], str(real))
    link = tmp_path / "link"
    link.symlink_to(real)
    render_manifests([str(DISAGG)], str(link))
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert "inference.llama-disagg.rules.yaml" in tree(real) and "serving.qwen-agg.rules.yaml" not in tree(real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_directory_exchange_swaps_in_one_step(tmp_path: Path) -> None:
    from scaler.render.writer import _exchange

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "new").write_text("n")
    (b / "old").write_text("o")
    assert _exchange(a, b) is True  # Linux >= 3.15 with glibc >= 2.28, as on Debian 12
    assert tree(b) == {"new": b"n"} and tree(a) == {"old": b"o"}


def test_stdout_stream_holds_every_kubernetes_object(tmp_path: Path) -> None:
    result = run("render", "manifests", "-f", str(DISAGG), "-f", str(AGG), "-o", "-")
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("ConfigMap", "dynplan-dashboard-inference.llama-disagg"),
        ("ConfigMap", "dynplan-dashboard-serving.qwen-agg"),
        ("PrometheusRule", "dynplan-llama-disagg"),
        ("ConfigMap", "dynplan-plan-inference.llama-disagg"),
        ("ConfigMap", "dynplan-plan-serving.qwen-agg"),
        ("PrometheusRule", "dynplan-qwen-agg"),
        ("ScaledObject", "llama-disagg-decode"),
        ("ScaledObject", "llama-disagg-prefill"),
        ("ScaledObject", "qwen-agg-worker"),
    ]


def test_failed_render_leaves_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("render", "manifests", "-f", str(DISAGG), "-o", str(out)).exit_code == 0
    before = snapshot(out)
    bad = write_plan(tmp_path, with_changes(plan_dict(), {"spec.pools.prefill.maxReplicas": "many"}), filename="bad.yaml")
    result = run("render", "manifests", "-f", str(AGG), "-f", str(bad), "-o", str(out))
    assert result.exit_code == 2
    assert f"{bad}: spec.pools.prefill.maxReplicas:" in result.stderr
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []  # no temp dirs left


def test_admission_failure_across_plans_writes_nothing(tmp_path: Path) -> None:
    # Two plans scaling the same Deployment: KEDA allows one ScaledObject per target.
    shutil.copytree(SYNTHETIC_PROFILE_DIR, tmp_path / "profile")
    a = write_plan(tmp_path, plan_dict(name="plan-a"), filename="a.yaml")
    b = write_plan(tmp_path, plan_dict(name="plan-b"), filename="b.yaml")
    out = tmp_path / "out"
    result = run("render", "manifests", "-f", str(a), "-f", str(b), "-o", str(out))
    assert result.exit_code == 2
    lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 4  # prefill and decode targets, reported on each of the two plans
    assert f"error: {a}: plan-a-prefill.scaledobject.yaml (ScaledObject plan-a-prefill) spec.scaleTargetRef: " \
           "Deployment inference/llama-prefill is the target of several ScaledObjects (plan-a-prefill, plan-b-prefill); KEDA allows one" in lines
    assert not out.exists()


def test_duplicate_plan_names_are_rejected(tmp_path: Path) -> None:
    # One render writes one directory: the plans' ConfigMaps and rule files differ (they
    # carry the namespace) but the ScaledObject and PrometheusRule files do not. Rendered
    # separately, they may share a scaler (tests/integration/test_render_namespaces.py).
    shutil.copytree(SYNTHETIC_PROFILE_DIR, tmp_path / "profile")
    a = write_plan(tmp_path, plan_dict(), filename="a.yaml")
    b = write_plan(tmp_path, with_changes(plan_dict(), {"metadata.namespace": "other"}), filename="b.yaml")
    result = run("render", "manifests", "-f", str(a), "-f", str(b), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert f"error: {a}: metadata.name: another plan renders the same file 'dynplan-llama-8b.prometheusrule.yaml': plans rendered together " \
           "need distinct names (render same-named plans of different namespaces separately)" in result.stderr
    assert f"error: {b}: metadata.name: another plan renders the same file 'llama-8b-decode.scaledobject.yaml'" in result.stderr
    assert "configmap.yaml'" not in result.stderr and "rules.yaml'" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_inputs_exit_2_naming_file_and_field(tmp_path: Path) -> None:
    missing_profile = write_plan(tmp_path, plan_dict(profile="nowhere"), filename="p.yaml")
    result = run("render", "manifests", "-f", str(missing_profile), "-o", str(tmp_path / "o1"))
    assert result.exit_code == 2
    assert f"{missing_profile}: spec.profile:" in result.stderr
    unknown_source = write_plan(tmp_path, with_changes(plan_dict(), {"spec.metrics.source": "tgi"}), filename="s.yaml")
    result = run("render", "manifests", "-f", str(unknown_source), "-o", str(tmp_path / "o2"))
    assert result.exit_code == 2
    assert f"{unknown_source}: spec.metrics.source:" in result.stderr
    result = run("render", "manifests", "-f", str(tmp_path / "absent.yaml"), "-o", str(tmp_path / "o3"))
    assert result.exit_code == 2 and "absent.yaml: no such file" in result.stderr
    for d in ("o1", "o2", "o3"):
        assert not (tmp_path / d).exists()


def test_bad_scale_target_refs_are_rejected_by_validate_and_render(tmp_path: Path) -> None:
    doc = with_changes(
        plan_dict(),
        {
            "spec.pools.prefill.scaleTargetRef": {"apiVersion": "apps", "kind": "Deployment", "name": "x"},
            "spec.pools.decode.scaleTargetRef": {"apiVersion": "apps/v1", "kind": "deployment", "name": "Llama_Decode"},
        },
    )
    path = write_plan(tmp_path, doc)
    for args in (["validate", str(path)], ["render", "manifests", "-f", str(path), "-o", str(tmp_path / "out")]):
        result = run(*args)
        assert result.exit_code == 2
        assert f"{path}: spec.pools.prefill.scaleTargetRef.apiVersion: " in result.stderr
        assert f"{path}: spec.pools.decode.scaleTargetRef.kind: " in result.stderr
        assert f"{path}: spec.pools.decode.scaleTargetRef.name: " in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_scaler_namespace_is_an_error(tmp_path: Path) -> None:
    result = run("render", "manifests", "-f", str(AGG), "-f", str(DISAGG), "-o", str(tmp_path / "out"), "--scaler-namespace", "Not_A_Namespace")
    assert result.exit_code == 2
    # the plan's ConfigMap and its dashboard's; qwen-agg sets spec.scaler.namespace itself
    assert [l for l in result.stderr.splitlines() if l.startswith("error:")] == [
        f"error: {DISAGG}: dynplan-{kind}-inference.llama-disagg.configmap.yaml (ConfigMap dynplan-{kind}-inference.llama-disagg) "
        "metadata.namespace: 'Not_A_Namespace' is not a valid namespace (DNS-1123 label)"
        for kind in ("dashboard", "plan")
    ]
    assert not (tmp_path / "out").exists()


def test_unwritable_or_foreign_output_exits_2(tmp_path: Path) -> None:
    result = run("render", "manifests", "-f", str(DISAGG), "-o", str(tmp_path / "no" / "such" / "dir"))
    assert result.exit_code == 2
    assert "-o: parent directory" in result.stderr
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = run("render", "manifests", "-f", str(DISAGG), "-o", str(foreign))
    assert result.exit_code == 2
    assert "was not written by dynplan" in result.stderr
    assert tree(foreign) == {"notes.txt": b"keep me"}
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run("render", "manifests", "-f", str(DISAGG), "-o", str(a_file))
    assert result.exit_code == 2 and "exists and is not a directory" in result.stderr
    # A parent nobody can create files in, root included (procfs).
    result = run("render", "manifests", "-f", str(DISAGG), "-o", "/proc/dynplan-render-out")
    assert result.exit_code == 2
    assert "error: /proc/dynplan-render-out: -o: cannot create a directory next to it" in result.stderr


def test_number_and_quote_filters_are_exact() -> None:
    assert number(15) == "15"
    assert number(15.0) == "15"
    assert number(0.05) == "0.05"
    assert number(1e-05) == "0.00001"
    assert number(25.5) == "25.5"
    assert number(2389.3333333333335) == "2389.3333333333335"  # shortest round trip, never rounded
    assert float(number(0.1 + 0.2)) == 0.1 + 0.2
    with pytest.raises(ValueError):
        number(float("nan"))
    with pytest.raises(TypeError):
        number(True)
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert yaml.safe_load(quote('x: "y" # z')) == 'x: "y" # z'


def test_templates_are_strict(tmp_path: Path) -> None:
    import jinja2

    from scaler.render.templating import render_template

    assert (template_dir() / "scaledobject.yaml.j2").is_file()
    with pytest.raises(jinja2.UndefinedError):
        render_template("kustomization.yaml.j2", resources=[], plan_files=[])  # `extra` missing


def test_rendered_file_names_come_from_naming_and_are_sanitised() -> None:
    from scaler import naming

    assert naming.scaled_object_file("llama-8b", "prefill") == "llama-8b-prefill.scaledobject.yaml"
    assert naming.prometheus_rule_file("llama-8b") == "dynplan-llama-8b.prometheusrule.yaml"
    assert naming.configmap_file("inference", "llama-8b") == "dynplan-plan-inference.llama-8b.configmap.yaml"
    # every file name goes through the same DNS helper as the object names
    assert naming.rules_file("Inference", "Llama_8B") == "inference.llama-8b.rules.yaml"
    assert naming.rules_test_file("Inference", "Llama_8B") == "inference.llama-8b.rules.test.yaml"
    assert naming.rule_group_name("llama-8b", naming.WORKER_GROUP) == "dynplan-llama-8b-worker"
