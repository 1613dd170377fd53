"""Prometheus URLs, the operator's credentials file and the check of a plan against it
(`--credentials`, `--prometheus-allow`): what a plan author can and cannot make the scaler do.
No server: files in tmp_path only."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import plan_dict, write_plan
from scaler.core.plan import PrometheusAccess, http_url_problem
from scaler.errors import CredentialsError, PlanError, exit_code_for
from scaler.planfile import load_plan
from scaler.prom.credentials import Credentials, check_access, load_credentials, read_secret, url_under

GOOD_URLS = [
    "http://prometheus-operated.monitoring:9090",
    "https://thanos-query.monitoring:10902/",
    "http://mimir.monitoring/prometheus",
    "http://127.0.0.1:9",
    "http://[::1]:9090/api/prom",
]
BAD_URLS = {
    "http://127.0.0.1:9/\r\nX-Injected: 1": "whitespace, control",  # L17
    "http://127.0.0.1:9090\n": "whitespace, control",
    "http://admin:pw-SECRET@127.0.0.1:9": "must not carry a user or password",  # M5
    "http://token@127.0.0.1:9": "must not carry a user or password",
    "ftp://prom:21": "http:// or https://",
    "prom:9090": "http:// or https://",
    "http://:9090": "must name a host",
    "http://prom:0": "port between 1 and 65535",
    "http://prom:65536": "port between 1 and 65535",
    "http://prom:9090.evil.example": "port between 1 and 65535",
    "http://prom:9090/api?x=1": "must not have a query",
    "http://prom:9090/#frag": "must not have a query",
    "http://prom:9090/a/../admin": "plain segments",
    "http://prom:9090/%2e%2e/admin": "plain segments",
    "http://prom\u00e9:9090": "non-ASCII",
}


@pytest.mark.parametrize("url", GOOD_URLS)
def test_plain_urls_pass(url: str) -> None:
    assert http_url_problem(url) is None
    assert PrometheusAccess(url=url).url == url


@pytest.mark.parametrize("url,why", BAD_URLS.items())
def test_the_whole_url_is_validated(url: str, why: str) -> None:
    problem = http_url_problem(url)
    assert problem is not None and why in problem
    assert "SECRET" not in problem


def test_userinfo_in_a_plan_is_refused_without_echoing_it(tmp_path: Path) -> None:
    doc = plan_dict(profile=None)
    doc["spec"]["metrics"]["prometheus"] = {"url": "http://admin:pw-SECRET@127.0.0.1:9"}
    with pytest.raises(PlanError) as info:
        load_plan(write_plan(tmp_path, doc), runtime=False)
    (err,) = [e for e in info.value.errors if e.path.startswith("spec.metrics")]
    assert err.path == "spec.metrics.prometheus.url"
    assert "spec.metrics.prometheus.credentials" in err.message
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize("field,value", [
    ("bearerTokenFile", "/var/run/secrets/kubernetes.io/serviceaccount/token"),
    ("basicAuth", {"username": "u", "passwordFile": "/etc/hostname"}),
    ("caFile", "/etc/ssl/ca.pem"),
    ("insecureSkipVerify", True),
])
def test_plans_no_longer_carry_credentials_or_tls_settings(tmp_path: Path, field: str, value: object) -> None:
    doc = plan_dict(profile=None)
    doc["spec"]["metrics"]["prometheus"] = {"url": "http://127.0.0.1:9", field: value}
    with pytest.raises(PlanError) as info:
        load_plan(write_plan(tmp_path, doc), runtime=False)
    (err,) = [e for e in info.value.errors if e.path.startswith("spec.metrics")]
    assert err.path == "spec.metrics.prometheus"
    assert err.message.startswith(f"{field}: no longer plan fields")
    assert "--credentials" in err.message and "spec.metrics.prometheus.credentials: NAME" in err.message
    assert exit_code_for(info.value) == 2


@pytest.mark.parametrize("url,prefix,under", [
    ("http://prom:9090", "http://prom:9090", True),
    ("http://prom:9090/", "http://prom:9090", True),
    ("http://PROM:9090/x", "http://prom:9090/", True),
    ("http://prom/prometheus", "http://prom:80/prometheus", True),  # default port
    ("http://prom/prometheus/api", "http://prom/prometheus", True),
    ("http://prom/prometheus-evil", "http://prom/prometheus", False),  # a segment, not a string prefix
    ("http://prom:9091", "http://prom:9090", False),
    ("https://prom:9090", "http://prom:9090", False),
    ("http://prom.evil.example:9090", "http://prom", False),
    ("http://prom:9090@evil.example", "http://prom:9090", False),
])
def test_url_under_matches_origin_and_whole_path_segments(url: str, prefix: str, under: bool) -> None:
    assert url_under(url, prefix) is under


def _secret(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _credentials(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "credentials.yaml"
    path.write_text(text)
    return path


def test_a_credentials_file_loads_and_a_plan_names_an_entry(tmp_path: Path) -> None:
    token = _secret(tmp_path, "token", "tok-1\n")
    pw = _secret(tmp_path, "pw", "pässword\n")
    path = _credentials(tmp_path, f"""
credentials:
  thanos:
    urlPrefixes: ["https://thanos.monitoring:10902"]
    bearerTokenFile: {token}
  mimir:
    urlPrefixes: ["http://mimir.monitoring/prometheus"]
    basicAuth: {{username: dynplan, passwordFile: {pw}}}
""")
    creds = load_credentials(path)
    assert sorted(creds.entries) == ["mimir", "thanos"]
    assert read_secret(token, "bearer token file") == "tok-1"
    access = PrometheusAccess(url="http://mimir.monitoring/prometheus", credentials="mimir")
    assert check_access(access, "p.yaml", creds) is creds.entries["mimir"]
    # a credential goes only under its own prefixes, whatever the plan says
    stray = PrometheusAccess(url="http://collector.evil.example/prometheus", credentials="mimir")
    with pytest.raises(PlanError) as info:
        check_access(stray, "p.yaml", creds)
    assert [(e.path, e.message) for e in info.value.errors] == [(
        "spec.metrics.prometheus.url",
        "credentials 'mimir' may only be sent to http://mimir.monitoring/prometheus, "
        "not http://collector.evil.example/prometheus",
    )]


def test_unknown_entry_or_no_file_is_a_load_error_naming_the_field() -> None:
    access = PrometheusAccess(url="http://prom:9090", credentials="nope")
    with pytest.raises(PlanError, match=r"p.yaml: spec.metrics.prometheus.credentials: names 'nope' but the scaler has no --credentials file"):
        check_access(access, "p.yaml", None)
    with pytest.raises(PlanError, match=r"spec.metrics.prometheus.credentials: no entry 'nope' in the scaler's credentials \(entries: none\)"):
        check_access(access, "p.yaml", Credentials("c.yaml", {}))


def test_prometheus_allow_rejects_other_urls() -> None:
    allow = ("http://prometheus-operated.monitoring:9090",)
    ok = PrometheusAccess(url="http://prometheus-operated.monitoring:9090/")
    assert check_access(ok, "p.yaml", None, allow) is None
    assert check_access(PrometheusAccess(url="http://anywhere:1"), "p.yaml", None, ()) is None  # no flag: anywhere
    with pytest.raises(PlanError) as info:
        check_access(PrometheusAccess(url="http://logger.evil.example:80"), "p.yaml", None, allow)
    (err,) = info.value.errors
    assert (err.file, err.path) == ("p.yaml", "spec.metrics.prometheus.url")
    assert "is not an allowed Prometheus endpoint" in err.message


@pytest.mark.parametrize("content,why", [
    ("tok-SECRET-line1\ntok-SECRET-line2\n", "contains a newline"),
    ("tok-SECRET\r\nX: 1", "contains a newline"),
    ("tok-SECRET\x00", "control or non-ASCII"),
    ("tok-SECRET\u00e9", "control or non-ASCII"),
    ("\n  \n", "is empty"),
])
def test_a_bad_token_file_is_named_never_quoted(tmp_path: Path, content: str, why: str) -> None:
    token = _secret(tmp_path, "token", content)
    path = _credentials(tmp_path, f"credentials:\n  t:\n    urlPrefixes: [http://p:9]\n    bearerTokenFile: {token}\n")
    with pytest.raises(CredentialsError) as info:
        load_credentials(path)
    (err,) = info.value.errors
    assert err.path == "credentials.t.bearerTokenFile"
    assert err.message.startswith(f"bearer token file {token} ") and why in err.message
    assert "SECRET" not in str(info.value)
    assert exit_code_for(info.value) == 2


@pytest.mark.parametrize("text,path,why", [
    ("credentials:\n  t:\n    urlPrefixes: [http://p:9]\n    bearerToken: tok-SECRET\n", "credentials.t.bearerToken", "unknown field"),
    ("credentials:\n  t:\n    urlPrefixes: ['http://u:tok-SECRET@p:9']\n", "credentials.t.urlPrefixes", "must not carry a user"),
    ("credentials:\n  t:\n    urlPrefixes: [http://p:9]\n    basicAuth: {username: 'tok-SECRET:x', passwordFile: /x}\n", "credentials.t.basicAuth.username", "without spaces or ':'"),
    ("credentials:\n  t: {bearerTokenFile: /x}\n", "credentials.t.urlPrefixes", "is required"),
    ("tok-SECRET: [unclosed\n", "", "invalid YAML at line 2, column 1"),
    ("credentials:\n  t: {urlPrefixes: [http://p:9]}\n  t: {urlPrefixes: [http://tok-SECRET:9]}\n", "",
     "invalid YAML at line 3, column 3: a key is given twice"),
    ("x: &tok-SECRET [1]\ncredentials: *tok-SECRET\n", "", "aliases are not allowed"),
    ("tok-SECRET-only-line\n", "", "must be a mapping"),
])
def test_credentials_file_errors_never_echo_values(tmp_path: Path, text: str, path: str, why: str) -> None:
    with pytest.raises(CredentialsError) as info:
        load_credentials(_credentials(tmp_path, text))
    assert any(e.path == path and why in e.message for e in info.value.errors), info.value.errors
    assert "SECRET" not in str(info.value)


def test_a_secret_file_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO without a writer would block the query thread for good, /dev/zero never ends."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        creds = _credentials(tmp_path, f"credentials:\n  t:\n    urlPrefixes: [http://p:9]\n    bearerTokenFile: {path}\n")
        with pytest.raises(CredentialsError) as info:
            load_credentials(creds)
        assert [e.message for e in info.value.errors] == [f"bearer token file {path} is not a regular file"]
