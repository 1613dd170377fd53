"""manifests/ (the scaler's kustomize base) and rendered output directories as kustomizations.

With kubectl on PATH, `kubectl kustomize` builds them; without it (some CI machines) the same
objects are composed offline from the kustomization files. Either way the core objects are
validated offline against the Kubernetes OpenAPI schemas (kubernetes-validate, strict mode).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from helpers import REPO
from scaler.render.pipeline import render_manifests

MANIFESTS = REPO / "manifests"
K8S_VERSION = "1.30"
FIXTURES = REPO / "tests" / "fixtures" / "render"


def _offline_build(directory: Path) -> list[dict[str, Any]]:
    """The subset of kustomize our kustomizations use: resources, namespace, labels."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out = []
    for res in kust.get("resources", []):
        for doc in yaml.safe_load_all((directory / res).read_text()):
            if doc is None:
                continue
            doc = copy.deepcopy(doc)
            meta = doc.setdefault("metadata", {})
            if "namespace" in kust:
                meta["namespace"] = kust["namespace"]
            for entry in kust.get("labels", []):
                meta.setdefault("labels", {}).update(entry["pairs"])
            out.append(doc)
    return out


def build(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return _offline_build(directory)
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d is not None]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def validate_core(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_scaler_base_builds_and_validates() -> None:
    docs = by_kind(build(MANIFESTS))
    assert sorted(docs) == [
        "Deployment/dynplan-scaler",
        "Role/dynplan-plan-reader",
        "RoleBinding/dynplan-plan-reader",
        "Service/dynplan-scaler",
        "ServiceAccount/dynplan-scaler",
    ]
    for doc in docs.values():
        assert doc["metadata"]["namespace"] == "keda"
        validate_core(doc)

    pod = docs["Deployment/dynplan-scaler"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "dynplan-scaler"
    assert pod["securityContext"]["runAsNonRoot"] is True
    scaler, collector = pod["containers"]
    assert scaler["args"] == ["serve", "--plans=/plans", "--listen=0.0.0.0:9090", "--metrics-listen=0.0.0.0:8080",
                              "--prometheus-allow=http://prometheus-operated.monitoring:9090", "--profile-root=/plans"]
    # Only the collector holds the service-account token (a plan must not be able to reach it).
    assert docs["ServiceAccount/dynplan-scaler"]["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert [m["mountPath"] for m in scaler["volumeMounts"] if m["mountPath"].startswith("/var/run/secrets")] == []
    assert {"name": "kube-api-access", "mountPath": token_dir, "readOnly": True} in collector["volumeMounts"]
    (projected,) = [v["projected"] for v in pod["volumes"] if v["name"] == "kube-api-access"]
    assert projected["sources"][0]["serviceAccountToken"]["path"] == "token"
    assert scaler["livenessProbe"]["grpc"] == {"port": 9090, "service": "liveness"}
    assert scaler["readinessProbe"]["grpc"] == {"port": 9090, "service": "readiness"}
    assert scaler["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    for c in (scaler, collector):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "plans", "mountPath": "/plans", "readOnly": True} in scaler["volumeMounts"]
    env = {e["name"]: e["value"] for e in collector["env"]}
    assert env["LABEL"] == "dynplan.io/plan" and env["LABEL_VALUE"] == "true" and env["FOLDER"] == "/plans"
    assert {"name": "plans", "mountPath": "/plans"} in collector["volumeMounts"]

    ports = {p["name"]: p["port"] for p in docs["Service/dynplan-scaler"]["spec"]["ports"]}
    assert ports == {"grpc": 9090, "metrics": 8080}
    rules = docs["Role/dynplan-plan-reader"]["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
    # The default spec.scaler.address of a plan points at this Service.
    from scaler.core.plan import ScalerEndpoint

    assert ScalerEndpoint().address == "dynplan-scaler.keda:9090"


def test_invalid_object_is_caught_by_the_offline_validator() -> None:
    (deployment,) = [d for d in _offline_build(MANIFESTS) if d["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    try:
        validate_core(broken)
    except kubernetes_validate.ValidationError as exc:
        assert "port" in str(exc.path) or "port" in exc.message
    else:
        raise AssertionError("a string gRPC probe port passed validation")


def test_components_servicemonitor_and_tls(tmp_path: Path) -> None:
    servicemonitor = yaml.safe_load((MANIFESTS / "components/servicemonitor/servicemonitor.yaml").read_text())
    assert servicemonitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s", "honorLabels": True}]
    tls = yaml.safe_load((MANIFESTS / "components/tls/kustomization.yaml").read_text())
    assert tls["kind"] == "Component"
    assert yaml.safe_load((MANIFESTS / "components/credentials/kustomization.yaml").read_text())["kind"] == "Component"
    if shutil.which("kubectl") is None:
        # Offline: the JSON patch must address paths that exist in the base Deployment.
        (deployment,) = [d for d in _offline_build(MANIFESTS) if d["kind"] == "Deployment"]
        ops = yaml.safe_load(tls["patches"][0]["patch"])
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        for op in ops:
            parts = op["path"].strip("/").split("/")
            assert parts[:3] == ["spec", "template", "spec"], op
            if parts[3] == "containers":
                assert parts[5] in container, op
            else:
                assert parts[3] == "volumes" and "volumes" in deployment["spec"]["template"]["spec"], op
        return
    import os

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    rel = lambda p: os.path.relpath(p, overlay)  # noqa: E731 (kustomize wants relative paths)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "keda",
                "resources": [rel(MANIFESTS)],
                "components": [rel(MANIFESTS / "components/servicemonitor"), rel(MANIFESTS / "components/tls"),
                               rel(MANIFESTS / "components/credentials")],
            }
        )
    )
    docs = by_kind(build(overlay))
    sm = docs["ServiceMonitor/dynplan-scaler"]
    assert sm["metadata"]["namespace"] == "keda"
    deployment = docs["Deployment/dynplan-scaler"]
    validate_core(deployment)
    scaler = deployment["spec"]["template"]["spec"]["containers"][0]
    assert scaler["args"][-4:] == ["--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key", "--tls-client-ca=/tls/ca.crt",
                                   "--credentials=/etc/dynplan/credentials/credentials.yaml"]
    assert {"name": "prometheus-credentials", "mountPath": "/etc/dynplan/credentials", "readOnly": True} in scaler["volumeMounts"]
    assert scaler["livenessProbe"]["tcpSocket"] == {"port": 9090}
    assert "grpc" not in scaler["readinessProbe"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "dynplan-scaler-tls"
    assert volumes["prometheus-credentials"]["secret"]["secretName"] == "dynplan-prometheus-credentials"


def test_rendered_output_is_a_kustomization(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_manifests([str(FIXTURES / "disagg.yaml"), str(FIXTURES / "agg.yaml")], str(out))
    docs = by_kind(build(out))
    assert sorted(docs) == [
        "ConfigMap/dynplan-dashboard-inference.llama-disagg",
        "ConfigMap/dynplan-dashboard-serving.qwen-agg",
        "ConfigMap/dynplan-plan-inference.llama-disagg",
        "ConfigMap/dynplan-plan-serving.qwen-agg",
        "PrometheusRule/dynplan-llama-disagg",
        "PrometheusRule/dynplan-qwen-agg",
        "ScaledObject/llama-disagg-decode",
        "ScaledObject/llama-disagg-prefill",
        "ScaledObject/qwen-agg-worker",
    ]
    for name in ("ConfigMap/dynplan-plan-inference.llama-disagg", "ConfigMap/dynplan-plan-serving.qwen-agg",
                 "ConfigMap/dynplan-dashboard-inference.llama-disagg", "ConfigMap/dynplan-dashboard-serving.qwen-agg"):
        validate_core(docs[name])
    assert docs["ScaledObject/qwen-agg-worker"]["metadata"]["namespace"] == "serving"
