"""A streaming client of an OpenAI-compatible `/v1/completions` (or `/v1/chat/completions`)
endpoint, for timing.

`requests` (already a dependency) with `stream=True`; each request runs in a daemon thread
of its own session, so a Ctrl-C or a time limit never waits for a stream to end, and at most
`limit` requests are in flight (`run_all`). The body is read with `read1` (whatever bytes
have arrived), so each SSE event is stamped when it arrives, not when a buffer fills.

Deadlines: `requests` timeouts bound one socket operation each; here every request also has
a total deadline, checked between reads (a server trickling bytes is cut off at it) and
used as the read timeout of each read.

Errors: a refused connection, a timeout, HTTP 5xx or a dropped stream are
`EndpointUnavailable` (exit 3); an answer that is not an OpenAI streaming one (HTTP 404, an
unknown model, a JSON body where an SSE stream was asked for, no `usage`, a rejected key)
is `EndpointIncompatible` (exit 2). Messages name the endpoint's origin and path, quote at
most 200 characters of what the server said, and never the API key.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import requests

from scaler.errors import EndpointIncompatible, EndpointUnavailable, FieldError, InputError
from scaler.profiling.sweep_plan import StreamTiming

MAX_STREAM_BYTES = 64 << 20  # a completion of 100k tokens is a few MB of SSE
MAX_DOC_BYTES = 8 << 20  # /v1/models, /metrics
_READ = 64 << 10
_T = TypeVar("_T")
_R = TypeVar("_R")


def parse_base_url(url: str, option: str = "--url") -> str:
    """`http[s]://host[:port][/prefix]` without a trailing `/v1`: the base the API paths go
    under. Credentials in the URL are refused (they would end up in logs and
    measurement.json); the key goes in --api-key-file."""
    parts = urllib.parse.urlsplit(url.strip())
    problem = None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "must be an http:// or https:// URL with a host"
    elif parts.username or parts.password:
        problem = "must not carry credentials; put the API key in a file and pass --api-key-file"
    elif parts.query or parts.fragment:
        problem = "must not have a query or fragment"
    if problem:
        raise InputError([FieldError(option, "", problem)])
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def read_api_key(path: str) -> str:
    """The key from a file: one line, no control characters (the message never quotes it)."""
    from scaler.bounded_input import read_regular_file
    from scaler.errors import InputBoundExceeded

    try:
        text = read_regular_file(Path(path), 4096).decode("utf-8")
    except (OSError, UnicodeDecodeError, InputBoundExceeded) as exc:
        reason = str(exc) if isinstance(exc, InputBoundExceeded) else type(exc).__name__
        raise InputError([FieldError(path, "--api-key-file", f"cannot read the key file: {reason}")]) from None
    key = text.strip()
    if not key or any(not c.isprintable() or c.isspace() for c in key):
        raise InputError([FieldError(path, "--api-key-file", "must hold one key on one line (no spaces or control characters)")])
    return key


@dataclass(frozen=True)
class Client:
    """One endpoint: base URL, model, key (never shown), per-request deadline (seconds)."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    api: str = "completions"  # or "chat": /v1/chat/completions, the prompt as one user message
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    # -- plumbing ---------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # a proxy from the environment would time the proxy
            if self.api_key:
                s.headers["Authorization"] = f"Bearer {self.api_key}"
            self._local.session = s
        return s

    def _where(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _scrub(self, text: str) -> str:
        if self.api_key:
            text = text.replace(self.api_key, "<redacted>")
        return " ".join(text.split())[:200]

    def _failure(self, path: str, exc: requests.RequestException, *, streaming: bool = False) -> EndpointUnavailable:
        # a fixed vocabulary: exception text can quote a request (and its Authorization header)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            why = f"no connection within {self.connect_timeout_s:g} s"
        elif isinstance(exc, requests.exceptions.Timeout):
            why = "timed out waiting for the answer"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            why = "the connection dropped mid-answer" if streaming else "cannot connect (refused, or no such host)"
        else:
            why = f"the request failed ({type(exc).__name__})"
        return EndpointUnavailable(f"{self._where(path)}: {why}")

    def _http_error(self, path: str, resp: requests.Response) -> Exception:
        body = self._scrub(_bounded_text(resp, 4096))
        said = f": {body}" if body else ""
        if resp.status_code >= 500 or resp.status_code == 429:
            return EndpointUnavailable(f"{self._where(path)}: HTTP {resp.status_code}{said}")
        if resp.status_code in (401, 403):
            return EndpointIncompatible(f"{self._where(path)}: HTTP {resp.status_code}, the API key was rejected (--api-key-file){said}")
        if resp.status_code == 404:
            return EndpointIncompatible(f"{self._where(path)}: HTTP 404: not an OpenAI-compatible endpoint (or a wrong --model){said}")
        return EndpointIncompatible(f"{self._where(path)}: HTTP {resp.status_code}{said}")

    def get(self, path: str, *, timeout_s: float | None = None) -> requests.Response | None:
        """GET a document (at most MAX_DOC_BYTES); None on HTTP 404."""
        t = timeout_s or min(self.timeout_s, 30.0)
        try:
            resp = self._session().get(self._where(path), timeout=(self.connect_timeout_s, t), stream=True, allow_redirects=False)
            if resp.status_code == 404:
                resp.close()
                return None
            if resp.status_code != 200:
                raise self._http_error(path, resp)
            data = _bounded_body(resp, MAX_DOC_BYTES, time.monotonic() + t)
        except requests.RequestException as exc:
            raise self._failure(path, exc) from None
        if data is None:
            raise EndpointIncompatible(f"{self._where(path)}: the answer is larger than {MAX_DOC_BYTES} bytes or too slow")
        resp._content = data  # the body as read, for .json() / .text
        return resp

    # -- the API ----------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """`/v1/models`' entries; EndpointIncompatible when it has none or not that shape."""
        resp = self.get("/v1/models")
        if resp is None:
            raise EndpointIncompatible(f"{self._where('/v1/models')}: HTTP 404: not an OpenAI-compatible endpoint")
        try:
            data = resp.json()["data"]
            if not isinstance(data, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise EndpointIncompatible(f"{self._where('/v1/models')}: not an OpenAI model list (no 'data' array)") from None
        return [d for d in data if isinstance(d, dict)]

    def metrics_text(self, url: str | None = None) -> str | None:
        """The engine's Prometheus text (`/metrics` under the base URL unless `url`), or None."""
        if url is not None:
            # the key goes only where the API is: another origin never sees it
            same = urllib.parse.urlsplit(url)[:2] == urllib.parse.urlsplit(self.base_url)[:2]
            other = Client(url.rstrip("/"), self.model, self.api_key if same else None, self.timeout_s, self.connect_timeout_s, self.api)
            resp = other.get("")
        else:
            resp = self.get("/metrics")
        return None if resp is None else resp.text

    def stream(self, prompt: str, max_tokens: int, *, deadline: float | None = None, ignore_eos: bool = True) -> StreamTiming:
        """One streamed completion (or chat completion); every chunk carrying generated text
        is stamped on arrival (time.monotonic).

        `ignore_eos` and `min_tokens` (vLLM, SGLang; most servers ignore unknown fields) make
        the engine produce exactly `max_tokens`, as a profile needs; `ignore_eos=False` leaves
        them out for servers that refuse them. `deadline` (monotonic seconds) bounds the
        whole request; past it the stream is closed and EndpointUnavailable raised.
        """
        path = "/v1/chat/completions" if self.api == "chat" else "/v1/completions"
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.0,
        }
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if ignore_eos:
            body.update(ignore_eos=True, min_tokens=max_tokens)
        end = min(deadline if deadline is not None else float("inf"), time.monotonic() + self.timeout_s)
        sent = time.monotonic()
        try:
            resp = self._session().post(
                self._where(path), json=body, stream=True, allow_redirects=False,
                timeout=(self.connect_timeout_s, max(end - time.monotonic(), 0.001)),
            )
        except requests.RequestException as exc:
            raise self._failure(path, exc) from None
        with resp:
            if resp.status_code != 200:
                raise self._http_error(path, resp)
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype != "text/event-stream":
                raise EndpointIncompatible(
                    f"{self._where(path)}: asked to stream, it answered Content-Type {ctype or 'none'!r}, not an SSE stream "
                    "(text/event-stream): the endpoint does not stream"
                )
            try:
                return self._read_events(resp, sent, end, path)
            except requests.RequestException as exc:
                raise self._failure(path, exc, streaming=True) from None
            except OSError:  # a socket error under urllib3's wrappers
                raise EndpointUnavailable(f"{self._where(path)}: the connection dropped mid-answer") from None

    def _read_events(self, resp: requests.Response, sent: float, end: float, path: str) -> StreamTiming:
        chunks: list[float] = []
        usage: dict[str, Any] | None = None
        done = False
        for now, event in _sse_events(resp, end, self._where(path)):
            if event == "[DONE]":
                done = True
                break
            try:
                doc = json.loads(event)
            except ValueError:
                raise EndpointIncompatible(f"{self._where(path)}: an SSE event is not JSON: {self._scrub(event)}") from None
            if not isinstance(doc, dict):
                raise EndpointIncompatible(f"{self._where(path)}: an SSE event is not a JSON object")
            if "error" in doc:
                raise EndpointUnavailable(f"{self._where(path)}: the stream ended with an error: {self._scrub(json.dumps(doc['error']))}")
            if isinstance(doc.get("usage"), dict):
                usage = doc["usage"]
            for choice in doc.get("choices") or ():
                # completions: choices[].text; chat: choices[].delta.content (a role-only first chunk has none)
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(choice, dict) and (choice.get("text") or (isinstance(delta, dict) and delta.get("content"))):
                    chunks.append(now)
                    break
        if not done:
            raise EndpointUnavailable(f"{self._where(path)}: the stream ended before 'data: [DONE]'")
        if not chunks:
            raise EndpointIncompatible(f"{self._where(path)}: the stream carried no generated text")
        if usage is None:
            raise EndpointIncompatible(
                f"{self._where(path)}: the stream has no 'usage' (stream_options.include_usage is not supported); "
                "token counts are needed"
            )
        return StreamTiming(sent, tuple(chunks), _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _sse_events(resp: requests.Response, end: float, where: str) -> Iterator[tuple[float, str]]:
    """(arrival time, data) of each SSE event, within the deadline and MAX_STREAM_BYTES."""
    raw = resp.raw
    read1 = getattr(raw, "read1", None)
    buf = b""
    total = 0
    while True:
        if time.monotonic() > end:
            raise EndpointUnavailable(f"{where}: the request passed its deadline")
        _set_read_timeout(resp, end)
        data = read1(_READ) if read1 is not None else raw.read(1)
        now = time.monotonic()
        if not data:
            return
        total += len(data)
        if total > MAX_STREAM_BYTES:
            raise EndpointIncompatible(f"{where}: the stream exceeds {MAX_STREAM_BYTES} bytes")
        buf += data.replace(b"\r\n", b"\n")
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            lines = [ln[5:].lstrip() for ln in block.split(b"\n") if ln.startswith(b"data:")]
            if lines:
                yield now, b"\n".join(lines).decode("utf-8", "replace").strip()


def _set_read_timeout(resp: requests.Response, end: float) -> None:
    """Bound the next socket read by what is left of the deadline."""
    try:
        sock = resp.raw.connection.sock if resp.raw.connection is not None else None
        if sock is not None:
            sock.settimeout(max(end - time.monotonic(), 0.001))
    except AttributeError:  # another urllib3 layout: the request's own read timeout still applies
        pass


def _bounded_body(resp: requests.Response, limit: int, end: float) -> bytes | None:
    out = b""
    for part in resp.iter_content(_READ):
        out += part
        if len(out) > limit or time.monotonic() > end:
            resp.close()
            return None
    return out


def _bounded_text(resp: requests.Response, limit: int) -> str:
    try:
        data = resp.raw.read(limit)
    except Exception:  # an error body is best effort
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else ""


def run_all(fn: Callable[[_T], _R], items: Sequence[_T], limit: int, *, start_together: bool = False) -> list[_R]:
    """`fn` over `items` in at most `limit` daemon threads; results in item order.

    The first exception is raised once every started call has ended or `fn` failed; daemon
    threads never hold up a Ctrl-C (the wait is interruptible) or the interpreter's exit.
    With `start_together`, the first `limit` calls start at one barrier (a decode batch).
    """
    work: queue.Queue[int] = queue.Queue()
    for i in range(len(items)):
        work.put(i)
    results: dict[int, _R] = {}
    errors: list[BaseException] = []
    finished: queue.Queue[None] = queue.Queue()
    workers = min(limit, len(items))
    barrier = threading.Barrier(workers) if start_together and workers > 1 else None

    def worker() -> None:
        first = True
        while not errors:
            try:
                i = work.get_nowait()
            except queue.Empty:
                break
            if first and barrier is not None:
                try:
                    barrier.wait(timeout=60)
                except threading.BrokenBarrierError:
                    pass
            first = False
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # handed to the caller's thread
                errors.append(exc)
                if barrier is not None:
                    barrier.abort()
                break
        finished.put(None)

    for _ in range(workers):
        threading.Thread(target=worker, daemon=True).start()
    for _ in range(workers):
        finished.get()  # an interruptible wait: Ctrl-C lands here
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(items))]
