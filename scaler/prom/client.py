"""Prometheus HTTP API access: a total deadline per request, bounded retries, a concurrency
limit, auth and TLS from the scaler's credentials, and error text that carries no secret.

GET /api/v1/query and /api/v1/query_range with a `requests` session, whose blocking calls
run in the client's own daemon threads. Every failure (connection refused, timeout, HTTP
error, bad JSON, Prometheus error status, unusable credentials) becomes `MetricsUnavailable`
naming the query and the cause: callers never see a made-up value. An HTTP error is named
by the response's status code and its reason (Prometheus' JSON "error" field, else the body
as text). 'NaN' values parse to float('nan'); deciding what NaN means is the caller's job.

Deadlines: `requests` timeouts bound each socket operation, so a body trickling in one byte
a second would never time out. Each attempt here has one budget of `access.timeout_seconds`
for connecting, the headers and the whole body (streamed, at most `MAX_BODY_BYTES`); when it
runs out the connection is closed. A call therefore fails within `deadline_seconds`
(timeout * (retries + 1) plus the retry pauses); an asyncio deadline backs that up, and
`close()` aborts what is in flight without waiting, so no thread outlives shutdown by more
than one attempt's budget (and none keeps the interpreter from exiting).

Retries: only connection errors, timeouts and HTTP 5xx are retried (`access.retries`
times, 50 ms apart); a 4xx (bad query), a redirect (never followed: a credential must not
travel to another URL) or a malformed answer fails at once.

Secrets: token and password files are validated when read (one line, no control
characters; the error names the file, never the value). Messages are built from a fixed
vocabulary (timeouts, refused connections, HTTP status and Prometheus' reason) and never
from exception text that could quote a request header; the origin is shown without the
path, and any secret the client sent is replaced by `<redacted>` in whatever text a server
sent back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import queue
import re
import socket
import threading
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.util import Timeout
from urllib3.util.retry import Retry

from scaler.core.plan import PrometheusAccess
from scaler.errors import MetricsUnavailable
from scaler.prom.credentials import Credential, CredentialFileError, read_secret

_RETRY_PAUSE_S = 0.05
MAX_BODY_BYTES = 32 << 20  # a plan's answers are kilobytes; this bounds a runaway server
_CHUNK = 64 << 10
DEFAULT_CONCURRENCY = 8
_T = TypeVar("_T")


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
    """A token or password file cannot be used (not retried)."""


class _HttpStatusError(Exception):
    """Prometheus (or a proxy in front of it) answered with a status other than 200."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class _DeadlineExceeded(Exception):
    """One attempt ran out of its total budget (connect, headers and body)."""


class _Malformed(Exception):
    """The answer is not the HTTP API's JSON (the message is ours, not the parser's)."""


class _SecretAuth(requests.auth.AuthBase):
    """Bearer token or basic auth whose secret is re-read from its file on every request,
    so a rotated Kubernetes secret is picked up without a restart. Remembers what it sent,
    so error text coming back can be scrubbed of it."""

    def __init__(self, credential: Credential) -> None:
        self.credential = credential
        self.sent: frozenset[str] = frozenset()

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        c = self.credential
        try:
            if c.bearer_token_file is not None:
                token = read_secret(c.bearer_token_file, "bearer token file")
                self.sent = self.sent | {token}
                r.headers["Authorization"] = "Bearer " + token
            elif c.basic_auth is not None:
                password = read_secret(c.basic_auth.password_file, "password file", ascii_only=False)
                blob = base64.b64encode(f"{c.basic_auth.username}:{password}".encode()).decode()
                self.sent = self.sent | {password, blob}
                r.headers["Authorization"] = "Basic " + blob
        except CredentialFileError as exc:
            raise _CredentialError(str(exc)) from None
        return r


class _DaemonThreads(Executor):
    """A fixed-size pool of daemon threads. ThreadPoolExecutor's threads are joined when the
    interpreter exits, so one blocked request kept `dynplan serve` alive after SIGTERM."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers, self._name = workers, name
        self._queue: "queue.SimpleQueue[Optional[tuple[Future[Any], Callable[[], Any]]]]" = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> "Future[_T]":
        with self._lock:
            if self._shutdown:
                raise RuntimeError("executor shut down")
            future: Future[_T] = Future()
            self._queue.put((future, lambda: fn(*args, **kwargs)))
            if len(self._threads) < self._workers:
                t = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if wait:
            for t in threads:
                t.join()


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
    """Async (and sync, for the CLI) access to one Prometheus server, per `PrometheusAccess`
    and the scaler's `Credential` it names (auth and TLS), which is checked to allow the URL."""

    def __init__(
        self,
        access: PrometheusAccess,
        *,
        credential: Optional[Credential] = None,
        max_concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if access.credentials is not None and credential is None:
            raise ValueError(f"the access names credentials {access.credentials!r}: pass the entry (check_access)")
        if credential is not None and not credential.allows(access.url):
            raise ValueError("the credential may not be sent to this URL (urlPrefixes)")
        self.access = access
        self.url = access.url.rstrip("/")
        self.origin = _origin(self.url)
        session = requests.Session()
        session.trust_env = False  # no proxy/netrc surprises: the plan says where Prometheus is
        self._auth: Optional[_SecretAuth] = None
        if credential is not None:
            if credential.ca_file:
                session.verify = credential.ca_file
            else:
                session.verify = not credential.insecure_skip_verify
            if credential.bearer_token_file is not None or credential.basic_auth is not None:
                self._auth = _SecretAuth(credential)
                session.auth = self._auth
        # Retries are ours (bounded, 5xx/connection only), not urllib3's (backoff sleeps).
        session.mount(self.url, HTTPAdapter(max_retries=Retry(total=0, redirect=0, raise_on_status=False)))
        self._session = session
        self._executor = _DaemonThreads(max_concurrency, "dynplan-prom")
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._closed = False
        self._inflight: set[requests.Response] = set()
        self._lock = threading.Lock()
        self.active = 0  # queries running in threads now (a test and a gauge can read it)

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop: queued queries are cancelled, answers being read are cut off. Never blocks."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            responses = list(self._inflight)
        for response in responses:
            _abort(response)
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
    def _fail(self, query: str, cause: str, verb: str = "failed") -> MetricsUnavailable:
        return MetricsUnavailable(self._scrub(f"Prometheus query {_short(query)!r} {verb}: {cause}"))

    def _scrub(self, text: str) -> str:
        """`text` without any secret this client sent, control characters or excess length."""
        if self._auth is not None:
            for secret in sorted(self._auth.sent, key=len, reverse=True):
                text = text.replace(secret, "<redacted>")
        return re.sub(r"[\x00-\x1f\x7f]+", " ", text)[:700]

    def _call(self, query: str, fn: Callable[[], Any], parse: Callable[[Any], Any]) -> Any:
        attempts = self.access.retries + 1
        budget = self.access.timeout_seconds
        cause = "no attempt made"
        with self._lock:
            self.active += 1
        try:
            for attempt in range(attempts):
                if self._closed:
                    if attempt:
                        raise self._fail(query, f"client closed; {cause}")
                    raise self._fail(query, "client closed", "not sent")
                if attempt:
                    time.sleep(_RETRY_PAUSE_S)
                try:
                    result = fn()
                except _CredentialError as exc:
                    raise self._fail(query, str(exc), "not sent") from None
                except (_DeadlineExceeded, requests.exceptions.Timeout, ReadTimeoutError):
                    cause = f"timed out after {budget:g}s"
                    continue
                except requests.exceptions.SSLError as exc:
                    # a certificate problem does not go away by asking again
                    m = re.search(r"certificate verify failed[\w :,.()-]{0,120}", str(exc))
                    cause = f"TLS error talking to {self.origin}: {m.group(0) if m else 'handshake failed'}"
                    break
                except requests.exceptions.ConnectionError as exc:
                    if _is_timeout(exc):
                        cause = f"timed out after {budget:g}s"
                    else:
                        cause = f"cannot connect to {self.origin}: {_root_cause(exc)}"
                    continue
                except HTTPError as exc:
                    # urllib3 while the body streams in: the connection broke (or close() cut it)
                    cause = f"connection to {self.origin} broken while reading the answer ({type(exc).__name__})"
                    continue
                except _HttpStatusError as exc:
                    cause = str(exc)
                    if exc.status >= 500:
                        continue
                    break
                except _Malformed as exc:
                    cause = f"malformed response ({exc})"
                    break
                except Exception as exc:  # noqa: BLE001 - its text may quote the request (headers)
                    cause = f"request not completed ({type(exc).__name__})"
                    break
                try:
                    return parse(result)
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    cause = f"malformed result ({type(exc).__name__}: {_clip(str(exc), 120)})"
                    break
            raise self._fail(query, cause)
        finally:
            with self._lock:
                self.active -= 1

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        """One GET of the HTTP API within one attempt's budget: `data.result` of a 200 answer
        (_Malformed when it has none or is not JSON), _HttpStatusError for any other status."""
        budget = self.access.timeout_seconds
        deadline = time.monotonic() + budget
        response = self._session.get(
            self.url + path,
            params=params,
            # urllib3's total bounds connect + headers together; requests passes it through
            timeout=Timeout(connect=budget, read=budget, total=budget),  # type: ignore[arg-type]
            stream=True,
            allow_redirects=False,
        )
        with self._lock:
            self._inflight.add(response)
        try:
            if self._closed:
                raise _DeadlineExceeded()
            body = _read_body(response, deadline)
        finally:
            with self._lock:
                self._inflight.discard(response)
            response.close()  # not returned to the pool half-read
        status = response.status_code
        if 300 <= status < 400:
            raise _HttpStatusError(status, "redirect not followed (set spec.metrics.prometheus.url to the final URL)")
        if status != 200:
            raise _HttpStatusError(status, _reason(body, response.headers.get("Content-Type", ""), response.reason))
        try:
            doc = json.loads(body)
        except ValueError:
            raise _Malformed("not JSON") from None
        try:
            return doc["data"]["result"]
        except (KeyError, TypeError):
            status_field = doc.get("status") if isinstance(doc, dict) else None
            raise _Malformed(f"no data.result; status {_clip(str(status_field), 40)!r}") from None

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
            raise self._fail(query, "client closed", "not sent")
        async with self._semaphore:
            loop = asyncio.get_running_loop()
            try:
                future = loop.run_in_executor(self._executor, fn)
            except RuntimeError:
                raise self._fail(query, "client closed", "not sent") from None
            try:
                # the per-attempt deadlines fire first; this is the backstop
                return await asyncio.wait_for(future, self.deadline_seconds + 1.0)
            except asyncio.TimeoutError:
                raise self._fail(query, f"no answer within {self.deadline_seconds + 1.0:g}s") from None

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


def _socket(response: requests.Response) -> Optional[socket.socket]:
    """The socket an answer is read from. http.client lets go of it on the connection
    when the answer will close it, so it is looked up on the file being read too (private
    attributes, hence getattr: without it only the checks between reads bound the body)."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if not isinstance(sock, socket.socket):
        fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _abort(response: requests.Response) -> None:
    """Cut off an answer being read in another thread: its blocked read returns at once."""
    sock = _socket(response)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _read_body(response: requests.Response, deadline: float) -> bytes:
    """The whole body by `deadline` (monotonic), at most MAX_BODY_BYTES. Each read waits at
    most for what is left of the budget, so a trickling body cannot stretch it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineExceeded()
        sock = _socket(response)
        if sock is not None:
            sock.settimeout(remaining)
        chunk = response.raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Malformed(f"answer larger than {MAX_BODY_BYTES >> 20} MiB")
        chunks.append(chunk)


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL: what messages name (no path, never userinfo)."""
    m = re.match(r"([a-z]+://)(?:[^@/]*@)?([^/?#]*)", url)
    return m.group(1) + m.group(2) if m else "Prometheus"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _fmt_time(t: float) -> str:
    if not math.isfinite(t):
        raise ValueError(f"time must be finite, got {t}")
    return f"{t:.3f}"


def _reason(body: bytes, content_type: str, http_reason: Optional[str]) -> str:
    """Why a request failed, from its response: Prometheus' JSON error body names it in
    "error"; anything else (a proxy's page) is shown as text."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("error"):
        text = str(doc["error"])
    else:
        # UTF-8 unless the answer declares a charset (requests would guess ISO-8859-1)
        m = re.search(r"charset=([\w.-]+)", content_type, re.IGNORECASE)
        try:
            text = body.decode(m.group(1) if m else "utf-8", errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        text = text.strip() or http_reason or "(empty body)"
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
    """A fixed phrase for why a connection failed (never the exception's text, which names
    the request)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "No route to host", "Connection reset", "Network is unreachable", "Connection aborted",
                   "Remote end closed connection"):
        if marker in text:
            return marker
    return f"connection failed ({type(exc).__name__})"
