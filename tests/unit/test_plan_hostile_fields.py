"""Hostile values in plan fields: what `validate` accepts is what `render` and the API server
accept (red-team findings M6, L9, L10, L13, L15).

Most tests are tables driven by the model itself, so a field added later is covered without
being listed: every string (and every key and string value of a mapping) refuses control
characters and line separators, every number refuses a boolean.
"""

from __future__ import annotations

import typing
from typing import Any, Iterator

import pytest
from pydantic import BaseModel, ValidationError

from helpers import with_changes
from scaler import naming
from scaler.core.plan import Plan, _Model


def minimal_doc() -> dict[str, Any]:
    return {
        "apiVersion": "dynplan/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": "m", "namespace": "inference"},
        "spec": {
            "sla": {"ttftMs": 200, "itlMs": 20},
            "workload": {"isl": 3000, "osl": 150},
            "profile": "p",
            "pools": {"prefill": {"scaleTargetRef": {"name": "a"}}, "decode": {"scaleTargetRef": {"name": "b"}}},
        },
    }


def errors_at(doc: dict[str, Any], loc: str) -> list[str]:
    """Messages of the validation errors located at `loc` (dotted camelCase); [] if valid."""
    try:
        Plan.model_validate(doc)
    except ValidationError as exc:
        return [e["msg"] for e in exc.errors() if ".".join(str(p) for p in e["loc"]) == loc]
    return []


# -- M6: patterns anchored at the very end ---------------------------------------------------

# Each field that reaches a rendered manifest or a PromQL query, with a good value: the
# value plus "\n" must be refused at that field (M6: `$` let "x\n" through all of them).
NEWLINE_FIELDS = [
    ("metadata.name", "llama"),
    ("metadata.namespace", "inference"),
    ("spec.pools.decode.scaleTargetRef.apiVersion", "apps/v1"),
    ("spec.pools.decode.scaleTargetRef.kind", "Deployment"),
    ("spec.pools.decode.scaleTargetRef.name", "llama-decode"),
    ("spec.scaler.address", "dynplan-scaler.keda:9090"),
    ("spec.scaler.namespace", "keda"),
]


@pytest.mark.parametrize("path, good", NEWLINE_FIELDS)
def test_trailing_newline_is_refused(path: str, good: str) -> None:
    assert errors_at(with_changes(minimal_doc(), {path: good}), path) == []
    assert errors_at(with_changes(minimal_doc(), {path: good + "\n"}), path)


@pytest.mark.parametrize(
    "path, key",
    [
        ("spec.metrics.selector", "dynamo_namespace"),
        ("metadata.labels", "team"),
        ("metadata.annotations", "team"),
        ("spec.rules.labels", "release"),
    ],
)
def test_mapping_key_with_trailing_newline_is_refused(path: str, key: str) -> None:
    assert errors_at(with_changes(minimal_doc(), {path: {key: "x"}}), path) == []
    (msg,) = errors_at(with_changes(minimal_doc(), {path: {key + "\n": "x"}}), path)
    assert repr(key + "\n") in msg


# -- L10: reserved label names ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["__name__", "__address__", "__x"])
def test_reserved_label_names_are_refused_as_selector_keys(key: str) -> None:
    (msg,) = errors_at(with_changes(minimal_doc(), {"spec.metrics.selector": {key: "v"}}), "spec.metrics.selector")
    assert msg == f"Value error, {key!r} is reserved by Prometheus (label names starting with '__')"
    assert errors_at(with_changes(minimal_doc(), {"spec.metrics.selector": {"_x": "v"}}), "spec.metrics.selector") == []


# -- L15: characters a rendered file cannot carry ---------------------------------------------

HOSTILE = {
    "LF": "a\nb",
    "CR": "a\rb",
    "TAB": "a\tb",
    "NUL": "a\x00b",
    "DEL": "a\x7fb",
    "NEL U+0085": "a\x85b",
    "C1 U+009F": "a\x9fb",
    "LS U+2028": "a\u2028b",
    "PS U+2029": "a\u2029b",
    "VT": "a\x0bb",
    "lone surrogate": "a\ud800b",
    "U+FFFF": "a\uffffb",
}
# characters that annotation values (multi-line text in Kubernetes) keep
MULTILINE_OK = {"LF", "CR", "TAB"}


def _model_of(annotation: Any) -> "type[BaseModel] | None":
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _text_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, type[BaseModel]]]:
    """(dotted camelCase path, "str" | "dict", owning model) for every string or
    string-keyed mapping field, through every nested dynplan model."""
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        ann = info.annotation
        args = typing.get_args(ann)
        if ann is str or (typing.get_origin(ann) is typing.Union and str in args):
            yield path, "str", model
        elif typing.get_origin(ann) is dict:
            yield path, "dict", model
        sub = _model_of(ann)
        if sub is not None and issubclass(sub, _Model):
            yield from _text_fields(sub, path + ".")


TEXT_FIELDS = sorted(set((p, k) for p, k, _ in _text_fields(Plan)))


def test_the_field_walk_finds_the_rendered_strings() -> None:
    paths = {p for p, _ in TEXT_FIELDS}
    assert {
        "metadata.name", "metadata.namespace", "metadata.labels", "metadata.annotations",
        "spec.pools.decode.scaleTargetRef.name", "spec.metrics.selector", "spec.scaler.address",
        "spec.scaler.namespace", "spec.rules.labels", "spec.metrics.prometheus.url",
    } <= paths


@pytest.mark.parametrize("what", sorted(HOSTILE))
@pytest.mark.parametrize("path, kind", TEXT_FIELDS)
def test_every_text_field_refuses_unrenderable_characters(path: str, kind: str, what: str) -> None:
    bad = HOSTILE[what]
    if kind == "str":
        assert errors_at(with_changes(minimal_doc(), {path: bad}), path), f"{path} accepted {bad!r}"
        return
    assert errors_at(with_changes(minimal_doc(), {path: {bad: "v"}}), path), f"{path} accepted the key {bad!r}"
    value_errors = errors_at(with_changes(minimal_doc(), {path: {"k": bad}}), path)
    if path == "metadata.annotations" and what in MULTILINE_OK:
        assert value_errors == []
    else:
        assert value_errors, f"{path} accepted the value {bad!r}"


def test_the_message_names_the_character_and_where_it_is() -> None:
    (msg,) = errors_at(with_changes(minimal_doc(), {"spec.metrics.selector": {"dynamo_namespace": "ns\u2028x"}}), "spec.metrics.selector")
    assert msg == "Value error, dynamo_namespace: has a control character or line separator (U+2028 at position 2)"
    (msg,) = errors_at(with_changes(minimal_doc(), {"metadata.annotations": {"note": "a\ud800"}}), "metadata.annotations")
    assert msg == "Value error, note: has a control character or line separator (U+D800 at position 1)"
    # printable Unicode stays fine: a selector value is any label value Prometheus has
    assert errors_at(with_changes(minimal_doc(), {"spec.metrics.selector": {"model": "llamà-🦙 8b"}}), "spec.metrics.selector") == []
    assert errors_at(with_changes(minimal_doc(), {"metadata.annotations": {"note": "line 1\nline 2\ttab"}}), "metadata.annotations") == []


# -- L9: Kubernetes labels and annotations ---------------------------------------------------


@pytest.mark.parametrize(
    "key, ok",
    [
        ("team", True),
        ("app.kubernetes.io/name", True),
        ("example.com/a_b.c-d", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("bad key!", False),
        ("???", False),
        ("-team", False),
        ("team-", False),
        ("/team", False),
        ("example.com/", False),
        ("Example.com/team", False),  # the prefix is a lowercase DNS subdomain
        ("a/b/c", False),
        (("a" * 63 + ".") * 4 + "a/x", False),  # prefix of 257 > 253
        ("",  False),
    ],
)
def test_label_keys_follow_kubernetes_qualified_names(key: str, ok: bool) -> None:
    for path in ("metadata.labels", "spec.rules.labels"):
        assert (errors_at(with_changes(minimal_doc(), {path: {key: "x"}}), path) == []) is ok, (path, key)


@pytest.mark.parametrize("value, ok", [("", True), ("a", True), ("a.b_c-d", True), ("x" * 63, True), ("x" * 64, False), ("a b", False), ("-a", False), ("a/b", False)])
def test_label_values_follow_kubernetes_rules(value: str, ok: bool) -> None:
    for path in ("metadata.labels", "spec.rules.labels"):
        assert (errors_at(with_changes(minimal_doc(), {path: {"k": value}}), path) == []) is ok, (path, value)


def test_annotation_keys_and_total_size() -> None:
    path = "metadata.annotations"
    assert errors_at(with_changes(minimal_doc(), {path: {"Example.com/Note": "x"}}), path) == []  # checked lowercased, as Kubernetes does
    (msg,) = errors_at(with_changes(minimal_doc(), {path: {"???": "x"}}), path)
    assert msg.startswith("Value error, key '???' is not a Kubernetes annotation key")
    limit = naming.MAX_ANNOTATIONS_BYTES
    assert errors_at(with_changes(minimal_doc(), {path: {"a": "x" * (limit - 1)}}), path) == []
    (msg,) = errors_at(with_changes(minimal_doc(), {path: {"a": "x" * limit}}), path)
    assert msg == f"Value error, are {limit + 1} bytes (keys and values); Kubernetes allows at most {limit}"
    # bytes, not characters
    (msg,) = errors_at(with_changes(minimal_doc(), {path: {"a": "é" * (limit // 2)}}), path)
    assert f"are {limit + 1} bytes" in msg


# -- L9: int32 fields of the ScaledObject ----------------------------------------------------


@pytest.mark.parametrize("path", ["spec.keda.cooldownPeriodSeconds", "spec.keda.fallback.replicas"])
def test_int32_fields_stop_at_int32(path: str) -> None:
    assert errors_at(with_changes(minimal_doc(), {path: 2**31 - 1}), path) == []
    (msg,) = errors_at(with_changes(minimal_doc(), {path: 2**31}), path)
    assert msg == "Input should be less than or equal to 2147483647"
    assert errors_at(with_changes(minimal_doc(), {path: 10**30}), path)


@pytest.mark.parametrize("value, ok", [("h:9090", True), ("[::1]:1", True), ("h:65535", True), ("h:0", False), ("h:65536", False), ("h:99999", False)])
def test_scaler_address_port_range(value: str, ok: bool) -> None:
    assert (errors_at(with_changes(minimal_doc(), {"spec.scaler.address": value}), "spec.scaler.address") == []) is ok


@pytest.mark.parametrize("value", ["Not Valid!", "Keda", "a" * 64, "-keda", ""])
def test_scaler_namespace_is_a_dns_label(value: str) -> None:
    assert errors_at(with_changes(minimal_doc(), {"spec.scaler.namespace": value}), "spec.scaler.namespace")


# -- L13: booleans are not numbers ------------------------------------------------------------


def _number_fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        ann = info.annotation
        if ann in (int, float) or (typing.get_origin(ann) is typing.Union and {int, float} & set(typing.get_args(ann))):
            yield path
        sub = _model_of(ann)
        if sub is not None and issubclass(sub, _Model):
            yield from _number_fields(sub, path + ".")


NUMBER_FIELDS = sorted(set(_number_fields(Plan)))


def test_the_number_walk_finds_the_numbers() -> None:
    assert {"spec.sla.ttftMs", "spec.pools.decode.minReplicas", "spec.keda.tolerance", "spec.budget.maxGpus"} <= set(NUMBER_FIELDS)


@pytest.mark.parametrize("path", NUMBER_FIELDS)
@pytest.mark.parametrize("value", [True, False])
def test_every_number_field_refuses_booleans(path: str, value: bool) -> None:
    (msg,) = errors_at(with_changes(minimal_doc(), {path: value}), path)
    assert msg == f"Value error, must be a number, got the boolean {str(value).lower()}"


def test_ints_for_floats_and_whole_floats_for_ints_still_read() -> None:
    plan = Plan.model_validate(with_changes(minimal_doc(), {"spec.sla.ttftMs": 200, "spec.pools.decode.maxReplicas": 8.0}))
    assert plan.spec.sla.ttft_ms == 200.0 and plan.pool("decode").max_replicas == 8
    # real booleans stay booleans
    assert Plan.model_validate(with_changes(minimal_doc(), {"spec.keda.useCachedMetrics": True})).spec.keda.use_cached_metrics is True


# -- pool selectors: regular expressions Prometheus can parse --------------------------------


def test_pool_selector_regex_must_be_re2() -> None:
    # Python-only syntax made every query of the plan fail to parse in Prometheus; which
    # constructs RE2 refuses is checked against promtool in tests/integration/prometheus/test_plan_regex_re2.py
    path = "spec.pools.decode.selector"
    (msg,) = errors_at(with_changes(minimal_doc(), {path: {"pod": "=~llama-(?=p).*"}}), path)
    assert msg == "Value error, pod: 'llama-(?=p).*': lookahead '(?=' is not supported by Prometheus (RE2)"
    (msg,) = errors_at(with_changes(minimal_doc(), {path: {"pod": "!~llama-.*+"}}), path)
    assert msg == "Value error, pod: 'llama-.*+': possessive quantifier '*+' is not supported by Prometheus (RE2)"
    assert errors_at(with_changes(minimal_doc(), {path: {"pod": "=~llama-decode-.*"}}), path) == []
    (msg,) = errors_at(with_changes(minimal_doc(), {path: {"__name__": "x"}}), path)
    assert msg == "Value error, '__name__' is reserved by Prometheus (label names starting with '__')"
