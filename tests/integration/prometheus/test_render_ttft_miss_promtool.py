"""promtool runs the generated test of the `ttft_miss` record (the fraction of TTFTs over the
plan's SLA bucket, `sources.over_bound_expr`): it passes on the rendered rules, for a bound
in whole seconds (`le="1"` and `le="1.0"` both counted) and a fractional one, from Dynamo's
frontends and from an engine pool; and it fails when that rule's expression reads another
bucket, one exporter's form only, a decoy, the other pool, another range or the good
fraction. Only the throughput case is run (the alerts' cases cost 3 s a run and test no
`ttft_miss`), and only the `ttft_miss` rule is changed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, linear_profile, plan_dict, with_changes, write_plan
from scaler.render import checks
from scaler.render.pipeline import ROLE_RULES, ROLE_RULES_TEST, build_all, load, render

DISAGG = REPO / "tests" / "fixtures" / "render" / "disagg.yaml"
MISS = ":over_sla_fraction"


class Rendered:
    """A plan's rule file and the throughput case of its generated test."""

    def __init__(self, plan: Path) -> None:
        r = render(build_all(load([str(plan)]), "keda"))
        (rules,) = [f for f in r.files if f.role == ROLE_RULES]
        (test,) = [f for f in r.files if f.role == ROLE_RULES_TEST]
        self.rules_name, self.rules_text, self.test_name = rules.name, rules.text, test.name
        self.origin = {f.name: f.origin for f in r.files}
        doc = yaml.safe_load(test.text)
        doc["tests"] = [c for c in doc["tests"] if any(MISS in e["expr"] for e in c.get("promql_expr_test", []))]
        (case,) = doc["tests"]
        self.expected = [e for e in case["promql_expr_test"] if MISS in e["expr"]]
        self.test_text = yaml.safe_dump(doc, sort_keys=False)

    @property
    def expr(self) -> str:
        return self._rule(yaml.safe_load(self.rules_text))["expr"]

    @staticmethod
    def _rule(doc: Any) -> dict[str, Any]:
        (rule,) = [r for g in doc["groups"] for r in g["rules"] if MISS in r.get("record", "")]
        return rule

    def promtool(self, directory: Path, old: str = "", new: str = "") -> subprocess.CompletedProcess[str]:
        """`promtool test rules` with `old` replaced by `new` in the ttft_miss rule's expr."""
        doc = yaml.safe_load(self.rules_text)
        rule = self._rule(doc)
        assert old in rule["expr"], (old, rule["expr"])
        rule["expr"] = rule["expr"].replace(old, new) if old else rule["expr"]
        directory.mkdir()
        (directory / self.rules_name).write_text(yaml.safe_dump(doc, sort_keys=False))
        (directory / self.test_name).write_text(self.test_text)
        assert checks.promtool_check_rules(directory, [self.rules_name], self.origin) == [], (old, new)
        return subprocess.run(["promtool", "test", "rules", self.test_name], cwd=directory, capture_output=True, text=True)

    def assert_passes(self, tmp_path: Path) -> None:
        out = self.promtool(tmp_path / "good")
        assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr

    def assert_fails(self, tmp_path: Path, mutations: dict[str, tuple[str, str]]) -> None:
        for what, (old, new) in mutations.items():
            out = self.promtool(tmp_path / what.replace(" ", "-"), old, new)
            # the failure is the ttft_miss expectation's (the only rule changed)
            assert out.returncode != 0 and MISS in out.stdout + out.stderr, (what, out.stdout + out.stderr)


def plan_file(tmp_path: Path, changes: dict[str, Any]) -> Path:
    doc = with_changes(plan_dict(name="miss", sizing="attainment", interval_seconds=120), changes)
    return write_plan(tmp_path / "plan", doc, profile=linear_profile())


def test_a_fractional_bound_passes_and_wrong_rules_fail(tmp_path: Path) -> None:
    r = Rendered(DISAGG)  # ttftMs 200: le="0.2", 120-s ranges
    assert [e["eval_time"] for e in r.expected] == ["120s", "240s", "360s"]
    r.assert_passes(tmp_path)
    r.assert_fails(tmp_path, {
        "bucket below the bound": ('le="0.2"', 'le="0.1"'),
        "bucket above the bound": ('le="0.2"', 'le="0.4"'),
        "the +Inf bucket": ('le="0.2"', 'le="+Inf"'),
        "every bucket": (',le="0.2"', ""),
        "a decoy's buckets": ('_bucket{dynamo_namespace="inference-llama-dgd",', "_bucket{"),
        "decoys everywhere": (',model="meta-llama/llama-3.1-8b-instruct"', ""),
        "another range": ("[120s]", "[60s]"),
        "the good fraction": ("1 - sum(", "0 + sum("),
    })


def test_a_whole_second_bound_counts_both_exporters_forms(tmp_path: Path) -> None:
    r = Rendered(plan_file(tmp_path, {"spec.rules": {"ttftBucketMs": 1000}}))
    assert 'le=~"1|1\\\\.0"' in r.expr and len(r.expected) == 3
    r.assert_passes(tmp_path)
    r.assert_fails(tmp_path, {
        "go form only": ('le=~"1|1\\\\.0"', 'le="1"'),
        "python form only": ('le=~"1|1\\\\.0"', 'le="1.0"'),
        "the bucket at 2 s": ('le=~"1|1\\\\.0"', 'le=~"2|2\\\\.0"'),
    })


@pytest.mark.parametrize("source", ["vllm", "sglang"])
def test_an_engine_plan_reads_its_prefill_pool(source: str, tmp_path: Path) -> None:
    changes: dict[str, Any] = {"spec.metrics": {"source": source, "selector": {"namespace": "inference", "model_name": "llama"}},
                               "spec.rules": {"ttftBucketMs": 1000}}
    if source == "vllm":
        changes.update({"spec.pools.prefill.selector": {"pod": "=~llama-prefill-.*"}, "spec.pools.decode.selector": {"pod": "=~llama-decode-.*"}})
    r = Rendered(plan_file(tmp_path, changes))
    assert len(r.expected) == 3
    r.assert_passes(tmp_path)
    pool = ('pod=~"llama-prefill-.*"', 'pod=~"llama-decode-.*"') if source == "vllm" else ('engine_type="prefill"', 'engine_type="decode"')
    r.assert_fails(tmp_path, {
        "the decode pool": pool,
        "the bucket at 2 s": ('le=~"1|1\\\\.0"', 'le=~"2|2\\\\.0"'),
        "a decoy's buckets": ('model_name="llama",', ""),
    })
