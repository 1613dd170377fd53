"""Every name dynplan derives from a plan, in one place, and the syntax names must follow.

- syntax: the Kubernetes and Prometheus name rules (`DNS1123_LABEL_RE`, `API_VERSION_RE`,
  `PROM_LABEL_NAME_RE`, ...) that the plan model, the render checks and the backfill
  writer all test against;
- label keys dynplan puts on what it renders (`PLAN_NAME_LABEL`, `POOL_LABEL`, ...);
- names derived from a plan: KEDA metric, ScaledObject, HPA, trigger, PrometheusRule, rule
  group, ConfigMap, plan file, profile dir, and the rendered files' names.

Every derived name goes through `_dns`, so a name is lowercase `[a-z0-9-]` whatever it is
built from. No imports from the rest of dynplan: everything may import this.
"""

from __future__ import annotations

import re

# -- syntax ----------------------------------------------------------------------------------
# Kubernetes (apimachinery validation): namespaces and most names are DNS-1123 labels
# (<= 63 characters), object names DNS-1123 subdomains (<= 253). The lengths are checked
# where the names are.
DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# `[group/]version` (apps/v1, v1, nvidia.com/v1alpha1) and a CamelCase kind.
API_VERSION_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$")
KIND_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # <= 63 characters
CONFIGMAP_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
# Prometheus data model.
PROM_METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
PROM_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# -- label keys ------------------------------------------------------------------------------
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "dynplan"
APP_NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
# The label the scaler Deployment's ConfigMap collector selects on (value "true"; manifests/).
PLAN_CONFIGMAP_LABEL = "dynplan.io/plan"
PLAN_NAME_LABEL = "dynplan.io/plan-name"
POOL_LABEL = "dynplan.io/pool"
# The scaler itself (manifests/): the app name on the plan ConfigMaps it reads.
SCALER_APP_NAME = "dynplan-scaler"

# -- names derived from a plan ---------------------------------------------------------------
# Recording-rule group kinds, one group each: throughput always, worker with load scaling.
THROUGHPUT_GROUP = "throughput"
WORKER_GROUP = "worker"

_UNSAFE = re.compile(r"[^a-z0-9-]+")


def _dns(value: str) -> str:
    return _UNSAFE.sub("-", value.lower()).strip("-")


def metric_name(plan: str, pool: str) -> str:
    """KEDA metric name for a pool: `dynplan-<plan>-<pool>`, lowercase `[a-z0-9-]`.

    It lives in a URL path of the external metrics API; KEDA prefixes `sN-` for the HPA
    and strips it again before GetMetrics.
    """
    return f"dynplan-{_dns(plan)}-{_dns(pool)}"


def scaled_object_name(plan: str, pool: str) -> str:
    """ScaledObject name; <= 54 chars so KEDA's `keda-hpa-<name>` stays <= 63."""
    return f"{_dns(plan)}-{_dns(pool)}"


def hpa_name(plan: str, pool: str) -> str:
    return f"keda-hpa-{scaled_object_name(plan, pool)}"


def trigger_name(pool: str) -> str:
    return f"dynplan-{_dns(pool)}"


def rule_object_name(plan: str) -> str:
    return f"dynplan-{_dns(plan)}"


def rule_group_name(plan: str, kind: str) -> str:
    """`dynplan-<plan>-<kind>`, kind `THROUGHPUT_GROUP` or `WORKER_GROUP`."""
    return f"dynplan-{_dns(plan)}-{_dns(kind)}"


def plan_configmap_name(plan: str) -> str:
    return f"dynplan-plan-{_dns(plan)}"


def plan_file_name(plan: str) -> str:
    """File name of a plan inside the scaler's plans directory."""
    return f"{_dns(plan)}.yaml"


def profile_dir_name(plan: str) -> str:
    """Directory (relative to the plans dir) holding the plan's profile."""
    return f"{_dns(plan)}-profile"


# -- rendered file names (`dynplan render manifests -o DIR`) ----------------------------------


def scaled_object_file(plan: str, pool: str) -> str:
    return f"{scaled_object_name(plan, pool)}.scaledobject.yaml"


def prometheus_rule_file(plan: str) -> str:
    return f"{rule_object_name(plan)}.prometheusrule.yaml"


def rules_file(plan: str) -> str:
    """The plan's rule groups as a plain Prometheus rule file (not a Kubernetes object)."""
    return f"{_dns(plan)}.rules.yaml"


def rules_test_file(plan: str) -> str:
    """The `promtool test rules` unit test of `rules_file(plan)`."""
    return f"{_dns(plan)}.rules.test.yaml"


def configmap_file(plan: str) -> str:
    return f"{plan_configmap_name(plan)}.configmap.yaml"
