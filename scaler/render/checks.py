"""Checks of rendered output: CRD schemas, KEDA's admission rules, the plan ConfigMap round
trip, and promtool (`check rules`, `test rules`).

Each check returns FieldErrors (file, field path, message); an empty list means it passed.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

from scaler import naming
from scaler.core.plan import Plan
from scaler.errors import FieldError, InputError

SCALEDOBJECT_CRD = "keda.sh_scaledobjects.yaml"
PROMETHEUSRULE_CRD = "monitoring.coreos.com_prometheusrules.yaml"
CRD_BY_KIND: dict[tuple[str, str], str] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALEDOBJECT_CRD,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUSRULE_CRD,
}
MAX_NAME = 63
MAX_CONFIGMAP_BYTES = 1024 * 1024
# KEDA's defaults (scaledobject_types.go)
KEDA_DEFAULT_MAX_REPLICAS = 100
PROMTOOL_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class RenderedObject:
    """One parsed Kubernetes object, the file it was rendered to and the plan file it came from."""

    file: str
    origin: str
    obj: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.obj.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.obj.get("metadata", {}).get("namespace", ""))

    def error(self, field: str, message: str) -> FieldError:
        return FieldError(self.origin, f"{self.file} ({self.kind} {self.name}) {field}".rstrip(), message)


# -- CRD schemas ----------------------------------------------------------------------------


def _schema_text(name: str) -> str:
    return (resources.files("scaler") / "schemas" / name).read_text(encoding="utf-8")


def tighten(schema: Any) -> Any:
    """Add `additionalProperties: false` wherever an object lists `properties` and does not
    preserve unknown fields, so a misspelt field fails validation like the API server prunes it."""
    if isinstance(schema, list):
        return [tighten(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "definitions", "patternProperties") and isinstance(value, dict):
            out[key] = {name: tighten(sub) for name, sub in value.items()}  # a mapping of names, not a schema
        else:
            out[key] = tighten(value)
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


# The integer formats of the CRDs (`format: int32` on every replica count and period): the
# API server refuses a value outside them, jsonschema ignores unknown formats unless told.
INTEGER_FORMATS: dict[str, tuple[int, int]] = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _format_checker() -> Any:
    from jsonschema import FormatChecker

    checker = FormatChecker(formats=())
    for name, (lo, hi) in INTEGER_FORMATS.items():
        def within(value: object, lo: int = lo, hi: int = hi) -> bool:
            return not isinstance(value, int) or isinstance(value, bool) or lo <= value <= hi

        checker.checks(name)(within)
    return checker


@lru_cache(maxsize=4)
def _validator(crd_file: str, version: str) -> Any:
    from jsonschema import Draft4Validator

    crd = yaml.safe_load(_schema_text(crd_file))
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema = tighten(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
            return Draft4Validator(schema, format_checker=_format_checker())
    raise KeyError(f"{crd_file} has no version {version}")


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def schema_errors(item: RenderedObject) -> list[FieldError]:
    """Validate a ScaledObject or PrometheusRule against its CRD's openAPIV3Schema (Draft 4)."""
    api_version = str(item.obj.get("apiVersion", ""))
    crd = CRD_BY_KIND.get((api_version, item.kind))
    if crd is None:
        return []
    validator = _validator(crd, api_version.split("/")[-1])
    errors = sorted(validator.iter_errors(item.obj), key=lambda e: (_path(e.absolute_path), e.message))
    return [item.error(_path(e.absolute_path) or "(object)", f"schema: {e.message}") for e in errors]


# -- admission rules ---------------------------------------------------------------------------


def _scaled_object_errors(item: RenderedObject) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = item.obj.get("spec", {})
    name = item.name
    if len(name) > MAX_NAME:
        errors.append(item.error("metadata.name", f"is {len(name)} characters; KEDA allows at most {MAX_NAME}"))
    hpa = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("name") or f"keda-hpa-{name}"
    if len(hpa) > MAX_NAME:
        errors.append(
            item.error("metadata.name", f"derived HPA name {hpa!r} is {len(hpa)} characters; at most {MAX_NAME} (shorten the plan name)")
        )
    lo = spec.get("minReplicaCount", 0)
    hi = spec.get("maxReplicaCount", KEDA_DEFAULT_MAX_REPLICAS)
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        errors.append(item.error("spec.minReplicaCount", f"must be <= maxReplicaCount ({lo} > {hi})"))
    idle = spec.get("idleReplicaCount")
    if idle is not None and isinstance(lo, int) and not idle < lo:
        errors.append(item.error("spec.idleReplicaCount", f"must be < minReplicaCount ({idle} >= {lo})"))
    names = [t.get("name") for t in spec.get("triggers", []) if t.get("name")]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errors.append(item.error("spec.triggers", f"trigger name {dup!r} is used more than once"))
    ref = spec.get("scaleTargetRef", {})
    api = ref.get("apiVersion", "apps/v1")
    if not naming.API_VERSION_RE.fullmatch(str(api)):
        errors.append(item.error("spec.scaleTargetRef.apiVersion", f"{api!r} is not a Kubernetes apiVersion (group/version)"))
    return errors


def _target_key(item: RenderedObject) -> tuple[str, str, str, str]:
    ref = item.obj.get("spec", {}).get("scaleTargetRef", {})
    group = str(ref.get("apiVersion", "apps/v1")).rpartition("/")[0]
    return (item.namespace, group, str(ref.get("kind", "Deployment")), str(ref.get("name", "")))


def _metadata_errors(item: RenderedObject) -> list[FieldError]:
    errors: list[FieldError] = []
    meta = item.obj.get("metadata", {})
    if not naming.is_dns1123_subdomain(item.name):
        errors.append(item.error("metadata.name", f"{item.name!r} is not a valid object name (DNS-1123 subdomain)"))
    if not naming.is_dns1123_label(item.namespace):
        errors.append(item.error("metadata.namespace", f"{item.namespace!r} is not a valid namespace (DNS-1123 label)"))
    for key, value in sorted((meta.get("labels") or {}).items()):
        problem = naming.qualified_name_problem(str(key))
        if problem is not None:
            errors.append(item.error(f"metadata.labels.{key}", f"{key!r} is not a valid label key: {problem}"))
        if not isinstance(value, str) or not naming.is_label_value(value):
            errors.append(item.error(f"metadata.labels.{key}", f"{value!r} is not a valid label value (<= 63 characters, alphanumeric, '-', '_', '.')"))
    annotations = meta.get("annotations") or {}
    for key in sorted(annotations):
        problem = naming.qualified_name_problem(str(key).lower())
        if problem is not None:
            errors.append(item.error(f"metadata.annotations.{key}", f"{key!r} is not a valid annotation key: {problem}"))
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > naming.MAX_ANNOTATIONS_BYTES:
        errors.append(item.error("metadata.annotations", f"are {size} bytes; Kubernetes allows at most {naming.MAX_ANNOTATIONS_BYTES}"))
    return errors


def configmap_data_bytes(data: Mapping[str, Any]) -> int:
    """What the API server counts against a ConfigMap's 1 MiB: its keys and values, in bytes."""
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in data.items())


def _configmap_errors(item: RenderedObject) -> list[FieldError]:
    errors: list[FieldError] = []
    data = item.obj.get("data") or {}
    size = configmap_data_bytes(data)
    if size > MAX_CONFIGMAP_BYTES:
        errors.append(item.error("data", f"is {size} bytes; a ConfigMap holds at most {MAX_CONFIGMAP_BYTES}"))
    for key in data:
        if not naming.CONFIGMAP_KEY_RE.fullmatch(key):
            errors.append(item.error(f"data.{key}", "is not a valid ConfigMap key"))
    return errors


def _rule_group_errors(item: RenderedObject) -> list[FieldError]:
    names = [g.get("name") for g in item.obj.get("spec", {}).get("groups", [])]
    return [item.error("spec.groups", f"group name {n!r} is used more than once") for n in sorted({n for n in names if names.count(n) > 1})]


def admission_errors(items: Sequence[RenderedObject]) -> list[FieldError]:
    """What KEDA's webhook and the API server would reject that the schema cannot express,
    across every rendered object of every plan."""
    errors: list[FieldError] = []
    seen: dict[tuple[str, str, str], RenderedObject] = {}
    targets: dict[tuple[str, str, str, str], list[RenderedObject]] = defaultdict(list)
    for item in items:
        errors += _metadata_errors(item)
        key = (item.kind, item.namespace, item.name)
        if key in seen:
            errors.append(item.error("metadata.name", f"another rendered object has the same kind, namespace and name (from {seen[key].origin})"))
        else:
            seen[key] = item
        if item.kind == "ScaledObject":
            errors += _scaled_object_errors(item)
            targets[_target_key(item)].append(item)
        elif item.kind == "ConfigMap":
            errors += _configmap_errors(item)
        elif item.kind == "PrometheusRule":
            errors += _rule_group_errors(item)
    for (ns, group, kind, name), owners in sorted(targets.items()):
        if len(owners) > 1:
            others = ", ".join(o.name for o in owners)
            for o in owners:
                errors.append(o.error("spec.scaleTargetRef", f"{kind} {ns}/{name} is the target of several ScaledObjects ({others}); KEDA allows one"))
    return errors


# -- plan ConfigMap round trip -----------------------------------------------------------------


def configmap_plan_errors(item: RenderedObject, key: str, expected_plan: Plan, expected_fingerprint: Optional[str]) -> list[FieldError]:
    """The ConfigMap's plan must load in the scaler exactly as the source plan did."""
    from scaler.planfile import parse_plan_text

    content = (item.obj.get("data") or {}).get(key)
    if not isinstance(content, str):
        return [item.error(f"data.{key}", "is missing")]
    try:
        # the scaler's own loader, bounds included (aliases, duplicate keys, size, depth)
        loaded = parse_plan_text(content, f"{item.file}#data.{key}", runtime=False)
    except InputError as exc:
        return [item.error(f"data.{key}", f"the scaler could not load it: {e}") for e in exc.errors]
    ignore = {"profile", "profile_data"}
    got = loaded.plan.model_dump(exclude={"spec": ignore})
    want = expected_plan.model_dump(exclude={"spec": ignore})
    errors = []
    if got != want:
        errors.append(item.error(f"data.{key}", "does not load back to the same plan"))
    got_fp = loaded.profile.fingerprint if loaded.profile is not None else None
    if got_fp != expected_fingerprint:
        errors.append(item.error(f"data.{key}", "spec.profileData does not load back to the same profile"))
    return errors


# -- promtool ----------------------------------------------------------------------------------


def promtool_path() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise FileNotFoundError("promtool is not on PATH (Debian: apt-get install prometheus)")
    return path


def _run_promtool(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool_path(), *args], cwd=cwd, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_SECONDS, check=False
    )


def _promtool_lines(proc: subprocess.CompletedProcess[str]) -> str:
    text = (proc.stdout + "\n" + proc.stderr).strip()
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def promtool_check_rules(directory: Path, rule_files: Sequence[str], origin: Mapping[str, str]) -> list[FieldError]:
    """`promtool check rules` on each plain rule file (files relative to `directory`)."""
    errors = []
    for name in rule_files:
        proc = _run_promtool(["check", "rules", name], directory)
        if proc.returncode != 0:
            errors.append(FieldError(origin.get(name, name), name, f"promtool check rules failed: {_promtool_lines(proc)}"))
    return errors


def promtool_test_rules(directory: Path, test_files: Sequence[str], origin: Mapping[str, str]) -> list[FieldError]:
    """`promtool test rules` on each generated unit-test file."""
    errors = []
    for name in test_files:
        proc = _run_promtool(["test", "rules", name], directory)
        if proc.returncode != 0:
            errors.append(FieldError(origin.get(name, name), name, f"promtool test rules failed: {_promtool_lines(proc)}"))
    return errors


def parse_documents(text: str) -> list[Any]:
    """All YAML documents of a rendered file (JSON round trip drops YAML-only types)."""
    return [json.loads(json.dumps(d)) for d in yaml.safe_load_all(text) if d is not None]
