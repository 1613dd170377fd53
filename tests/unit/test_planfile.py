"""Loading plan files (scaler.planfile): one test per kind of bad input, each error naming the
file and the field path; several errors reported together; good plans load with their profile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import EXAMPLES, SYNTHETIC_PROFILE_DIR, flat_profile, not_about_buckets, plan_dict, with_changes, write_plan
from scaler.errors import FieldError, PlanError
from scaler.planfile import load_plan, load_plans


def errors_of(path: Path) -> list[FieldError]:
    with pytest.raises(PlanError) as exc:
        load_plan(path)
    return exc.value.errors


def only_error(path: Path) -> FieldError:
    errs = errors_of(path)
    assert len(errs) == 1, errs
    assert errs[0].file == str(path)
    return errs[0]


@pytest.fixture
def good(tmp_path: Path) -> dict:
    """A valid plan whose flat profile is written next to it (tmp_path/profile)."""
    write_plan(tmp_path, plan_dict(), profile=flat_profile())
    return plan_dict()


def bad(tmp_path: Path, doc: dict) -> Path:
    return write_plan(tmp_path, doc, filename="bad.yaml")


# -- good plans -----------------------------------------------------------------------------


def test_good_plan_loads_with_its_profile(tmp_path: Path, good: dict) -> None:
    lp = load_plan(tmp_path / "plan.yaml")
    assert lp.name == "llama-8b" and lp.plan.spec.mode == "disagg"
    assert lp.profile is not None
    assert lp.model.prefill.thpt_per_gpu(3000) == pytest.approx(40000)
    assert not_about_buckets(lp.warnings) == []


@pytest.mark.parametrize("name", ["llama-8b-disagg.yaml", "llama-8b-agg.yaml"])
def test_examples_load(name: str) -> None:
    lp = load_plan(EXAMPLES / name)
    assert lp.plan.metadata.namespace == "inference"
    assert (lp.profile is None) == (name == "llama-8b-agg.yaml")


def test_profile_path_is_relative_to_the_plan_file(tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(SYNTHETIC_PROFILE_DIR, tmp_path / "profiles" / "h200")
    path = write_plan(tmp_path / "plans", plan_dict(profile="../profiles/h200"))
    monkeypatch.chdir("/")
    assert load_plan(path).profile.max_kv_tokens == 932000


def test_workload_outside_profile_is_a_warning(tmp_path: Path) -> None:
    # flat profile covers ISL 100..16000 and context 50..16000
    write_plan(tmp_path, plan_dict(isl=20000), profile=flat_profile())
    lp = load_plan(tmp_path / "plan.yaml")
    assert [w.path for w in not_about_buckets(lp.warnings)] == ["spec.workload.isl", "spec.workload"]
    assert all(w.severity == "warning" for w in lp.warnings)


def test_queueing_under_the_attainment_sizing_is_a_warning(tmp_path: Path) -> None:
    doc = with_changes(plan_dict(sizing="attainment"), {"spec.scaling.throughput.queueing.enabled": True})
    write_plan(tmp_path, doc, profile=flat_profile())
    lp = load_plan(tmp_path / "plan.yaml")
    assert [(w.path, w.severity) for w in not_about_buckets(lp.warnings)] == [("spec.scaling.throughput.queueing.enabled", "warning")]
    assert "sizing: dynamo only" in not_about_buckets(lp.warnings)[0].message
    # under Dynamo's sizing the option is used: no warning
    doc = with_changes(plan_dict(sizing="dynamo"), {"spec.scaling.throughput.queueing.enabled": True})
    write_plan(tmp_path, doc, profile=flat_profile())
    assert not_about_buckets(load_plan(tmp_path / "plan.yaml").warnings) == []


# -- one test per kind of bad input -----------------------------------------------------------


def test_unknown_field(tmp_path: Path, good: dict) -> None:
    err = only_error(bad(tmp_path, with_changes(good, {"spec.pools.decode.maxReplica": 8})))
    assert err.path == "spec.pools.decode.maxReplica"
    assert err.message == "unknown field"


def test_wrong_type(tmp_path: Path, good: dict) -> None:
    err = only_error(bad(tmp_path, with_changes(good, {"spec.pools.prefill.gpusPerReplica": "two"})))
    assert err.path == "spec.pools.prefill.gpusPerReplica"
    assert "integer" in err.message


def test_out_of_range(tmp_path: Path, good: dict) -> None:
    err = only_error(bad(tmp_path, with_changes(good, {"spec.sla.ttftMs": -200})))
    assert err.path == "spec.sla.ttftMs"
    assert "greater than 0" in err.message


def test_min_above_max(tmp_path: Path, good: dict) -> None:
    doc = with_changes(good, {"spec.pools.decode.minReplicas": 8, "spec.pools.decode.maxReplicas": 4})
    err = only_error(bad(tmp_path, doc))
    assert err.path == "spec.pools.decode.maxReplicas"
    assert err.message == "must be >= minReplicas (4 < 8)"


def test_budget_below_minimums(tmp_path: Path, good: dict) -> None:
    doc = with_changes(good, {"spec.pools.prefill.minReplicas": 3, "spec.budget": {"maxGpus": 3}})
    err = only_error(bad(tmp_path, doc))
    assert err.path == "spec.budget.maxGpus"
    assert "3 GPUs cannot hold every pool's minimum (4 GPUs)" in err.message


def test_missing_pool_for_mode(tmp_path: Path, good: dict) -> None:
    err = only_error(bad(tmp_path, with_changes(good, {"spec.pools.decode": ...})))
    assert err.path == "spec.pools.decode"
    assert "required in mode 'disagg'" in err.message


def test_extra_pool_for_mode(tmp_path: Path, good: dict) -> None:
    doc = with_changes(good, {"spec.pools.worker": good["spec"]["pools"]["decode"]})
    err = only_error(bad(tmp_path, doc))
    assert err.path == "spec.pools.worker"
    assert "not allowed in mode 'disagg'" in err.message


@pytest.mark.parametrize("name", ["Llama-8B", "llama_8b", "llama-", "x" * 41])
def test_bad_metadata_name(tmp_path: Path, good: dict, name: str) -> None:
    err = only_error(bad(tmp_path, with_changes(good, {"metadata.name": name})))
    assert err.path == "metadata.name"
    assert ("DNS-1123" in err.message) or ("at most 40 characters" in err.message)


def test_missing_profile_directory(tmp_path: Path, good: dict) -> None:
    err = only_error(bad(tmp_path, with_changes(good, {"spec.profile": "no-such-dir"})))
    assert err.path == "spec.profile"
    assert "no-such-dir" in err.message and "does not exist" in err.message


def test_malformed_profile(tmp_path: Path, good: dict) -> None:
    prefill, decode = flat_profile().to_json_dicts()
    prefill["prefill_ttft"] = prefill["prefill_ttft"][:-1]  # unequal lengths
    decode["x_kv_usage"][0] = 1.5  # KV usage outside [0, 1]
    prof = tmp_path / "broken"
    prof.mkdir()
    (prof / "prefill_raw_data.json").write_text(json.dumps(prefill))
    (prof / "decode_raw_data.json").write_text(json.dumps(decode))
    errs = errors_of(bad(tmp_path, with_changes(good, {"spec.profile": "broken"})))
    assert all(e.path == "spec.profile" for e in errs)
    text = "\n".join(e.message for e in errs)
    assert "prefill_raw_data.json" in text and "unequal lengths" in text
    assert "decode_raw_data.json" in text and "x_kv_usage" in text and "[0, 1]" in text


def test_malformed_inline_profile_data(tmp_path: Path, good: dict) -> None:
    prefill, decode = flat_profile().to_json_dicts()
    decode["max_kv_tokens"] = 0
    doc = with_changes(good, {"spec.profile": ..., "spec.profileData": {"prefill": prefill, "decode": decode}})
    err = only_error(bad(tmp_path, doc))
    assert err.path == "spec.profileData.decode.max_kv_tokens"
    assert "positive" in err.message


def test_inline_profile_data_loads(tmp_path: Path, good: dict) -> None:
    prefill, decode = flat_profile(decode_thpt=1234).to_json_dicts()
    doc = with_changes(good, {"spec.profile": ..., "spec.profileData": {"prefill": prefill, "decode": decode}})
    lp = load_plan(bad(tmp_path, doc))
    assert lp.model.decode.best_throughput(20, 3075).thpt_per_gpu == pytest.approx(1234)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: dynplan/v1alpha1\nkind: Plan\nmetadata: {name: x\nspec: {}\n")
    err = only_error(path)
    assert err.path == ""
    assert err.message.startswith("invalid YAML (line 4")


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    assert "YAML mapping" in only_error(path).message


def test_two_documents_in_one_file(tmp_path: Path, good: dict) -> None:
    text = (tmp_path / "plan.yaml").read_text()
    path = tmp_path / "bad.yaml"
    path.write_text(text + "---\n" + text)
    assert "exactly one plan document, found 2" in only_error(path).message


def test_missing_file(tmp_path: Path) -> None:
    assert only_error(tmp_path / "nope.yaml").message == "no such file"


def test_throughput_enabled_without_profile(tmp_path: Path, good: dict) -> None:
    err = only_error(bad(tmp_path, with_changes(good, {"spec.profile": ...})))
    assert err.path == "spec.profile"
    assert "required when spec.scaling.throughput.enabled is true" in err.message


def test_load_interval_not_shorter_than_throughput_interval(tmp_path: Path, good: dict) -> None:
    doc = with_changes(
        good,
        {"spec.scaling.load.enabled": True, "spec.scaling.load.intervalSeconds": 60, "spec.scaling.throughput.intervalSeconds": 60},
    )
    err = only_error(bad(tmp_path, doc))
    assert err.path == "spec.scaling.load.intervalSeconds"
    assert "(60 >= 60)" in err.message


def test_several_errors_reported_together(tmp_path: Path, good: dict) -> None:
    doc = with_changes(
        good,
        {"metadata.name": "Bad_Name", "spec.sla.itlMs": 0, "spec.pools.decode.gpusPerReplica": "x", "spec.extra": 1},
    )
    path = bad(tmp_path, doc)
    got = sorted(e.path for e in errors_of(path))
    assert got == sorted(["metadata.name", "spec.sla.itlMs", "spec.pools.decode.gpusPerReplica", "spec.extra"])


def test_semantic_and_profile_errors_reported_together(tmp_path: Path, good: dict) -> None:
    doc = with_changes(
        good, {"spec.pools.decode.minReplicas": 20, "spec.profile": "no-such-dir", "spec.budget": {"maxGpus": 2}}
    )
    got = sorted(e.path for e in errors_of(bad(tmp_path, doc)))
    assert got == ["spec.budget.maxGpus", "spec.pools.decode.maxReplicas", "spec.profile"]


def test_load_plans_reports_every_file(tmp_path: Path, good: dict) -> None:
    a = write_plan(tmp_path, with_changes(good, {"spec.sla.itlMs": 0}), filename="a.yaml")
    b = write_plan(tmp_path, with_changes(good, {"spec.mode": "pd"}), filename="b.yaml")
    with pytest.raises(PlanError) as exc:
        load_plans([tmp_path / "plan.yaml", a, b])
    assert [(e.file, e.path) for e in exc.value.errors] == [(str(a), "spec.sla.itlMs"), (str(b), "spec.mode")]


def test_error_string_names_file_and_field(tmp_path: Path, good: dict) -> None:
    path = bad(tmp_path, with_changes(good, {"spec.pools.decode.minReplicas": 8, "spec.pools.decode.maxReplicas": 4}))
    assert str(only_error(path)) == f"{path}: spec.pools.decode.maxReplicas: must be >= minReplicas (4 < 8)"


# -- bounds (hostile input: red-team H1, L8, L11) -------------------------------------------


def _example_text() -> str:
    text = (EXAMPLES / "llama-8b-disagg.yaml").read_text()
    return text.replace("profile: profiles/", f"profile: {EXAMPLES / 'profiles'}/")


def _alias_bomb(levels: int) -> str:
    """10**(levels-1) leaves from a few hundred bytes of aliases, used as `kind`."""
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n" + _example_text().replace("kind: Plan", f"kind: *a{levels - 1}", 1)


def test_aliases_are_refused_before_expansion(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(8))  # 10^7 leaves: 417 MB, 4.8 s and 72 MB of stderr before
    err = only_error(path)
    assert err.path == ""
    assert err.message == "invalid YAML (line 2, column 10): aliases (*a0) are not allowed in plan files; write the value out"


def test_an_anchor_without_alias_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(_example_text().replace("sla:", "sla: &sla", 1))
    assert load_plan(path).name == "llama-8b"


def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(_example_text() + "x: " + "[" * 10000 + "]" * 10000 + "\n")
    err = only_error(path)
    assert err.message.startswith("invalid YAML (line ")
    assert "nest" in err.message and len(err.message) < 200


@pytest.mark.parametrize("pure_python", [False, True], ids=["libyaml", "python"])
def test_nesting_bound_is_the_plan_bound(tmp_path: Path, monkeypatch, pure_python: bool) -> None:
    import scaler.bounded_input as bi

    if pure_python:  # the same bound where libyaml is missing
        monkeypatch.setattr(bi, "_BaseLoader", yaml.SafeLoader)
    from scaler.planfile import MAX_PLAN_DEPTH

    path = tmp_path / "deep.yaml"
    path.write_text(_example_text() + "x: " + "[" * (MAX_PLAN_DEPTH + 1) + "]" * (MAX_PLAN_DEPTH + 1) + "\n")
    assert f"nested more than {MAX_PLAN_DEPTH} levels deep" in only_error(path).message
    path.write_text(_example_text() + "x: " + "[" * (MAX_PLAN_DEPTH - 1) + "]" * (MAX_PLAN_DEPTH - 1) + "\n")
    assert only_error(path).message == "unknown field"  # parsed, then refused by the model


def test_duplicate_key_names_the_key_and_both_lines(tmp_path: Path) -> None:
    text = _example_text()
    first = text.index("      maxReplicas: 16")
    line = text[:first].count("\n") + 1
    path = tmp_path / "dup.yaml"
    path.write_text(text.replace("      maxReplicas: 16", "      maxReplicas: 16\n      maxReplicas: 2", 1))
    err = only_error(path)  # was silently last-wins: validate 0, rendered maxReplicaCount: 2
    assert err.message == (
        f"invalid YAML (line {line + 1}, column 7): duplicate key 'maxReplicas' (first given at line {line})"
    )


def test_plan_larger_than_a_configmap(tmp_path: Path) -> None:
    from scaler.planfile import MAX_PLAN_BYTES

    path = tmp_path / "big.yaml"
    path.write_text(_example_text() + "#" * MAX_PLAN_BYTES + "\n")
    size = path.stat().st_size
    assert only_error(path).message == f"is {size} bytes; at most {MAX_PLAN_BYTES} bytes are accepted"


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    import os

    if kind == "device":
        path = Path("/dev/zero")  # endless: read until MemoryError before
    else:
        path = tmp_path / "fifo.yaml"
        os.mkfifo(path)  # no writer: a plain open() would block forever
    assert only_error(path).message == "is not a regular file"


def test_echoed_input_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(_example_text().replace("kind: Plan", "kind: [" + ", ".join(["xxxxxxxxxx"] * 50000) + "]", 1))
    err = only_error(path)
    assert err.path == "kind" and err.message.startswith("Input should be 'Plan' (got ['xxxxxxxxxx', ")
    assert len(err.message) <= 140


def test_unknown_huge_key_is_clipped(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    # an explicit key: YAML limits implicit ones to 1024 characters
    path.write_text(_example_text().replace("spec:\n", "spec:\n  ? " + "k" * 100_000 + "\n  : 1\n", 1))
    err = only_error(path)
    assert err.message == "unknown field" and err.path == "spec." + "k" * 97 + "..."


def test_many_errors_are_counted_not_listed(tmp_path: Path) -> None:
    from scaler.planfile import MAX_REPORTED_ERRORS

    doc = yaml.safe_load(_example_text())
    doc["spec"]["junk"] = 1
    for i in range(100):
        doc["metadata"][f"x{i}"] = i
    errs = errors_of(bad(tmp_path, doc))
    assert len(errs) == MAX_REPORTED_ERRORS + 1
    assert errs[-1].message == f"... and {101 - MAX_REPORTED_ERRORS} more errors"


def _inline(good: dict, **decode_changes: object) -> dict:
    prefill, decode = flat_profile().to_json_dicts()
    decode.update(decode_changes)
    return with_changes(good, {"spec.profile": ..., "spec.profileData": {"prefill": prefill, "decode": decode}})


def test_inline_profile_refuses_booleans(tmp_path: Path, good: dict) -> None:
    _, decode = flat_profile().to_json_dicts()
    err = only_error(bad(tmp_path, _inline(good, z_itl=[True] + decode["z_itl"][1:])))
    assert (err.path, err.message) == ("spec.profileData.decode.z_itl[0]", "Input should be a valid number")


def test_inline_profile_refuses_unknown_keys(tmp_path: Path, good: dict) -> None:
    err = only_error(bad(tmp_path, _inline(good, junk=[1, 2])))
    assert (err.path, err.message) == ("spec.profileData.decode.junk", "unknown field")


def test_inline_profile_refuses_a_list_for_max_kv_tokens(tmp_path: Path, good: dict) -> None:
    err = only_error(bad(tmp_path, _inline(good, max_kv_tokens=[5, -1])))
    assert (err.path, err.message) == ("spec.profileData.decode.max_kv_tokens", "Input should be a valid number")


def test_inline_profile_refuses_nested_arrays(tmp_path: Path, good: dict) -> None:
    _, decode = flat_profile().to_json_dicts()
    errs = errors_of(bad(tmp_path, _inline(good, z_itl=[[x] for x in decode["z_itl"]])))
    assert {e.message for e in errs} == {"Input should be a valid number"}
    assert errs[0].path == "spec.profileData.decode.z_itl[0]"


def test_inline_profile_point_bound(tmp_path: Path, good: dict) -> None:
    from scaler.core.profile import MAX_PROFILE_POINTS

    err = only_error(bad(tmp_path, _inline(good, z_itl=[1.0] * (MAX_PROFILE_POINTS + 1))))
    assert err.path == "spec.profileData.decode.z_itl"
    assert f"at most {MAX_PROFILE_POINTS} items" in err.message


def test_integer_too_long_for_python(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    text = _example_text()
    line = text[: text.index("maxGpus: 24")].count("\n") + 1
    path.write_text(text.replace("maxGpus: 24", "maxGpus: " + "9" * 5000, 1))  # ValueError traceback before
    assert only_error(path).message == f"invalid YAML (line {line}, column 14): integer of 5000 characters is too long"


def test_validator_messages_quoting_a_value_are_clipped(tmp_path: Path) -> None:
    from scaler.planfile import MAX_MESSAGE_CHARS

    path = tmp_path / "p.yaml"
    path.write_text(_example_text().replace("metadata:\n", 'metadata:\n  labels: {team: "a b' + "v" * 200_000 + '"}\n', 1))
    err = only_error(path)
    assert err.path == "metadata.labels" and err.message.startswith("team: 'a bvvv")
    assert len(err.message) == MAX_MESSAGE_CHARS and err.message.endswith("...")


def test_a_file_name_with_a_newline_stays_on_one_error_line() -> None:
    from scaler.errors import FieldError

    text = str(FieldError("p\nerror: forged.yaml", "spec.sla", "bad"))
    assert "\n" not in text and text == "p\\nerror: forged.yaml: spec.sla: bad"


def test_profile_roots_confine_spec_profile(tmp_path: Path) -> None:
    import shutil

    from scaler.errors import PlanError
    from scaler.planfile import load_plan

    plans = tmp_path / "plans"
    shutil.copytree(EXAMPLES / "profiles", plans / "profiles")
    text = (EXAMPLES / "llama-8b-disagg.yaml").read_text()
    (plans / "inside.yaml").write_text(text)
    assert load_plan(plans / "inside.yaml", profile_roots=[plans]).profile is not None
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(EXAMPLES / "profiles", elsewhere)
    (plans / "escape.yaml").write_text(text.replace("profile: profiles/", "profile: ../elsewhere/"))
    assert load_plan(plans / "escape.yaml").profile is not None  # no roots: the CLI reads anything
    with pytest.raises(PlanError, match="spec.profile: ../elsewhere/.* lies outside"):
        load_plan(plans / "escape.yaml", profile_roots=[plans])
    (plans / "link").symlink_to(elsewhere)  # a symlink out of the root does not get around it
    (plans / "link.yaml").write_text(text.replace("profile: profiles/", "profile: link/"))
    with pytest.raises(PlanError, match="lies outside"):
        load_plan(plans / "link.yaml", profile_roots=[plans])
