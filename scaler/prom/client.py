"""Prometheus HTTP API access: timeouts, bounded retries, a concurrency limit, auth and TLS.

GET /api/v1/query and /api/v1/query_range with a `requests` session, whose blocking calls
run in the client's own thread pool. Every failure (connection refused, timeout, HTTP error,
bad JSON, Prometheus error status, unreadable credentials) becomes `MetricsUnavailable`
naming the query and the cause: callers never see a made-up value. An HTTP error is named
by the response's status code and its reason (Prometheus' JSON "error" field, else the body
as text). 'NaN' values parse to float('nan'); deciding what NaN means is the caller's job.

Retries: only connection errors, timeouts and HTTP 5xx are retried (`access.retries`
times, 50 ms apart); a 4xx (bad query) or a malformed answer fails at once. Each attempt
is bounded by `access.timeout_seconds` (connect and read), so a call fails within about
timeout * (retries + 1) seconds; an asyncio deadline backs that up.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from scaler.core.plan import PrometheusAccess
from scaler.errors import MetricsUnavailable

_RETRY_PAUSE_S = 0.05


@dataclass(frozen=True)
class Sample:
    """One instant-vector element (a scalar result has empty labels)."""

    labels: Mapping[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class Series:
    """One range-vector series: (timestamp, value) points in time order."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...] = field(default_factory=tuple)


class _CredentialError(Exception):
    """A token or password file could not be read (not retried)."""


class _HttpStatusError(Exception):
    """Prometheus (or a proxy in front of it) answered with a status other than 200."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class _FileAuth(requests.auth.AuthBase):
    """Bearer token or basic auth whose secret is re-read from its file on every request,
    so a rotated Kubernetes secret is picked up without a restart."""

    def __init__(self, *, token_file: Optional[str] = None, username: Optional[str] = None, password_file: Optional[str] = None):
        self.token_file, self.username, self.password_file = token_file, username, password_file

    @staticmethod
    def _read(path: str, what: str) -> str:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise _CredentialError(f"cannot read {what} {path}: {exc.strerror or exc}") from None

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token_file:
            r.headers["Authorization"] = "Bearer " + self._read(self.token_file, "bearer token file")
        elif self.username is not None and self.password_file:
            password = self._read(self.password_file, "password file")
            raw = f"{self.username}:{password}".encode()
            r.headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return r


def _short(query: str, limit: int = 300) -> str:
    return query if len(query) <= limit else query[:limit] + "..."


def _parse_value(raw: Any) -> float:
    # Prometheus encodes values as strings: "1.5", "NaN", "+Inf", "-Inf".
    if not isinstance(raw, str):
        raise ValueError(f"value {raw!r} is not a string")
    return float(raw)


def _to_samples(result: Any) -> list[Sample]:
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        # scalar result: [ts, "v"]
        return [Sample({}, _parse_value(result[1]), float(result[0]))]
    if not isinstance(result, list):
        raise ValueError("result is not a list")
    out = []
    for item in result:
        ts, val = item["value"]
        out.append(Sample(dict(item.get("metric", {})), _parse_value(val), float(ts)))
    return out


def _to_series(result: Any) -> list[Series]:
    if not isinstance(result, list):
        raise ValueError("result is not a list")
    out = []
    for item in result:
        points = tuple((float(ts), _parse_value(val)) for ts, val in item["values"])
        out.append(Series(dict(item.get("metric", {})), points))
    return out


class PromClient:
    """Async (and sync, for the CLI) access to one Prometheus server, per `PrometheusAccess`."""

    def __init__(self, access: PrometheusAccess, *, max_concurrency: int = 4) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.access = access
        self.url = access.url.rstrip("/")
        session = requests.Session()
        session.trust_env = False  # no proxy/netrc surprises: the plan says where Prometheus is
        if access.ca_file:
            session.verify = access.ca_file
        else:
            session.verify = not access.insecure_skip_verify
        if access.bearer_token_file:
            session.auth = _FileAuth(token_file=access.bearer_token_file)
        elif access.basic_auth is not None:
            session.auth = _FileAuth(username=access.basic_auth.username, password_file=access.basic_auth.password_file)
        # Retries are ours (bounded, 5xx/connection only), not urllib3's (backoff sleeps).
        session.mount(self.url, HTTPAdapter(max_retries=Retry(total=0, redirect=0, raise_on_status=False)))
        self._session = session
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="dynplan-prom")
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._session.close()

    async def __aenter__(self) -> "PromClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __enter__(self) -> "PromClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def deadline_seconds(self) -> float:
        """The longest one query can take before it fails."""
        a = self.access
        return a.timeout_seconds * (a.retries + 1) + _RETRY_PAUSE_S * a.retries

    # -- blocking core ------------------------------------------------------------------
    def _call(self, query: str, fn: Callable[[], Any], parse: Callable[[Any], Any]) -> Any:
        attempts = self.access.retries + 1
        cause = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                time.sleep(_RETRY_PAUSE_S)
            try:
                result = fn()
            except _CredentialError as exc:
                raise MetricsUnavailable(f"query {_short(query)!r} not sent: {exc}") from None
            except requests.exceptions.Timeout:
                cause = f"timed out after {self.access.timeout_seconds:g}s"
                continue
            except requests.exceptions.SSLError as exc:
                # a certificate problem does not go away by asking again
                m = re.search(r"certificate verify failed[^'\")]*", str(exc))
                cause = f"TLS error talking to {self.url}: {m.group(0) if m else _root_cause(exc)}"
                break
            except requests.exceptions.ConnectionError as exc:
                if _is_timeout(exc):
                    cause = f"timed out after {self.access.timeout_seconds:g}s"
                else:
                    cause = f"cannot connect to {self.url}: {_root_cause(exc)}"
                continue
            except _HttpStatusError as exc:
                cause = str(exc)
                if exc.status >= 500:
                    continue
                break
            except (ValueError, KeyError, TypeError) as exc:
                # bad JSON (requests' JSONDecodeError is a ValueError), or a 200 answer
                # without data.result (e.g. status "error")
                cause = f"malformed response ({type(exc).__name__}: {exc})"
                break
            except requests.exceptions.RequestException as exc:
                cause = f"request failed: {exc}"
                break
            try:
                return parse(result)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                cause = f"malformed result ({type(exc).__name__}: {exc})"
                break
        raise MetricsUnavailable(f"Prometheus query {_short(query)!r} failed: {cause}")

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        """One GET of the HTTP API: `data.result` of a 200 answer (KeyError/ValueError when
        it has none or is not JSON), _HttpStatusError for any other status."""
        response = self._session.get(self.url + path, params=params, timeout=self.access.timeout_seconds)
        if response.status_code != 200:
            raise _HttpStatusError(response.status_code, _reason(response))
        return response.json()["data"]["result"]

    def _instant_blocking(self, query: str, at: Optional[float]) -> list[Sample]:
        params = {"query": query, "timeout": f"{self.access.timeout_seconds:g}s"}
        if at is not None:
            params["time"] = _fmt_time(at)
        return self._call(query, lambda: self._get("/api/v1/query", params), _to_samples)

    def _range_blocking(self, query: str, start: float, end: float, step: float) -> list[Series]:
        if not (math.isfinite(start) and math.isfinite(end) and end >= start and step > 0):
            raise ValueError("range query needs end >= start and step > 0")
        params = {
            "query": query,
            "start": _fmt_time(start),
            "end": _fmt_time(end),
            "step": f"{step:g}",
            "timeout": f"{self.access.timeout_seconds:g}s",
        }
        return self._call(query, lambda: self._get("/api/v1/query_range", params), _to_series)

    # -- async API ----------------------------------------------------------------------
    async def _run(self, query: str, fn: Callable[[], Any]) -> Any:
        if self._closed:
            raise MetricsUnavailable(f"Prometheus query {_short(query)!r} not sent: client closed")
        async with self._semaphore:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, fn)
            try:
                # the per-attempt timeouts should fire first; this is the backstop
                return await asyncio.wait_for(future, self.deadline_seconds + 1.0)
            except asyncio.TimeoutError:
                raise MetricsUnavailable(
                    f"Prometheus query {_short(query)!r} failed: no answer within {self.deadline_seconds + 1.0:g}s"
                ) from None

    async def instant(self, query: str, at: Optional[float] = None) -> list[Sample]:
        """Evaluate `query` at Unix time `at` (now when None)."""
        return await self._run(query, lambda: self._instant_blocking(query, at))

    async def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate `query` at start, start+step, ..., <= end (Unix seconds)."""
        return await self._run(query, lambda: self._range_blocking(query, start, end, step))

    # -- sync API (CLI) -----------------------------------------------------------------
    def instant_sync(self, query: str, at: Optional[float] = None) -> list[Sample]:
        return self._instant_blocking(query, at)

    def range_sync(self, query: str, start: float, end: float, step: float) -> list[Series]:
        return self._range_blocking(query, start, end, step)


def _fmt_time(t: float) -> str:
    if not math.isfinite(t):
        raise ValueError(f"time must be finite, got {t}")
    return f"{t:.3f}"


def _reason(response: requests.Response) -> str:
    """Why a request failed, from its response: Prometheus' JSON error body names it in
    "error"; anything else (a proxy's page) is shown as text."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("error"):
        text = str(doc["error"])
    else:
        # UTF-8 unless the answer declares a charset (requests would guess ISO-8859-1)
        declared = "charset=" in response.headers.get("Content-Type", "").lower()
        encoding = (response.encoding if declared else None) or "utf-8"
        text = response.content.decode(encoding, errors="replace").strip() or response.reason or "(empty body)"
    return text[:500]


def _is_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout behind a zero-retry adapter as a ConnectionError
    wrapping urllib3's MaxRetryError(ReadTimeoutError): look through the chain."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, NewConnectionError):
            return False  # urllib3 derives it from ConnectTimeoutError; it is a refusal
        if isinstance(seen, (ReadTimeoutError, ConnectTimeoutError, TimeoutError)):
            return True
        reason = getattr(seen, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else None
        if nxt is None and seen.args and isinstance(seen.args[0], BaseException):
            nxt = seen.args[0]
        seen = nxt
    return False


def _root_cause(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if marker in text:
            return marker
    return text[:200]
