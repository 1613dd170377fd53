"""Checks behind `render manifests` / `--check`: CRD schemas, KEDA admission rules, the plan
ConfigMap round trip, promtool check rules and the generated promtool unit tests; and every
example in examples/ through all of them."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import EXAMPLES, REPO, plan_dict, write_plan
from scaler.cli import main
from scaler.render import checks
from scaler.render.pipeline import ROLE_RULES, ROLE_RULES_TEST, build_all, load, promtool_checks, render, render_manifests, static_checks

FIXTURES = REPO / "tests" / "fixtures" / "render"
DISAGG = FIXTURES / "disagg.yaml"
AGG = FIXTURES / "agg.yaml"


def rendered(*plans: Path):
    return render(build_all(load([str(p) for p in plans]), "keda"))


def objects(*plans: Path) -> dict[str, checks.RenderedObject]:
    out = {}
    for f in rendered(*plans).files:
        if f.name.endswith((".scaledobject.yaml", ".prometheusrule.yaml", ".configmap.yaml")):
            (doc,) = checks.parse_documents(f.text)
            out[f.name] = checks.RenderedObject(f.name, "plan.yaml", doc)
    return out


def mutated(item: checks.RenderedObject, path: "str | tuple[str, ...]", value: object) -> checks.RenderedObject:
    obj = copy.deepcopy(dict(item.obj))
    node = obj
    *parents, last = path.split(".") if isinstance(path, str) else path
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is ...:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return checks.RenderedObject(item.file, item.origin, obj)


@pytest.fixture(scope="module")
def objs() -> dict[str, checks.RenderedObject]:
    return objects(DISAGG, AGG)


def test_rendered_objects_pass_every_static_check() -> None:
    assert static_checks(rendered(DISAGG, AGG)) == []


def test_schema_is_tightened_against_typos(objs) -> None:
    so = objs["llama-disagg-prefill.scaledobject.yaml"]
    assert checks.schema_errors(so) == []
    typo = mutated(so, "spec.pollingIntervall", 5)
    (err,) = checks.schema_errors(typo)
    assert err.path == "llama-disagg-prefill.scaledobject.yaml (ScaledObject llama-disagg-prefill) spec"
    assert "'pollingIntervall' was unexpected" in err.message
    nested = mutated(so, "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.policies.0", {"type": "Pods", "value": 1, "periodSecond": 15})
    messages = [e.message for e in checks.schema_errors(nested)]
    assert any("'periodSeconds' is a required property" in m for m in messages)
    assert any("'periodSecond' was unexpected" in m for m in messages)


def test_schema_catches_bad_values(objs) -> None:
    so = objs["llama-disagg-prefill.scaledobject.yaml"]
    (err,) = checks.schema_errors(mutated(so, "spec.pollingInterval", 0))
    assert err.path.endswith("spec.pollingInterval") and "less than the minimum of 1" in err.message
    (err,) = checks.schema_errors(mutated(so, "spec.triggers.0.metadata.pool", 5))
    assert err.path.endswith("spec.triggers[0].metadata.pool") and "is not of type 'string'" in err.message
    (err,) = checks.schema_errors(mutated(so, "spec.fallback.behavior", "sometimes"))
    assert err.path.endswith("spec.fallback.behavior")
    rule = objs["dynplan-llama-disagg.prometheusrule.yaml"]
    assert checks.schema_errors(rule) == []
    (err,) = checks.schema_errors(mutated(rule, "spec.groups.0.interval", "30 seconds"))
    assert err.path.endswith("spec.groups[0].interval") and "does not match" in err.message
    (err,) = checks.schema_errors(mutated(rule, "spec.groups.0.rules.0.expr", ...))
    assert "'expr' is a required property" in err.message


def test_tighten_keeps_preserve_unknown_fields_open() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {}}, "x-kubernetes-preserve-unknown-fields": True}}}
    tight = checks.tighten(schema)
    assert tight["additionalProperties"] is False
    assert "additionalProperties" not in tight["properties"]["a"]
    # A property literally named "properties" is a field, not a schema keyword.
    odd = checks.tighten({"type": "object", "properties": {"properties": {"type": "string"}}})
    assert odd["properties"]["properties"] == {"type": "string"}


def test_admission_rules(objs) -> None:
    so = objs["llama-disagg-prefill.scaledobject.yaml"]
    assert checks.admission_errors([so]) == []
    long_name = "x" * 55  # <= 63 itself, but keda-hpa-<name> is 64
    (err,) = checks.admission_errors([mutated(so, "metadata.name", long_name)])
    assert err.path.endswith("metadata.name") and "derived HPA name" in err.message and "64 characters" in err.message
    errs = checks.admission_errors([mutated(so, "metadata.name", "y" * 64)])
    assert any("is 64 characters; KEDA allows at most 63" in e.message for e in errs)
    (err,) = checks.admission_errors([mutated(so, "spec.minReplicaCount", 9)])
    assert err.path.endswith("spec.minReplicaCount") and "(9 > 8)" in err.message
    two = mutated(so, "spec.triggers", [so.obj["spec"]["triggers"][0]] * 2)
    (err,) = checks.admission_errors([two])
    assert "trigger name 'dynplan-prefill' is used more than once" in err.message
    # One ScaledObject per target, across objects.
    other = mutated(objs["llama-disagg-decode.scaledobject.yaml"], "spec.scaleTargetRef.name", "llama-dgd-prefill")
    errs = checks.admission_errors([so, other])
    assert len(errs) == 2 and all("is the target of several ScaledObjects" in e.message for e in errs)
    # Same name and kind in a different API group is a different target.
    other = mutated(other, "spec.scaleTargetRef.apiVersion", "apps/v1")
    assert checks.admission_errors([so, other]) == []
    (err,) = checks.admission_errors([mutated(so, "metadata.labels.team", "not a label value!")])
    assert err.path.endswith("metadata.labels.team")


def test_configmap_limits_and_roundtrip(objs) -> None:
    cm = objs["dynplan-plan-inference.llama-disagg.configmap.yaml"]
    assert checks.admission_errors([cm]) == []
    big = mutated(cm, ("data", "inference.llama-disagg.yaml"), "#" * (checks.MAX_CONFIGMAP_BYTES + 1))
    (err,) = checks.admission_errors([big])
    assert "a ConfigMap holds at most 1048576" in err.message
    plans = {lp.plan.name: lp for lp in load([str(DISAGG)])}
    lp = plans["llama-disagg"]
    assert checks.configmap_plan_errors(cm, "inference.llama-disagg.yaml", lp.plan, lp.profile.fingerprint) == []
    changed = mutated(cm, ("data", "inference.llama-disagg.yaml"), cm.obj["data"]["inference.llama-disagg.yaml"].replace("ttftMs: 200,", "ttftMs: 250,"))
    (err,) = checks.configmap_plan_errors(changed, "inference.llama-disagg.yaml", lp.plan, lp.profile.fingerprint)
    assert "does not load back to the same plan" in err.message
    broken = mutated(cm, ("data", "inference.llama-disagg.yaml"), "apiVersion: dynplan/v1alpha1\nkind: Plan\n")
    errs = checks.configmap_plan_errors(broken, "inference.llama-disagg.yaml", lp.plan, lp.profile.fingerprint)
    assert errs and all("the scaler could not load it" in e.message for e in errs)


def test_promtool_accepts_rules_and_runs_the_generated_tests(tmp_path: Path) -> None:
    r = rendered(DISAGG, AGG)
    for f in r.files:
        (tmp_path / f.name).write_text(f.text)
    assert promtool_checks(r, tmp_path) == []
    tests = [f.name for f in r.by_role(ROLE_RULES_TEST)]
    assert tests == ["inference.llama-disagg.rules.test.yaml", "serving.qwen-agg.rules.test.yaml"]
    out = subprocess.run(["promtool", "test", "rules", *tests], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("SUCCESS") == 2, out.stdout + out.stderr


def test_generated_promtool_test_catches_wrong_rules(tmp_path: Path) -> None:
    """The unit test is not a tautology: a rule with a wrong window, a missing selector or an
    average of averages fails it."""
    r = rendered(DISAGG)
    origin = {f.name: f.origin for f in r.files}
    rules = "inference.llama-disagg.rules.yaml"
    good = {f.name: f.text for f in r.files}
    mutations = {
        # the fixture's 60-s window and 10-s load window at the default 30-s scrapes: 120-s ranges
        "window": ("[120s]", "[90s]"),
        "selector": (',model=\\"meta-llama/llama-3.1-8b-instruct\\"', ""),
        "average of averages": (
            "sum(increase(dynamo_frontend_input_sequence_tokens_sum",
            "avg(increase(dynamo_frontend_input_sequence_tokens_sum",
        ),
        "completions instead of arrivals": ("requests_started_total{", "requests_total{"),
        "worker window": ('active_prefill_tokens{dynamo_namespace=\\"inference-llama-dgd\\",model=\\"meta-llama/llama-3.1-8b-instruct\\"}[120s]',
                          'active_prefill_tokens{dynamo_namespace=\\"inference-llama-dgd\\",model=\\"meta-llama/llama-3.1-8b-instruct\\"}[60s]'),
    }
    for what, (old, new) in mutations.items():
        d = tmp_path / what.replace(" ", "-")
        d.mkdir()
        for name, text in good.items():
            (d / name).write_text(text.replace(old, new) if name == rules else text)
        assert old in good[rules], what
        assert checks.promtool_check_rules(d, [rules], origin) == [], what
        errs = checks.promtool_test_rules(d, ["inference.llama-disagg.rules.test.yaml"], origin)
        assert len(errs) == 1 and "promtool test rules failed" in errs[0].message, what


def test_promtool_check_rejects_prometheus3_only_fields(tmp_path: Path) -> None:
    r = rendered(AGG)
    text = {f.name: f.text for f in r.files}["serving.qwen-agg.rules.yaml"]
    (tmp_path / "serving.qwen-agg.rules.yaml").write_text(text.replace("  interval: 45s\n", "  interval: 45s\n  query_offset: 1m\n"))
    (err,) = checks.promtool_check_rules(tmp_path, ["serving.qwen-agg.rules.yaml"], {"serving.qwen-agg.rules.yaml": str(AGG)})
    assert err.file == str(AGG) and err.path == "serving.qwen-agg.rules.yaml"
    assert "query_offset" in err.message


def test_check_flag_runs_promtool_before_writing(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", "manifests", "-f", str(DISAGG), "-o", str(out), "--check"])
    assert result.exit_code == 0, result.output
    assert "(promtool checked)" in result.stderr
    # Without promtool on PATH, --check is an error (exit 2) and nothing is written.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out2 = tmp_path / "out2"
    result = CliRunner().invoke(main, ["render", "manifests", "-f", str(DISAGG), "-o", str(out2), "--check"])
    assert result.exit_code == 2
    assert "promtool is not on PATH" in result.stderr
    assert not out2.exists()


EXAMPLE_PLANS = sorted(EXAMPLES.glob("*.yaml"))


def test_there_are_examples() -> None:
    assert EXAMPLE_PLANS, "examples/*.yaml is empty"


@pytest.mark.parametrize("example", EXAMPLE_PLANS, ids=lambda p: p.name)
def test_every_example_renders_and_passes_all_checks(example: Path, tmp_path: Path) -> None:
    from scaler.errors import PlanError

    try:
        load([str(example)])
    except PlanError as exc:  # an example meant to fail validation is not rendered
        pytest.fail(f"example {example.name} does not validate: {exc}")
    out = tmp_path / "out"
    r = render_manifests([str(example)], str(out), check=True)
    # --check ran in a temp dir; run both promtool steps again on the written output.
    assert promtool_checks(r, out) == []
    assert r.by_role(ROLE_RULES) and r.by_role(ROLE_RULES_TEST)
    items = [checks.RenderedObject(f.name, str(example), d) for f in r.files if f.role == "object" for d in checks.parse_documents(f.text)]
    kinds = sorted(i.kind for i in items)
    plan = load([str(example)])[0].plan
    # the plan's ConfigMap and its dashboard's
    assert kinds == sorted(["ConfigMap", "ConfigMap", "PrometheusRule"] + ["ScaledObject"] * len(plan.pool_names))
    assert all(checks.schema_errors(i) == [] for i in items)
    assert checks.admission_errors(items) == []


def test_load_only_plan_renders_without_profile(tmp_path: Path) -> None:
    doc = plan_dict(name="load-only", mode="agg", profile=None, throughput=False, load=True)
    path = write_plan(tmp_path, doc)
    out = tmp_path / "out"
    render_manifests([str(path)], str(out), check=True)
    cm = yaml.safe_load((out / "dynplan-plan-inference.load-only.configmap.yaml").read_text())
    inner = yaml.safe_load(cm["data"]["inference.load-only.yaml"])
    assert "profileData" not in inner["spec"] and "profile" not in inner["spec"]
    so = yaml.safe_load((out / "load-only-worker.scaledobject.yaml").read_text())
    assert so["spec"]["pollingInterval"] == 10
