"""Names that land in places shared by several namespaces (the scaler's namespace, the
collector's /plans, one Grafana) carry the plan's namespace, within Kubernetes' and
Grafana's limits, and map back to one (namespace, plan) only."""

from __future__ import annotations

import itertools
import re

from scaler import naming

LONGEST_NS, LONGEST_PLAN = "n" * 63, "p" * 40  # metadata.namespace and metadata.name limits
# Pairs whose "-"-joined forms are equal: a-b + c and a + b-c.
PAIRS = [("a-b", "c"), ("a", "b-c"), ("team-a", "llama-8b"), ("team-b", "llama-8b"), ("team", "a-llama-8b"),
         (LONGEST_NS, LONGEST_PLAN), (LONGEST_NS, LONGEST_PLAN[:-1] + "q"), ("n" * 62 + "m", LONGEST_PLAN)]
SHARED = {
    "plan ConfigMap": naming.plan_configmap_name,
    "plan file / key": naming.plan_file_name,
    "dashboard ConfigMap": naming.dashboard_configmap_name,
    "dashboard key": naming.dashboard_file,
    "dashboard uid": naming.dashboard_uid,
    "plain rule file": naming.rules_file,  # one Prometheus' rule_files directory
    "its promtool test": naming.rules_test_file,
}


def test_names_carry_the_namespace_after_a_dot() -> None:
    assert naming.plan_configmap_name("team-a", "llama-8b") == "dynplan-plan-team-a.llama-8b"
    assert naming.plan_file_name("team-a", "llama-8b") == "team-a.llama-8b.yaml"
    assert naming.configmap_file("team-a", "llama-8b") == "dynplan-plan-team-a.llama-8b.configmap.yaml"
    assert naming.dashboard_configmap_name("team-a", "llama-8b") == "dynplan-dashboard-team-a.llama-8b"
    assert naming.dashboard_file("team-a", "llama-8b") == "dynplan-team-a.llama-8b.dashboard.json"
    assert naming.dashboard_configmap_file("team-a", "llama-8b") == "dynplan-dashboard-team-a.llama-8b.configmap.yaml"
    assert naming.rules_file("team-a", "llama-8b") == "team-a.llama-8b.rules.yaml"
    assert naming.rules_test_file("team-a", "llama-8b") == "team-a.llama-8b.rules.test.yaml"
    # the objects in the plan's own namespace keep their names (and so their files)
    assert naming.scaled_object_name("llama-8b", "decode") == "llama-8b-decode"
    assert naming.rule_object_name("llama-8b") == "dynplan-llama-8b"
    assert naming.prometheus_rule_file("llama-8b") == "dynplan-llama-8b.prometheusrule.yaml"


def test_every_shared_name_is_distinct_per_namespace_and_plan() -> None:
    for what, name in SHARED.items():
        names = [name(ns, plan) for ns, plan in PAIRS]
        assert len(set(names)) == len(PAIRS), what
    # the dotted forms split one way: a namespace holds no "."
    for ns, plan in PAIRS:
        assert naming.plan_ref(ns, plan).split(".") == [ns, plan]


def test_shared_names_fit_kubernetes_and_grafana_limits() -> None:
    for ns, plan in itertools.chain(PAIRS, [(LONGEST_NS, LONGEST_PLAN)]):
        for name in (naming.plan_configmap_name(ns, plan), naming.dashboard_configmap_name(ns, plan)):
            assert naming.is_dns1123_subdomain(name), name
        for key in (naming.plan_file_name(ns, plan), naming.dashboard_file(ns, plan)):
            assert naming.CONFIGMAP_KEY_RE.fullmatch(key) and len(key) <= naming.MAX_SUBDOMAIN, key
        assert naming.is_label_value(ns) and naming.is_label_value(plan)  # PLAN_NAMESPACE_LABEL, PLAN_NAME_LABEL
        uid = naming.dashboard_uid(ns, plan)
        # Grafana: at most 40; [a-z0-9-] is also a Kubernetes name, what newer Grafana uids must be
        assert len(uid) <= naming.MAX_DASHBOARD_UID and naming.DNS1123_LABEL_RE.fullmatch(uid), uid
    assert len(naming.plan_configmap_name(LONGEST_NS, LONGEST_PLAN)) == 117


def test_dashboard_uid_keeps_a_readable_plan_name() -> None:
    assert re.fullmatch(r"dynplan-llama-8b-[0-9a-f]{12}", naming.dashboard_uid("team-a", "llama-8b"))
    # a plan name cut at 19 characters never leaves "--"
    assert "--" not in naming.dashboard_uid("x", "a" * 18 + "-b")
