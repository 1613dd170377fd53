"""charts/dynplan rendered by a real Helm engine (Helm v4's Go SDK, from the helm-python-sdk
wheel) and compared with `kubectl kustomize manifests/` field by field.

The chart's defaults must deploy what the kustomize base deploys; the only differences are
the ones listed in EXPECTED_*: Helm's own labels, the release in the selectors, and what high
availability adds (2 replicas, a PodDisruptionBudget, a soft spread over nodes). Every core
object is validated offline against the Kubernetes OpenAPI schemas (strict), as
test_render_kustomize.py does for the base.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Optional

import helm_python
import kubernetes_validate
import pytest
import yaml

from helpers import REPO
from scaler.planfile import parse_plan_text
from scaler.render.pipeline import render_manifests

CHART = REPO / "charts" / "dynplan"
MANIFESTS = REPO / "manifests"
K8S_VERSION = "1.30"
RELEASE = "dynplan"
NAMESPACE = "keda"

# Labels Helm's objects carry beyond the base's (app.kubernetes.io/name, app.kubernetes.io/part-of).
HELM_LABELS = {
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/version": "0.1.0",
    "helm.sh/chart": "dynplan-0.1.0",
}
INSTANCE = {"app.kubernetes.io/instance": RELEASE}
SPREAD = [{
    "maxSkew": 1,
    "topologyKey": "kubernetes.io/hostname",
    "whenUnsatisfiable": "ScheduleAnyway",
    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "dynplan-scaler", "app.kubernetes.io/component": "scaler",
                                      **INSTANCE}},
}]


def helm_template(values: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert "dynplan/templates/NOTES.txt" in rendered
    docs = []
    for path, text in rendered.items():
        if path.endswith(".txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d is not None]
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}
    assert len(out) == len(docs), "two objects of the same kind and name"
    return out


# --- kustomize: kubectl when it is there, else the subset of kustomize manifests/ uses ---------

def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        *parents, last = op["path"].strip("/").split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "add" and last == "-":
            node.append(op["value"])
        elif op["op"] in ("add", "replace"):
            assert op["op"] == "add" or last in node, op
            node[last] = op["value"]
        else:
            raise AssertionError(f"op {op['op']} is not in the offline subset")


def _offline_kustomize(directory: Path, components: list[Path]) -> list[dict[str, Any]]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kust.get("images", [])}
    docs = []
    for res in kust["resources"]:
        for doc in yaml.safe_load_all((directory / res).read_text()):
            if doc is None:
                continue
            doc = copy.deepcopy(doc)
            doc["metadata"]["namespace"] = kust["namespace"]
            for subject in doc.get("subjects", []):  # kustomize's namespace transformer does this too
                if subject["kind"] == "ServiceAccount":
                    subject["namespace"] = kust["namespace"]
            for entry in kust.get("labels", []):
                doc["metadata"].setdefault("labels", {}).update(entry["pairs"])
            docs.append(doc)
    for comp_dir in components:
        comp = yaml.safe_load((comp_dir / "kustomization.yaml").read_text())
        for res in comp.get("resources", []):
            for doc in yaml.safe_load_all((comp_dir / res).read_text()):
                if not doc["kind"].startswith("Cluster"):  # cluster-scoped objects have no namespace
                    doc["metadata"]["namespace"] = NAMESPACE  # the overlay's; the base's labels stay in the base
                docs.append(doc)
        for patch in comp.get("patches", []):
            target = patch["target"]
            for doc in docs:
                if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]:
                    _json_patch(doc, yaml.safe_load(patch["patch"]))
    for doc in docs:
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            c["image"] = images.get(c["image"], c["image"])
    return docs


def kustomize(tmp_path: Path, components: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    comp_dirs = [MANIFESTS / "components" / c for c in components]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return _offline_kustomize(MANIFESTS, comp_dirs)
    target = MANIFESTS
    if components:
        target = tmp_path / "overlay"
        target.mkdir()
        (target / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": NAMESPACE,
            "resources": [os.path.relpath(MANIFESTS, target)],
            "components": [os.path.relpath(c, target) for c in comp_dirs],
        }))
    proc = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d is not None]


# --- the comparison ------------------------------------------------------------------------------

def _drop(mapping: dict[str, Any], expected: dict[str, Any]) -> None:
    """Remove keys that must be there with exactly these values."""
    for key, value in expected.items():
        assert mapping.get(key) == value, (key, mapping.get(key), value)
        del mapping[key]


def chart_as_base(doc: dict[str, Any]) -> dict[str, Any]:
    """The chart's object minus the listed, expected differences from the kustomize base."""
    doc = copy.deepcopy(doc)
    _drop(doc["metadata"]["labels"], HELM_LABELS)
    spec = doc.get("spec", {})
    if doc["kind"] == "Deployment":
        _drop(spec, {"replicas": 2})
        _drop(spec["selector"]["matchLabels"], INSTANCE)
        _drop(spec["template"]["metadata"]["labels"], INSTANCE)
        _drop(spec["template"]["spec"], {"topologySpreadConstraints": SPREAD})
        spec["replicas"] = 1
    elif doc["kind"] == "Service":
        _drop(spec["selector"], INSTANCE)
    if doc["kind"] == "ServiceMonitor":
        _drop(spec["selector"]["matchLabels"], INSTANCE)
    if doc["kind"] in ("ServiceMonitor", "ClusterRole", "ClusterRoleBinding"):
        # a component's objects come in through the overlay, outside the base's labels
        _drop(doc["metadata"], {"labels": {"app.kubernetes.io/name": "dynplan-scaler", "app.kubernetes.io/part-of": "dynplan"}})
    return doc


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Field paths where a and b differ: a readable failure, field by field."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in (differences(a[k], b[k], f"{path}.{k}") if k in a and k in b else [f"{path}.{k}: only in {'chart' if k in a else 'base'}"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: chart {a!r} != base {b!r}"]


def assert_same_objects(chart_docs: list[dict[str, Any]], base_docs: list[dict[str, Any]]) -> None:
    chart, base = by_kind(chart_docs), by_kind(base_docs)
    pdb = chart.pop("PodDisruptionBudget/dynplan-scaler")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/name": "dynplan-scaler", "app.kubernetes.io/component": "scaler", **INSTANCE}}}
    assert sorted(chart) == sorted(base)
    for name, doc in chart.items():
        assert differences(chart_as_base(doc), base[name]) == [], name


def validate_core(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["apiVersion"] != "monitoring.coreos.com/v1":  # a CRD: no schema in kubernetes-validate
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_defaults_deploy_what_the_kustomize_base_deploys(tmp_path: Path) -> None:
    docs = helm_template()
    assert sorted(by_kind(docs)) == [
        "Deployment/dynplan-scaler",
        "PodDisruptionBudget/dynplan-scaler",
        "Role/dynplan-plan-reader",
        "RoleBinding/dynplan-plan-reader",
        "Service/dynplan-scaler",
        "ServiceAccount/dynplan-scaler",
    ]
    assert {d["metadata"]["namespace"] for d in docs} == {NAMESPACE}
    validate_core(docs)
    assert_same_objects(docs, kustomize(tmp_path))
    # Spot checks independent of the base: what the plans' default address and KEDA rely on.
    pod = by_kind(docs)["Deployment/dynplan-scaler"]["spec"]["template"]["spec"]
    scaler, collector = pod["containers"]
    assert scaler["image"] == "ghcr.io/dynplan/dynplan:0.1.0"
    assert collector["image"] == "docker.io/kiwigrid/k8s-sidecar:1.30.3"
    assert scaler["readinessProbe"]["grpc"] == {"port": 9090, "service": "readiness"}
    assert "volumeMounts" not in pod or all(not m["mountPath"].startswith("/var/run/secrets") for m in scaler["volumeMounts"])


def test_tls_credentials_and_servicemonitor_match_the_components(tmp_path: Path) -> None:
    values = {"tls": {"enabled": True}, "credentials": {"enabled": True}, "serviceMonitor": {"enabled": True}}
    docs = helm_template(values)
    validate_core(docs)
    base = kustomize(tmp_path, ("servicemonitor", "tls", "credentials"))
    assert_same_objects(docs, base)
    scaler = by_kind(docs)["Deployment/dynplan-scaler"]["spec"]["template"]["spec"]["containers"][0]
    assert scaler["args"][-4:] == ["--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key", "--tls-client-ca=/tls/ca.crt",
                                   "--credentials=/etc/dynplan/credentials/credentials.yaml"]
    assert scaler["livenessProbe"] == {"tcpSocket": {"port": 9090}, "initialDelaySeconds": 5, "periodSeconds": 10,
                                       "failureThreshold": 3}


def test_values_change_what_they_name() -> None:
    docs = by_kind(helm_template({
        "fullnameOverride": "dynplan-scaler-b",
        "replicaCount": 3,
        "minReadySeconds": 120,
        "image": {"repository": "registry.example/dynplan", "digest": "sha256:" + "a" * 64},
        "scaler": {"grpcPort": 9443, "prometheusAllow": ["https://thanos-query.monitoring:10902"],
                   "extraArgs": ["--log-level=debug"]},
        "tls": {"enabled": True, "clientCA": False},
        "plans": {"labelValue": "shard-b"},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "30s"},
        "podDisruptionBudget": {"maxUnavailable": 2},
        "terminationGracePeriodSeconds": 45,
        "nodeSelector": {"pool": "system"},
    }))
    validate_core(list(docs.values()))
    assert sorted(docs) == [
        "Deployment/dynplan-scaler-b",
        "PodDisruptionBudget/dynplan-scaler-b",
        "Role/dynplan-scaler-b-plan-reader",
        "RoleBinding/dynplan-scaler-b-plan-reader",
        "Service/dynplan-scaler-b",
        "ServiceAccount/dynplan-scaler-b",
        "ServiceMonitor/dynplan-scaler-b",
    ]
    deployment = docs["Deployment/dynplan-scaler-b"]
    assert deployment["spec"]["replicas"] == 3 and deployment["spec"]["minReadySeconds"] == 120
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "dynplan-scaler-b"
    assert pod["terminationGracePeriodSeconds"] == 45 and pod["nodeSelector"] == {"pool": "system"}
    scaler, collector = pod["containers"]
    assert scaler["image"] == "registry.example/dynplan@sha256:" + "a" * 64
    assert scaler["args"] == ["serve", "--plans=/plans", "--listen=0.0.0.0:9443", "--metrics-listen=0.0.0.0:8080",
                              "--prometheus-allow=https://thanos-query.monitoring:10902", "--profile-root=/plans",
                              "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key", "--log-level=debug"]
    assert scaler["ports"][0] == {"name": "grpc", "containerPort": 9443, "protocol": "TCP"}
    assert scaler["readinessProbe"]["tcpSocket"] == {"port": 9443}
    assert {e["name"]: e["value"] for e in collector["env"]}["LABEL_VALUE"] == "shard-b"
    assert docs["Service/dynplan-scaler-b"]["spec"]["ports"][0]["port"] == 9443
    assert docs["RoleBinding/dynplan-scaler-b-plan-reader"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "dynplan-scaler-b", "namespace": NAMESPACE}]
    sm = docs["ServiceMonitor/dynplan-scaler-b"]
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}]
    assert docs["PodDisruptionBudget/dynplan-scaler-b"]["spec"]["maxUnavailable"] == 2


def test_plan_files_become_configmaps_the_scaler_loads(tmp_path: Path) -> None:
    # The plan file exactly as `dynplan render manifests` puts it in its ConfigMap.
    out = tmp_path / "out"
    render_manifests([str(REPO / "tests" / "fixtures" / "render" / "agg.yaml")], str(out))
    rendered_cm = yaml.safe_load((out / "dynplan-plan-serving.qwen-agg.configmap.yaml").read_text())
    ((key, text),) = rendered_cm["data"].items()
    assert key == "serving.qwen-agg.yaml"  # <namespace>.<plan>.yaml
    docs = by_kind(helm_template({"plans": {"files": {key: text}}}))
    cm = docs["ConfigMap/dynplan-scaler-plan-serving.qwen-agg"]
    kubernetes_validate.validate(cm, K8S_VERSION, strict=True)
    assert cm["metadata"]["labels"]["dynplan.io/plan"] == "true"  # what the collector watches
    assert cm["data"] == {"serving.qwen-agg.yaml": text}
    loaded = parse_plan_text(cm["data"]["serving.qwen-agg.yaml"], "chart#data.serving.qwen-agg.yaml", runtime=False)
    assert (loaded.plan.metadata.namespace, loaded.plan.metadata.name) == ("serving", "qwen-agg")


def test_plan_file_names_stay_distinct_configmap_names() -> None:
    # a-b.c and a.b-c (namespace a-b + plan c, namespace a + plan b-c) must not meet as a-b-c;
    # a name no ConfigMap can have gets a hash of the file name
    files = {"a-b.c.yaml": "a: 1", "a.b-c.yaml": "b: 1", "x-.yaml": "c: 1", "x..y.yaml": "d: 1"}
    docs = by_kind(helm_template({"plans": {"files": files}}))
    names = {d["metadata"]["name"]: list(d["data"]) for d in docs.values() if d["kind"] == "ConfigMap"}
    validate_core(list(docs.values()))
    assert names.pop("dynplan-scaler-plan-a-b.c") == ["a-b.c.yaml"] and names.pop("dynplan-scaler-plan-a.b-c") == ["a.b-c.yaml"]
    assert sorted(len(n) for n in names) == [len("dynplan-scaler-plan-") + 12] * 2
    with pytest.raises(helm_python.HelmError, match="plans.files: Llama.yaml and llama.yaml would both be ConfigMap dynplan-scaler-plan-llama"):
        helm_template({"plans": {"files": {"llama.yaml": "a: 1", "Llama.yaml": "b: 1"}}})


def test_plan_files_whose_collected_name_would_pass_255_bytes_fail() -> None:
    """The collector writes namespace_keda.configmap_dynplan-scaler-plan-<stem>.<stem>.yaml:
    51 + 2 x len(stem) bytes, so a 102-character stem fits and 103 do not."""
    fits = "p" * 102 + ".yaml"
    (cm,) = [d for d in helm_template({"plans": {"files": {fits: "a: 1"}}}) if d["kind"] == "ConfigMap"]
    assert len(f"namespace_keda.configmap_{cm['metadata']['name']}.{fits}") == 255
    with pytest.raises(helm_python.HelmError, match=r"plans.files: p{103}\.yaml: the collector would write it as "
                       r"namespace_keda.configmap_dynplan-scaler-\.\.\., 257 bytes, over the 255 of a file name; "
                       r"shorten the file name by 2"):
        helm_template({"plans": {"files": {"p" * 103 + ".yaml": "a: 1"}}})


def test_plan_given_as_an_object_and_the_network_policy() -> None:
    plan = yaml.safe_load((REPO / "tests" / "fixtures" / "render" / "agg.yaml").read_text())
    docs = by_kind(helm_template({"plans": {"files": {"qwen_agg.yml": plan}}, "networkPolicy": {"enabled": True}}))
    validate_core(list(docs.values()))
    assert yaml.safe_load(docs["ConfigMap/dynplan-scaler-plan-qwen-agg"]["data"]["qwen_agg.yml"]) == plan
    policy = docs["NetworkPolicy/dynplan-scaler"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "dynplan-scaler",
                                                    "app.kubernetes.io/component": "scaler", **INSTANCE}
    assert policy["policyTypes"] == ["Ingress"]  # egress (Prometheus, the API server) stays open
    grpc, metrics = policy["ingress"]
    assert grpc["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert grpc["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
                             "podSelector": {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}}}]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCont": 3}, "additional properties 'replicaCont' not allowed"),
        ({"tls": {"enable": True}}, "at '/tls': additional properties 'enable' not allowed"),
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"scaler": {"prometheusAllow": ["prometheus:9090"]}}, "at '/scaler/prometheusAllow/0'"),
        ({"plans": {"files": {"../x.yaml": "a: 1"}}}, "invalid propertyName '../x.yaml'"),
        # a ConfigMap holds at most 1 MiB, and so does the scaler's plan loader
        ({"plans": {"files": {"big.yaml": "#" * ((1 << 20) + 1)}}},
         "at '/plans/files/big.yaml': maxLength: got 1,048,577, want 1,048,576"),
        ({"networkPolicy": {"enabled": True, "grpcFrom": []}}, "at '/networkPolicy/grpcFrom'"),
        ({"plans": {"namespaces": ["Team_A"]}}, "at '/plans/namespaces/0'"),
        ({"plans": {"namespaces": ["team-a", "team-a"]}}, "at '/plans/namespaces'"),
        ({"plans": {"allNamespaces": "yes"}}, "at '/plans/allNamespaces': got string, want boolean"),
    ],
)
def test_schema_rejects_bad_values_naming_the_field(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as exc:
        helm_template(values)
    assert where in str(exc.value)


def test_all_namespaces_matches_the_component(tmp_path: Path) -> None:
    """plans.allNamespaces = manifests/components/all-namespaces: NAMESPACE=ALL, a ClusterRole."""
    docs = helm_template({"plans": {"allNamespaces": True}})
    validate_core(docs)
    assert_same_objects(docs, kustomize(tmp_path, ("all-namespaces",)))
    objs = by_kind(docs)
    collector = objs["Deployment/dynplan-scaler"]["spec"]["template"]["spec"]["containers"][1]
    assert collector["env"][-1] == {"name": "NAMESPACE", "value": "ALL"}
    assert "namespace" not in objs["ClusterRole/dynplan-plan-reader"]["metadata"]
    assert objs["ClusterRoleBinding/dynplan-plan-reader"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "dynplan-scaler", "namespace": NAMESPACE}]


def test_a_list_of_namespaces_gets_a_role_in_each() -> None:
    """plans.namespaces: the collector watches the release namespace and the list (comma-separated,
    as k8s-sidecar's NAMESPACE takes it), with read access in exactly those, and nothing cluster-wide."""
    docs = helm_template({"plans": {"namespaces": ["team-a", NAMESPACE, "team-b"]}})
    validate_core(docs)
    collector = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][1]
    assert collector["env"][-1] == {"name": "NAMESPACE", "value": "keda,team-a,team-b"}
    rbac = sorted((d["kind"], d["metadata"]["namespace"]) for d in docs if d["kind"].endswith(("Role", "RoleBinding")))
    assert rbac == [(k, ns) for k in ("Role", "RoleBinding") for ns in (NAMESPACE, "team-a", "team-b")]
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        assert binding["roleRef"]["name"] == "dynplan-plan-reader"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dynplan-scaler", "namespace": NAMESPACE}]
    with helm_python.Chart.load(str(CHART)) as chart:
        notes = chart.render({"plans": {"namespaces": ["team-a"]}}, name=RELEASE, namespace=NAMESPACE,
                             is_install=True)["dynplan/templates/NOTES.txt"]
    assert "labelled dynplan.io/plan=true in keda,team-a:\n" in notes
    assert "--check --plan-configmap-namespace plan && kubectl apply -k out/" in notes
    with pytest.raises(helm_python.HelmError, match="plans.namespaces and plans.allNamespaces: set one"):
        helm_template({"plans": {"namespaces": ["team-a"], "allNamespaces": True}})


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"])


def test_collector_names_files_by_their_configmap_and_cannot_be_redirected(tmp_path: Path) -> None:
    """Chart and base alike (every way of watching namespaces): the collector names files
    namespace_<ns>.configmap_<name>.<key> (the scaler checks plans against <ns>), no
    ConfigMap can pick their folder, it has a /tmp of its own, and the scaler knows its
    namespace (--trusted-namespace from POD_NAMESPACE)."""
    from scaler.naming import qualified_name_problem

    pods = {
        "chart": _pod(helm_template()),
        "chart allNamespaces": _pod(helm_template({"plans": {"allNamespaces": True}})),
        "chart namespaces": _pod(helm_template({"plans": {"namespaces": ["team-a"]}})),
        "chart tls+credentials": _pod(helm_template({"tls": {"enabled": True}, "credentials": {"enabled": True}})),
        "base": _pod(kustomize(tmp_path)),
        "base all-namespaces": _pod(kustomize(tmp_path, ("all-namespaces",))),
    }
    for where, pod in pods.items():
        scaler, collector = pod["containers"]
        env = {e["name"]: e.get("value") for e in collector["env"]}
        assert env["UNIQUE_FILENAMES"] == "true", where
        # a key the API server refuses on any object: k8s-sidecar then never finds it
        assert env["FOLDER_ANNOTATION"] == "dynplan.io/no folder override", where
        assert qualified_name_problem(env["FOLDER_ANNOTATION"]) is not None
        assert scaler["env"] == [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}], where
        assert "--trusted-namespace" not in " ".join(scaler["args"]), where  # POD_NAMESPACE is its default
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {c["name"]: {m["mountPath"]: m for m in c["volumeMounts"]} for c in (scaler, collector)}
        scaler_tmp, collector_tmp = mounts["scaler"]["/tmp"]["name"], mounts["plan-collector"]["/tmp"]["name"]
        assert (scaler_tmp, collector_tmp) == ("tmp", "collector-tmp"), where
        assert volumes["tmp"]["emptyDir"] == volumes["collector-tmp"]["emptyDir"] == {"sizeLimit": "64Mi"}, where
        # /plans is the only volume the two share, and the scaler only reads it
        shared = {m["name"] for m in mounts["scaler"].values()} & {m["name"] for m in mounts["plan-collector"].values()}
        assert shared == {"plans"} and mounts["scaler"]["/plans"]["readOnly"] is True, where


def test_helm_lint_strict_is_clean() -> None:
    report = helm_python.lint(str(CHART), strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    # severity 1 is INFO ("icon is recommended"); warnings (2) and errors (3) fail
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_packaged_chart_renders_the_same(tmp_path: Path) -> None:
    """`helm package` output (what a chart repository or OCI registry would serve)."""
    archive = helm_python.package(str(CHART), destination=str(tmp_path))
    assert Path(archive).name == "dynplan-0.1.0.tgz"
    names = sorted(n.removeprefix("dynplan/") for n in tarfile.open(archive).getnames())
    assert {"Chart.yaml", "values.yaml", "values.schema.json", "README.md", "templates/deployment.yaml"} <= set(names)
    assert all(n.startswith("templates/") or "/" not in n for n in names), names
    with helm_python.Chart.load(archive) as packaged, helm_python.Chart.load(str(CHART)) as source:
        assert packaged.render(None, name=RELEASE, namespace=NAMESPACE) == source.render(None, name=RELEASE, namespace=NAMESPACE)
