"""`render manifests` against hostile input that got past it (red-team M6, L9, L14, L16):
its checks hold the rendered objects to what the API server accepts, a plan file's name
cannot add lines to the output, and a plan too large for its ConfigMap is refused before the
expensive work, naming the plan field."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from helpers import REPO, SYNTHETIC_PROFILE_DIR, plan_dict, with_changes, write_plan
from scaler.cli import main
from scaler.core.profile import MAX_PROFILE_POINTS
from scaler.errors import RenderError
from scaler.render import checks, objects
from scaler.render.pipeline import ROLE_OBJECT, build_all, load, render, render_manifests, static_checks

DISAGG = REPO / "tests" / "fixtures" / "render" / "disagg.yaml"


def rendered_objects(*plans: Path) -> dict[str, checks.RenderedObject]:
    out = {}
    for f in render(build_all(load([str(p) for p in plans]), "keda")).by_role(ROLE_OBJECT):
        (doc,) = checks.parse_documents(f.text)
        out[f.name] = checks.RenderedObject(f.name, "plan.yaml", doc)
    return out


@pytest.fixture(scope="module")
def objs() -> dict[str, checks.RenderedObject]:
    return rendered_objects(DISAGG)


def changed(item: checks.RenderedObject, path: tuple[Any, ...], value: object) -> checks.RenderedObject:
    obj = copy.deepcopy(dict(item.obj))
    node: Any = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return checks.RenderedObject(item.file, item.origin, obj)


# -- L9: format int32, derived from the CRD --------------------------------------------------


def _int32_paths(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every property path (list items as "[]") whose schema says `format: int32`."""
    if schema.get("format") == "int32":
        yield prefix
    for name, sub in (schema.get("properties") or {}).items():
        yield from _int32_paths(sub, prefix + (name,))
    if isinstance(schema.get("items"), dict):
        yield from _int32_paths(schema["items"], prefix + ("[]",))


def _values_at(obj: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield obj
    elif path[0] == "[]":
        for item in obj if isinstance(obj, list) else []:
            yield from _values_at(item, path[1:])
    elif isinstance(obj, dict) and path[0] in obj:
        yield from _values_at(obj[path[0]], path[1:])


def _crd_int32_paths() -> list[tuple[str, ...]]:
    crd = yaml.safe_load(checks._schema_text(checks.SCALEDOBJECT_CRD))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return sorted(_int32_paths(version["schema"]["openAPIV3Schema"]))


def test_the_crd_lists_the_int32_fields_dynplan_renders(objs) -> None:
    so = objs["llama-disagg-decode.scaledobject.yaml"].obj
    rendered = {".".join(p) for p in _crd_int32_paths() if list(_values_at(so, p))}
    assert rendered == {
        "spec.cooldownPeriod", "spec.fallback.failureThreshold", "spec.fallback.replicas",
        "spec.maxReplicaCount", "spec.minReplicaCount", "spec.pollingInterval",
        "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies.[].periodSeconds",
        "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies.[].value",
        "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds",
        "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.policies.[].periodSeconds",
        "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.policies.[].value",
        "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.stabilizationWindowSeconds",
    }


@pytest.mark.parametrize("path", [".".join(p) for p in _crd_int32_paths() if "[]" not in p and p[:1] == ("spec",)])
def test_schema_check_enforces_int32(objs, path: str) -> None:
    so = objs["llama-disagg-decode.scaledobject.yaml"]

    def at(value: int) -> list[str]:
        obj = copy.deepcopy(dict(so.obj))
        node = obj
        *parents, last = path.split(".")
        for key in parents:  # fields the fixture does not render get their parents made
            node = node.setdefault(key, {})
        node[last] = value
        return [e.message for e in checks.schema_errors(checks.RenderedObject(so.file, so.origin, obj)) if e.path.endswith(" " + path)]

    assert at(2**31) == ["schema: 2147483648 is not a 'int32'"]
    assert at(2**31 - 1) == []


def test_the_largest_plan_values_render_within_int32(tmp_path: Path) -> None:
    # every plan field that reaches an int32, at the largest value validate accepts: schema
    # and admission pass (the int32 fields' bounds themselves: tests/unit/test_plan_hostile_fields.py)
    doc = with_changes(
        plan_dict(min_replicas={"prefill": 10000, "decode": 10000}, max_replicas={"prefill": 10000, "decode": 10000}),
        {
            "spec.keda.cooldownPeriodSeconds": 2**31 - 1,
            "spec.keda.fallback": {"replicas": 2**31 - 1, "failureThreshold": 1000},
            "spec.keda.pollingIntervalSeconds": 3600,
            "spec.keda.scaleDownStabilizationSeconds": 3600,
            "spec.keda.scaleUpStabilizationSeconds": 3600,
        },
    )
    shutil.copytree(SYNTHETIC_PROFILE_DIR, tmp_path / "profile")
    path = write_plan(tmp_path, doc)
    rendering = render(build_all(load([str(path)]), "keda"))
    assert static_checks(rendering) == []
    so = yaml.safe_load(rendering.texts["llama-8b-decode.scaledobject.yaml"])
    assert (so["spec"]["cooldownPeriod"], so["spec"]["fallback"]["replicas"]) == (2**31 - 1, 2**31 - 1)


# -- L9 / M6: labels, annotations, names in the admission checks -------------------------------


def test_admission_checks_label_and_annotation_keys(objs) -> None:
    so = objs["llama-disagg-decode.scaledobject.yaml"]
    labels = dict(so.obj["metadata"]["labels"])
    (err,) = checks.admission_errors([changed(so, ("metadata", "labels"), {**labels, "bad key!": "x"})])
    assert err.path.endswith("metadata.labels.bad key!") and err.message.startswith("'bad key!' is not a valid label key")
    (err,) = checks.admission_errors([changed(so, ("metadata", "annotations"), {"???": "x"})])
    assert err.path.endswith("metadata.annotations.???") and "not a valid annotation key" in err.message
    (err,) = checks.admission_errors([changed(so, ("metadata", "annotations"), {"a": "x" * (256 * 1024)})])
    assert err.path.endswith("metadata.annotations") and err.message == "are 262145 bytes; Kubernetes allows at most 262144"


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("metadata", "namespace"), "inference\n", "metadata.namespace"),
        (("metadata", "name"), "llama-disagg-decode\n", "metadata.name"),
        (("metadata", "labels", "team"), "llm-serving\n", "metadata.labels.team"),
        (("spec", "scaleTargetRef", "apiVersion"), "apps/v1\n", "spec.scaleTargetRef.apiVersion"),
    ],
)
def test_admission_checks_refuse_a_trailing_newline(objs, path: tuple[str, ...], value: str, field: str) -> None:
    so = objs["llama-disagg-decode.scaledobject.yaml"]
    errs = checks.admission_errors([changed(so, path, value)])
    assert [e.path.rsplit(" ", 1)[-1] for e in errs] == [field]


def test_configmap_key_with_a_trailing_newline(objs) -> None:
    cm = objs["dynplan-plan-inference.llama-disagg.configmap.yaml"]
    data = cm.obj["data"]
    (err,) = checks.admission_errors([changed(cm, ("data",), {k + "\n": v for k, v in data.items()})])
    assert err.message == "is not a valid ConfigMap key"


# -- L16: the plan file's name in the header comments ------------------------------------------


@pytest.mark.parametrize("filename", ["p\nkind: Secret.yaml", "p\rx: 1.yaml", "p\u2028x.yaml", "p\x85x.yaml"])
def test_plan_file_name_cannot_add_lines(tmp_path: Path, filename: str) -> None:
    shutil.copytree(SYNTHETIC_PROFILE_DIR, tmp_path / "profile")
    path = write_plan(tmp_path, plan_dict(), filename=filename)
    out = tmp_path / "out"
    render_manifests([str(path)], str(out))
    for f in sorted(out.iterdir()):
        text = f.read_text(encoding="utf-8")
        lines = text.splitlines()  # splits at every line boundary Python knows, U+2028 too
        if f.suffix != ".json":  # JSON has no comments (the dashboard's ConfigMap has the header)
            assert lines[1] == f"# Generated by `dynplan render manifests` from {filename.encode('unicode_escape').decode()}. " \
                               "Do not edit: change the plan and re-render.", f.name
        assert not any(line.startswith("kind: Secret") for line in lines)
        assert len(text.split("\n")) == len(lines) + 1  # no other line boundary than "\n" anywhere


def test_undecodable_plan_file_name_renders(tmp_path: Path) -> None:
    import os

    shutil.copytree(SYNTHETIC_PROFILE_DIR, tmp_path / "profile")
    good = write_plan(tmp_path, plan_dict())
    name = os.fsdecode(b"q\xff.yaml")  # a lone surrogate after Python decodes it
    (tmp_path / name).write_bytes(good.read_bytes())
    result = CliRunner().invoke(main, ["render", "manifests", "-f", str(tmp_path / name), "-o", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "from q\\udcff.yaml. Do not edit" in (tmp_path / "out" / "kustomization.yaml").read_text(encoding="utf-8")


# -- L14: size limits before expensive work, blaming the right field ----------------------------


def big_profile_plan(tmp_path: Path, points: int) -> Path:
    """A plan whose prefill and decode profiles have `points` points each, in full float
    precision (about 1.1 MB of arrays at 8,000: over the ConfigMap's 1 MiB)."""
    prof = tmp_path / "profile"
    prof.mkdir()
    rng = np.random.default_rng(1)
    isl = np.sort(rng.uniform(100, 16000, points))
    prefill = {"prefill_isl": isl.tolist(), "prefill_ttft": (10 + isl / 97).tolist(), "prefill_thpt_per_gpu": (9000 + rng.uniform(0, 1, points)).tolist()}
    kv, ctx = rng.uniform(0, 1, points), rng.uniform(100, 8000, points)
    decode = {"x_kv_usage": kv.tolist(), "y_context_length": ctx.tolist(), "z_itl": (5 + 20 * kv + ctx / 1000).tolist(),
              "z_thpt_per_gpu": (1000 + 5000 * kv).tolist(), "max_kv_tokens": 900000}
    (prof / "prefill_raw_data.json").write_text(json.dumps(prefill))
    (prof / "decode_raw_data.json").write_text(json.dumps(decode))
    return write_plan(tmp_path, plan_dict())


# the most points a profile may have (scaler.core.profile), capped at 8,000: enough to overflow
BIG = min(8000, MAX_PROFILE_POINTS)


def test_a_profile_too_large_for_the_configmap_is_refused_before_dumping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = big_profile_plan(tmp_path, BIG)
    loaded = load([str(path)])

    def never(*_: object) -> str:
        raise AssertionError("the plan was dumped to YAML")

    monkeypatch.setattr(objects, "plan_file_text", never)
    with pytest.raises(RenderError) as exc:
        build_all(loaded, "keda")
    (err,) = exc.value.errors
    floor = objects.inlined_profile_bytes_floor(loaded[0])
    assert floor > checks.MAX_CONFIGMAP_BYTES
    assert (err.file, err.path) == (str(path), "spec.profile")
    assert err.message == (
        f"the profile inlined into ConfigMap dynplan-plan-inference.llama-8b is at least {floor} bytes; "
        "a ConfigMap holds at most 1048576: use a profile with fewer points"
    )


def test_the_profile_floor_is_below_the_yaml_it_bounds(tmp_path: Path) -> None:
    path = big_profile_plan(tmp_path, 2000)
    (lp,) = load([str(path)])
    floor, text = objects.inlined_profile_bytes_floor(lp), objects.plan_file_text(lp)
    assert 0.9 * len(text.encode()) < floor < len(text.encode())


def test_an_oversized_configmap_is_not_parsed_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # just under the floor's reach: the exact size check refuses it, from the values, and
    # neither parses its 1 MiB of text back nor loads it as the scaler would
    path = big_profile_plan(tmp_path, BIG)
    monkeypatch.setattr(objects, "inlined_profile_bytes_floor", lambda lp: 0)
    monkeypatch.setattr(checks, "configmap_plan_errors", lambda *a: pytest.fail("round trip of an oversized ConfigMap"))
    parsed: list[int] = []
    real = checks.parse_documents
    monkeypatch.setattr(checks, "parse_documents", lambda text: parsed.append(len(text)) or real(text))
    rendering = render(build_all(load([str(path)]), "keda"))
    (err,) = static_checks(rendering)
    assert max(parsed) < 100_000
    assert err.path == "metadata"  # the patched floor says the profile is 0 bytes
    assert err.message.startswith("the plan inlined into dynplan-plan-inference.llama-8b.configmap.yaml (ConfigMap dynplan-plan-inference.llama-8b) is ")
    assert err.message.endswith("a ConfigMap holds at most 1048576")
