"""Where `render manifests` puts a plan's ConfigMap: the scaler's namespace (default) or the
plan's own (spec.scaler.planConfigMapNamespace, or --plan-configmap-namespace)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from helpers import REPO
from scaler.cli import main
from scaler.render.pipeline import render_manifests

FIXTURES = REPO / "tests" / "fixtures" / "render"
DISAGG = FIXTURES / "disagg.yaml"  # metadata.namespace inference, no spec.scaler.namespace
AGG = FIXTURES / "agg.yaml"        # metadata.namespace serving, spec.scaler.namespace dynplan-system


def _namespaces(out: Path) -> dict[str, str]:
    """file -> metadata.namespace of every ConfigMap written."""
    found = {}
    for f in sorted(out.glob("*configmap.yaml")):
        (doc,) = [d for d in yaml.safe_load_all(f.read_text()) if d]
        found[f.name] = doc["metadata"]["namespace"]
    return found


def _with_placement(tmp_path: Path, source: Path, placement: str) -> Path:
    doc = yaml.safe_load(source.read_text())
    doc["spec"].setdefault("scaler", {})["planConfigMapNamespace"] = placement
    path = tmp_path / source.name  # same directory layout: the profile path is relative
    text = yaml.safe_dump(doc, sort_keys=False).replace("../profiles/", str(FIXTURES.parent / "profiles") + "/")
    path.write_text(text)
    return path


def test_default_is_the_scaler_namespace(tmp_path: Path) -> None:
    render_manifests([str(DISAGG), str(AGG)], str(tmp_path / "out"))
    ns = _namespaces(tmp_path / "out")
    assert ns["dynplan-plan-inference.llama-disagg.configmap.yaml"] == "keda"
    assert ns["dynplan-plan-serving.qwen-agg.configmap.yaml"] == "dynplan-system"
    # the dashboards' ConfigMaps go with the plans' (the Grafana sidecar reads them there)
    assert set(ns.values()) == {"keda", "dynplan-system"}


def test_flag_puts_every_configmap_in_its_plans_namespace(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["render", "manifests", "-f", str(DISAGG), "-f", str(AGG), "-o", str(tmp_path / "out"),
                                    "--plan-configmap-namespace", "plan"])
    assert res.exit_code == 0, res.output
    ns = _namespaces(tmp_path / "out")
    assert ns["dynplan-plan-inference.llama-disagg.configmap.yaml"] == "inference"
    assert ns["dynplan-plan-serving.qwen-agg.configmap.yaml"] == "serving"  # over spec.scaler.namespace
    # everything rendered for a plan is then in its own namespace: one team can apply it all
    for f in (tmp_path / "out").glob("*qwen-agg*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and "metadata" in doc and doc.get("kind") != "Kustomization":
                assert doc["metadata"]["namespace"] == "serving", f.name


def test_plan_field_wins_over_the_flag(tmp_path: Path) -> None:
    agg = _with_placement(tmp_path, AGG, "plan")
    disagg = _with_placement(tmp_path, DISAGG, "scaler")
    render_manifests([str(agg), str(disagg)], str(tmp_path / "out"), configmap_namespace="scaler", scaler_namespace="scalers")
    ns = _namespaces(tmp_path / "out")
    assert ns["dynplan-plan-serving.qwen-agg.configmap.yaml"] == "serving"
    assert ns["dynplan-plan-inference.llama-disagg.configmap.yaml"] == "scalers"
    render_manifests([str(disagg)], str(tmp_path / "out2"), configmap_namespace="plan")
    assert _namespaces(tmp_path / "out2")["dynplan-plan-inference.llama-disagg.configmap.yaml"] == "keda"


def test_bad_values_are_one_line_errors_naming_the_field(tmp_path: Path) -> None:
    bad = _with_placement(tmp_path, AGG, "everywhere")
    res = CliRunner().invoke(main, ["render", "manifests", "-f", str(bad), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "spec.scaler.planConfigMapNamespace" in res.output and str(bad) in res.output
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()
    res = CliRunner().invoke(main, ["render", "manifests", "-f", str(AGG), "-o", str(tmp_path / "out"),
                                    "--plan-configmap-namespace", "team"])
    assert res.exit_code == 2 and "--plan-configmap-namespace" in res.output
