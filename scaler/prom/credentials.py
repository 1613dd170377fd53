"""The scaler's own Prometheus credentials and allowed endpoints (`dynplan serve --credentials
FILE --prometheus-allow URL-PREFIX`), and the check of a plan against them.

Trust model: whoever runs the scaler owns the credentials and says where they may go; a plan
author only names an entry (`spec.metrics.prometheus.credentials: NAME`). A credential is
sent only to URLs under its own `urlPrefixes`, whatever the plan says, and with
`--prometheus-allow` a plan may only name Prometheus URLs under one of those prefixes.

The file (YAML, typically mounted from a Secret; the secrets themselves are files too, re-read
on every request so rotation needs no restart):

    credentials:
      thanos:
        urlPrefixes: ["https://thanos-query.monitoring:10902"]
        bearerTokenFile: /etc/dynplan/thanos/token
        caFile: /etc/dynplan/thanos/ca.crt
      mimir:
        urlPrefixes: ["http://mimir.monitoring/prometheus"]
        basicAuth: {username: dynplan, passwordFile: /etc/dynplan/mimir/password}

Errors name the file and the field and never echo a value read from it (a misplaced secret
must not reach a log).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from scaler import naming
from scaler.bounded_input import YamlBoundError, load_yaml_documents, read_regular_file
from scaler.core.plan import PrometheusAccess, http_url_problem
from scaler.errors import CredentialsError, FieldError, InputBoundExceeded, PlanError

MAX_FILE_BYTES = 1 << 20  # a credentials file is a few lines; this bounds a wrong path
MAX_SECRET_BYTES = 64 << 10
_URL_FIELD = "spec.metrics.prometheus.url"
_NAME_FIELD = "spec.metrics.prometheus.credentials"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class BasicAuth(_Model):
    """Basic auth: a username and the file holding the password."""

    username: str = Field(min_length=1, max_length=256)
    password_file: str = Field(min_length=1)

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        if ":" in v or not re.fullmatch(r"[\x21-\x7e]+", v):
            raise ValueError("must be printable ASCII without spaces or ':'")
        return v


class Credential(_Model):
    """One named entry: how to authenticate and verify TLS, and where it may be sent."""

    url_prefixes: tuple[str, ...] = Field(min_length=1)
    bearer_token_file: Optional[str] = Field(default=None, min_length=1)
    basic_auth: Optional[BasicAuth] = None
    ca_file: Optional[str] = Field(default=None, min_length=1)
    insecure_skip_verify: bool = False

    @field_validator("url_prefixes")
    @classmethod
    def _prefixes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, prefix in enumerate(v):
            problem = http_url_problem(prefix)
            if problem is not None:
                raise ValueError(f"[{i}] {problem}")
        return v

    @model_validator(mode="after")
    def _one_auth(self) -> "Credential":
        if self.bearer_token_file is not None and self.basic_auth is not None:
            raise ValueError("give bearerTokenFile or basicAuth, not both")
        if self.ca_file is not None and self.insecure_skip_verify:
            raise ValueError("give caFile or insecureSkipVerify, not both")
        return self

    def allows(self, url: str) -> bool:
        return any(url_under(url, p) for p in self.url_prefixes)


class _File(_Model):
    credentials: dict[str, Credential] = Field(default_factory=dict)

    @field_validator("credentials")
    @classmethod
    def _names(cls, v: dict[str, Credential]) -> dict[str, Credential]:
        for name in v:
            if not naming.DNS1123_LABEL_RE.fullmatch(name) or len(name) > 63:
                raise ValueError("entry names must be DNS-1123 labels (lowercase letters, digits, '-')")
        return v


@dataclass(frozen=True)
class Credentials:
    """The loaded --credentials file: entries by name."""

    file: str
    entries: Mapping[str, Credential]


class CredentialFileError(Exception):
    """A token or password file cannot be used; the message names the file, never its content."""


def read_secret(path: str, what: str, *, ascii_only: bool = True) -> str:
    """The one-line secret in `path` (surrounding whitespace, e.g. a Secret's trailing
    newline, removed). A newline or other control character inside would end up in (or
    break) the Authorization header, so it is refused with the file named, not its value.
    A bearer token goes into the header as it is (`ascii_only`); a password is base64-encoded
    first, so any printable text is fine."""
    # a regular file only: a FIFO or a device would block or never end, holding a query thread
    try:
        raw = read_regular_file(Path(path), MAX_SECRET_BYTES)
    except OSError as exc:
        raise CredentialFileError(f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}") from None
    except InputBoundExceeded as exc:
        raise CredentialFileError(f"{what} {path} {exc}") from None
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CredentialFileError(f"{what} {path} is not UTF-8 text") from None
    if not value:
        raise CredentialFileError(f"{what} {path} is empty")
    if "\n" in value or "\r" in value:
        raise CredentialFileError(f"{what} {path} contains a newline (it must hold one line)")
    if not (re.fullmatch(r"[\x20-\x7e]+", value) if ascii_only else value.isprintable()):
        raise CredentialFileError(f"{what} {path} contains a control or non-ASCII character")
    return value


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path without trailing '/') of a URL http_url_problem accepts."""
    m = re.fullmatch(r"(?P<scheme>[a-z]+)://(?P<host>\[[^\]]*\]|[^:/]*)(:(?P<port>\d+))?(?P<path>/[^?#]*)?", url)
    if m is None:
        raise ValueError("not an http(s) URL")
    scheme = m["scheme"]
    port = int(m["port"]) if m["port"] else (443 if scheme == "https" else 80)
    return scheme, m["host"].lower(), port, (m["path"] or "").rstrip("/")


def url_under(url: str, prefix: str) -> bool:
    """Whether `url` is `prefix` or below it: same scheme, host and port, and a path equal to
    the prefix's or under it at a '/' (a plain string prefix would let
    http://prom:9090.evil.example or /prometheus-evil through)."""
    if http_url_problem(url) is not None or http_url_problem(prefix) is not None:
        return False
    s1, h1, p1, path1 = _split(url)
    s2, h2, p2, path2 = _split(prefix)
    return (s1, h1, p1) == (s2, h2, p2) and (path1 == path2 or path1.startswith(path2 + "/"))


def _field(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _errors(file: str, exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors():
        path, kind = _field(err["loc"]), err["type"]
        if kind == "extra_forbidden":
            msg = "unknown field (secrets are read from files: bearerTokenFile, basicAuth.passwordFile)"
        elif kind == "missing":
            msg = "is required"
        elif kind == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])
        else:
            msg = err["msg"]  # pydantic's words; never err["input"], which may be a secret
        out.append(FieldError(file, path, msg))
    return out


def load_credentials(path: str | Path) -> Credentials:
    """Read and check a --credentials file (the secret files must be readable one-liners)."""
    file = str(path)
    try:
        raw = read_regular_file(Path(path), MAX_FILE_BYTES)
    except OSError as exc:
        raise CredentialsError([FieldError(file, "", f"cannot read: {exc.strerror or type(exc).__name__}")]) from None
    except InputBoundExceeded as exc:
        raise CredentialsError([FieldError(file, "", str(exc))]) from None
    try:
        docs = load_yaml_documents(raw.decode("utf-8"), max_depth=16, max_nodes=10_000)
    except UnicodeDecodeError:
        raise CredentialsError([FieldError(file, "", "not UTF-8 text")]) from None
    except yaml.YAMLError as exc:
        # Where, and our own bound's words; never the parser's problem or snippet, which
        # quote the file's text (a secret pasted into the wrong place).
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        why = ""
        if isinstance(exc, YamlBoundError):
            problem = str(exc.problem)
            why = (": a key is given twice" if problem.startswith("duplicate key")
                   else ": aliases are not allowed" if problem.startswith("aliases") else f": {problem}")
        raise CredentialsError([FieldError(file, "", f"invalid YAML{where}{why}")]) from None
    if len(docs) > 1:
        raise CredentialsError([FieldError(file, "", f"expected one YAML document, found {len(docs)}")])
    doc = docs[0] if docs else {}
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise CredentialsError([FieldError(file, "", "must be a mapping with a 'credentials' key")])
    try:
        parsed = _File.model_validate(doc)
    except ValidationError as exc:
        raise CredentialsError(_errors(file, exc)) from None
    problems = []
    for name, cred in parsed.credentials.items():
        checks = [("bearerTokenFile", cred.bearer_token_file, "bearer token file", True)]
        if cred.basic_auth is not None:
            checks.append(("basicAuth.passwordFile", cred.basic_auth.password_file, "password file", False))
        for key, secret_path, what, ascii_only in checks:
            if secret_path is None:
                continue
            try:
                read_secret(secret_path, what, ascii_only=ascii_only)
            except CredentialFileError as exc:
                problems.append(FieldError(file, f"credentials.{name}.{key}", str(exc)))
        if cred.ca_file is not None and not Path(cred.ca_file).is_file():
            problems.append(FieldError(file, f"credentials.{name}.caFile", f"{cred.ca_file}: no such file"))
    if problems:
        raise CredentialsError(problems)
    return Credentials(file, dict(parsed.credentials))


def check_access(
    access: PrometheusAccess,
    plan_file: str,
    credentials: Optional[Credentials],
    allow: Sequence[str] = (),
) -> Optional[Credential]:
    """The credential a plan's Prometheus access names (None: none), after checking its URL
    against `allow` (empty: any URL) and the credential's own prefixes. PlanError naming
    the plan's field otherwise."""
    errors = []
    if allow and not any(url_under(access.url, p) for p in allow):
        errors.append(FieldError(
            plan_file, _URL_FIELD,
            f"{access.url} is not an allowed Prometheus endpoint; this scaler allows: {', '.join(allow)} "
            "(dynplan serve --prometheus-allow)",
        ))
    credential = None
    name = access.credentials
    if name is not None:
        if credentials is None:
            errors.append(FieldError(plan_file, _NAME_FIELD, f"names {name!r} but the scaler has no --credentials file"))
        elif name not in credentials.entries:
            known = ", ".join(sorted(credentials.entries)) or "none"
            errors.append(FieldError(
                plan_file, _NAME_FIELD, f"no entry {name!r} in the scaler's credentials (entries: {known})"
            ))
        else:
            credential = credentials.entries[name]
            if not credential.allows(access.url):
                errors.append(FieldError(
                    plan_file, _URL_FIELD,
                    f"credentials {name!r} may only be sent to {', '.join(credential.url_prefixes)}, not {access.url}",
                ))
    if errors:
        raise PlanError(errors)
    return credential
