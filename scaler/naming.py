"""Every name dynplan derives from a plan, in one place, and the syntax names must follow.

- syntax: the Kubernetes and Prometheus name rules (`DNS1123_LABEL_RE`, `API_VERSION_RE`,
  `PROM_LABEL_NAME_RE`, ...) that the plan model, the render checks and the backfill
  writer all test against;
- label keys dynplan puts on what it renders (`PLAN_NAME_LABEL`, `POOL_LABEL`, ...);
- names derived from a plan: KEDA metric, ScaledObject, HPA, trigger, PrometheusRule, rule
  group, ConfigMap, plan file, dashboard, and the rendered files' names.

Every derived name goes through `_dns`, so a name is lowercase `[a-z0-9-]` whatever it is
built from. No imports from the rest of dynplan: everything may import this.
"""

from __future__ import annotations

import hashlib
import re

# -- syntax ----------------------------------------------------------------------------------
# Every pattern is anchored with \A and \Z, never ^ and $: `$` also matches before a final
# "\n", so `re.match(r"^x$", "x\n")` succeeds. Anchored this way, .match, .search and
# .fullmatch agree; callers here use .fullmatch anyway.
# Kubernetes (apimachinery validation): namespaces and most names are DNS-1123 labels
# (<= 63 characters), object names DNS-1123 subdomains (<= 253). The lengths are checked
# where the names are, or by the is_* functions below.
DNS1123_LABEL_RE = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
DNS1123_SUBDOMAIN_RE = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
# `[group/]version` (apps/v1, v1, nvidia.com/v1alpha1) and a CamelCase kind.
API_VERSION_RE = re.compile(r"\A([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?\Z")
KIND_RE = re.compile(r"\A[A-Z][A-Za-z0-9]*\Z")
LABEL_VALUE_RE = re.compile(r"\A(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")  # <= 63 characters
# The name part of a qualified name (label and annotation keys): <= 63 characters.
QUALIFIED_NAME_RE = re.compile(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
CONFIGMAP_KEY_RE = re.compile(r"\A[-._a-zA-Z0-9]+\Z")
# Prometheus data model.
PROM_METRIC_NAME_RE = re.compile(r"\A[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
PROM_LABEL_NAME_RE = re.compile(r"\A[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Label names starting with "__" are reserved for Prometheus' own use (`__name__`, ...).
PROM_RESERVED_LABEL_PREFIX = "__"

MAX_LABEL = 63
MAX_SUBDOMAIN = 253
# apimachinery TotalAnnotationSizeLimitB: keys plus values of all of an object's annotations.
MAX_ANNOTATIONS_BYTES = 256 * 1024
# Kubernetes' int32 fields (replica counts, periods): what the API server stores.
INT32_MAX = 2**31 - 1


def is_dns1123_label(value: str) -> bool:
    return len(value) <= MAX_LABEL and DNS1123_LABEL_RE.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= MAX_SUBDOMAIN and DNS1123_SUBDOMAIN_RE.fullmatch(value) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_LABEL and LABEL_VALUE_RE.fullmatch(value) is not None


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a Kubernetes label or annotation key (apimachinery IsQualifiedName):
    an optional DNS-1123 subdomain prefix (<= 253) and "/", then a name (<= 63,
    alphanumeric at both ends, '-', '_', '.' inside). None when it is one."""
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns1123_subdomain(prefix):
        return f"prefix {prefix!r} must be a lowercase DNS-1123 subdomain of at most {MAX_SUBDOMAIN} characters"
    if not name:
        return "the name part must not be empty"
    if len(name) > MAX_LABEL:
        return f"the name part is {len(name)} characters; at most {MAX_LABEL}"
    if QUALIFIED_NAME_RE.fullmatch(name) is None:
        return "the name part must be alphanumeric at both ends, with only '-', '_' or '.' inside"
    return None


def prom_label_name_problem(key: str) -> str | None:
    """Why `key` cannot be a label matcher's name in dynplan's queries and rules: not a
    Prometheus label name, or reserved (`__name__`: the metric name is set by dynplan)."""
    if PROM_LABEL_NAME_RE.fullmatch(key) is None:
        return f"{key!r} is not a valid Prometheus label name"
    if key.startswith(PROM_RESERVED_LABEL_PREFIX):
        return f"{key!r} is reserved by Prometheus (label names starting with '__')"
    return None


# Characters a rendered file cannot carry through YAML and jinja2 unchanged: surrogates
# (not encodable as UTF-8), U+FFFE/U+FFFF and C1 controls (outside YAML's printable set),
# and the line separators that str.splitlines() and YAML break lines at (U+0085, U+2028,
# U+2029, which would split a block scalar). C0 controls are refused too, except where a
# field allows tab, LF and CR (annotation values may be multi-line).
_LINE_SEPARATORS = frozenset("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
TEXT_WHITESPACE = "\t\n\r"


def unrenderable_character(value: str, allow: str = "") -> str | None:
    """Describe the first character of `value` that no rendered file should hold (see above),
    as `U+XXXX at position N`; None when every character is fine. `allow` lists C0
    characters the field accepts (e.g. TEXT_WHITESPACE)."""
    for i, ch in enumerate(value):
        code = ord(ch)
        bad = (
            0xD800 <= code <= 0xDFFF
            or code in (0xFFFE, 0xFFFF)
            or ch in _LINE_SEPARATORS
            or (code < 0x20 and ch not in allow)
            or 0x7F <= code <= 0x9F
        )
        if bad:
            return f"U+{code:04X} at position {i}"
    return None


def comment_text(value: str) -> str:
    """`value` made safe for one line of a YAML comment: every character that is not
    printable (newlines, line separators, controls, surrogates from undecodable file
    names) becomes a visible escape such as `\\n` or `\\u2028`."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in value)


# -- label keys ------------------------------------------------------------------------------
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "dynplan"
APP_NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
# The label the scaler Deployment's ConfigMap collector selects on (value "true"; manifests/).
PLAN_CONFIGMAP_LABEL = "dynplan.io/plan"
PLAN_NAME_LABEL = "dynplan.io/plan-name"
# The plan's metadata.namespace, on the plan and dashboard ConfigMaps (which may live in the
# scaler's namespace). ConfigMaps rendered before it existed lack it: the upgrade note in
# docs/operations.md selects them by its absence.
PLAN_NAMESPACE_LABEL = "dynplan.io/plan-namespace"
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


# Names that land in a place shared by plans of several namespaces carry the namespace: the
# plan ConfigMap and its key (the scaler's namespace, one flat /plans directory fed from
# every watched namespace), the dashboard ConfigMap, key and uid (one Grafana), the plain
# rule file (one Prometheus' rule_files directory). "."
# joins the two: namespaces and plan names are DNS-1123 labels, which cannot hold one, so
# `<namespace>.<plan>` splits one way only (namespace a-b + plan c is `a-b.c`, namespace a +
# plan b-c is `a.b-c`), and ConfigMap names (DNS-1123 subdomains) and keys allow it. At most
# 63 + 1 + 40 characters (metadata.namespace, metadata.name), so every name below stays far
# under the 253 of a ConfigMap name or key. Objects in the plan's own namespace
# (ScaledObjects, PrometheusRule) keep names without it.


def plan_ref(namespace: str, plan: str) -> str:
    """`<namespace>.<plan>`: a plan's unique name across namespaces (see above)."""
    return f"{_dns(namespace)}.{_dns(plan)}"


def plan_configmap_name(namespace: str, plan: str) -> str:
    return f"dynplan-plan-{plan_ref(namespace, plan)}"


def plan_file_name(namespace: str, plan: str) -> str:
    """File name of a plan inside the scaler's plans directory (the plan ConfigMap's key)."""
    return f"{plan_ref(namespace, plan)}.yaml"


# The plan collector (k8s-sidecar with UNIQUE_FILENAMES=true) names each file after the
# ConfigMap it copied: `namespace_<namespace>.configmap_<name>.<key>`. A namespace is a
# DNS-1123 label (no "."), so the first "." ends it and no key can forge another
# namespace's prefix; the scaler checks plans against it (service/registry.py). A prefix,
# not a whole name: whatever follows it, the file is checked.
_COLLECTED_PREFIX_RE = re.compile(r"\Anamespace_([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.configmap_")
# A file name is at most 255 bytes (NAME_MAX of Linux file systems); a longer one the
# collector cannot write, and its plan never loads.
MAX_FILE_NAME_BYTES = 255


def collected_file_name(configmap_namespace: str, configmap_name: str, key: str) -> str:
    """The file the plan collector writes for `key` of ConfigMap `configmap_namespace/configmap_name`."""
    return f"namespace_{configmap_namespace}.configmap_{configmap_name}.{key}"


def collected_namespace(file_name: str) -> str | None:
    """The namespace of the ConfigMap a collected file came from; None for a file the
    collector did not name (a plain directory, a projected volume, a local run)."""
    match = _COLLECTED_PREFIX_RE.match(file_name)
    return match.group(1) if match is not None else None


# -- rendered file names (`dynplan render manifests -o DIR`) ----------------------------------


def scaled_object_file(plan: str, pool: str) -> str:
    return f"{scaled_object_name(plan, pool)}.scaledobject.yaml"


def prometheus_rule_file(plan: str) -> str:
    return f"{rule_object_name(plan)}.prometheusrule.yaml"


def rules_file(namespace: str, plan: str) -> str:
    """The plan's rule groups as a plain Prometheus rule file (not a Kubernetes object): with
    the namespace, as it is copied into a Prometheus' rule_files directory that several
    namespaces' plans may share."""
    return f"{plan_ref(namespace, plan)}.rules.yaml"


def rules_test_file(namespace: str, plan: str) -> str:
    """The `promtool test rules` unit test of `rules_file(namespace, plan)`."""
    return f"{plan_ref(namespace, plan)}.rules.test.yaml"


def configmap_file(namespace: str, plan: str) -> str:
    return f"{plan_configmap_name(namespace, plan)}.configmap.yaml"


def dashboard_configmap_name(namespace: str, plan: str) -> str:
    return f"dynplan-dashboard-{plan_ref(namespace, plan)}"


MAX_DASHBOARD_UID = 40  # Grafana refuses longer uids


def dashboard_uid(namespace: str, plan: str) -> str:
    """The Grafana dashboard's uid, unique per (namespace, plan) in one Grafana:
    `dynplan-<plan, at most 19 characters>-<12 hex digits of SHA-256 of plan_ref>`, at most
    40 characters. A hash, as `<namespace>.<plan>` can be 104 characters long and "." is
    not a Grafana uid character; only `[a-z0-9-]`, so it is also a Kubernetes name (what
    Grafana's newer uids must be). Two uids are equal only if 48 bits of SHA-256 are."""
    digest = hashlib.sha256(plan_ref(namespace, plan).encode()).hexdigest()[:12]
    return f"dynplan-{_dns(plan)[:19].rstrip('-')}-{digest}"


def dashboard_file(namespace: str, plan: str) -> str:
    """The plan's Grafana dashboard JSON (also the key in its ConfigMap)."""
    return f"dynplan-{plan_ref(namespace, plan)}.dashboard.json"


def dashboard_configmap_file(namespace: str, plan: str) -> str:
    return f"{dashboard_configmap_name(namespace, plan)}.configmap.yaml"
