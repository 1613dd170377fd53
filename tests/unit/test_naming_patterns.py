"""The name syntax of `scaler.naming` (red-team M6): every pattern matches the whole string,
whichever of .match, .search or .fullmatch a caller uses; `$` let "x\\n" through."""

from __future__ import annotations

import re

import pytest

from scaler import naming

GOOD_SAMPLES = {
    "DNS1123_LABEL_RE": "llama",
    "DNS1123_SUBDOMAIN_RE": "llama.decode",
    "API_VERSION_RE": "apps/v1",
    "KIND_RE": "Deployment",
    "LABEL_VALUE_RE": "serving",
    "QUALIFIED_NAME_RE": "team",
    "CONFIGMAP_KEY_RE": "llama.yaml",
    "PROM_METRIC_NAME_RE": "dynamo_frontend_requests_total",
    "PROM_LABEL_NAME_RE": "dynamo_namespace",
}


def test_every_naming_pattern_is_listed_here() -> None:
    patterns = sorted(n for n, v in vars(naming).items() if isinstance(v, re.Pattern) and not n.startswith("_"))
    assert patterns == sorted(GOOD_SAMPLES)


@pytest.mark.parametrize("name, good", sorted(GOOD_SAMPLES.items()))
def test_naming_patterns_refuse_a_trailing_newline(name: str, good: str) -> None:
    pattern: re.Pattern[str] = getattr(naming, name)
    assert pattern.fullmatch(good) and pattern.match(good)
    for bad in (good + "\n", good + "\n\n", "\n" + good):
        # .match and .search too: callers outside naming.py use them
        assert pattern.match(bad) is None and pattern.search(bad) is None and pattern.fullmatch(bad) is None, repr(bad)


def test_name_checks_count_lengths_and_refuse_newlines() -> None:
    assert naming.is_dns1123_label("a" * 63) and not naming.is_dns1123_label("a" * 64)
    assert naming.is_dns1123_subdomain("a." * 126 + "a") and not naming.is_dns1123_subdomain("a" * 254)
    assert naming.is_label_value("") and not naming.is_label_value("x\n") and not naming.is_label_value("x" * 64)
    assert naming.qualified_name_problem("app.kubernetes.io/name") is None
    assert naming.qualified_name_problem("name\n") is not None
    assert naming.prom_label_name_problem("dynamo_namespace") is None
    assert naming.prom_label_name_problem("dynamo_namespace\n") == "'dynamo_namespace\\n' is not a valid Prometheus label name"
    assert naming.prom_label_name_problem("__name__") == "'__name__' is reserved by Prometheus (label names starting with '__')"


def test_comment_text_keeps_one_printable_line() -> None:
    assert naming.comment_text("plän 🦙.yaml") == "plän 🦙.yaml"
    assert naming.comment_text("p\nkind: Secret.yaml") == "p\\nkind: Secret.yaml"
    assert naming.comment_text("a\r\t\x85\u2028\u2029\ud800\x00") == "a\\r\\t\\x85\\u2028\\u2029\\ud800\\x00"
