"""A fake HTTP server standing in for Prometheus where the real one cannot behave that way."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping, Optional

# Values the "prometheus" mode can serve that no sane exporter reports (poisoned samples).
POISON_VALUES = ("1e308", "NaN", "+Inf", "-5")
# Series by a substring of their query (the first match wins), as fakeprom.py keys them.
SERIES_KEYS = (
    ("worker", "dynamo_frontend_worker_"),
    ("requests", "requests_"),
    ("isl", "input_sequence"),
    ("osl", "output_sequence"),
    ("ttft", "time_to_first_token"),
    ("itl", "inter_token_latency"),
    ("duration", "request_duration"),
)
DEFAULT_VALUES = {"requests": "50", "isl": "3000", "osl": "150", "ttft": "0.05", "itl": "0.005", "duration": "3"}


def series_key(query: str) -> str:
    for key, needle in SERIES_KEYS:
        if needle in query:
            return key
    return "other"


class FakeHTTPServer:
    """A local HTTP server recording each request's path, query parameters and headers in
    `requests`, and answering by `mode` (an attribute: switch it while the server runs):

    - "fixed" (default): `status` and `body` after `delay` seconds;
    - "hang": read the request, never answer (until close);
    - "drip": a 200 with a Content-Length, then one byte every `drip_interval` seconds for
      `drip_seconds` (a proxy trickling a body), then the connection is closed;
    - "garbage": 200 with bytes that are not JSON;
    - "echo": `status` with a text body quoting the request's headers (a proxy's debug page:
      what a client must never pass on as its error text unscrubbed);
    - "prometheus": answer instant and range queries like Prometheus, each series (by
      `series_key` of its query) with `values[key]` (DEFAULT_VALUES otherwise; worker and
      other series empty), except at the times in `poison` ({unix time: value}, within
      0.5 s), where `requests` has that value (POISON_VALUES are the usual suspects).

    Stands in for Prometheus only where the real one cannot behave that way: hanging,
    dripping, a proxy's error page in front of it, poisoned values on demand, or to observe
    what a client or promtool sends.
    """

    EMPTY_VECTOR = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
    EMPTY_MATRIX = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'
    GARBAGE = b"\x00\xffnot json at all{{{"

    def __init__(
        self,
        delay: float = 0.0,
        body: bytes = EMPTY_VECTOR,
        status: int = 200,
        *,
        mode: str = "fixed",
        values: Optional[Mapping[str, str]] = None,
        poison: Optional[Mapping[float, str]] = None,
        drip_seconds: float = 30.0,
        drip_interval: float = 1.0,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                parsed = urllib.parse.urlparse(self.path)
                query = parsed.query
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    query += "&" + self.rfile.read(length).decode()
                params = dict(urllib.parse.parse_qsl(query))
                outer.requests.append({"path": parsed.path, "params": params, "headers": dict(self.headers)})
                with outer._lock:
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                released = [False]

                def release() -> None:
                    # Once per request, when its answer starts: a client that has read the whole
                    # answer may send its next request before this thread gets back here.
                    with outer._lock:
                        if not released[0]:
                            released[0] = True
                            outer.inflight -= 1

                self.release = release  # type: ignore[attr-defined]
                try:
                    outer._answer(self, parsed.path, params)
                except OSError:
                    self.close_connection = True  # the client went away
                finally:
                    release()

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.delay = delay
        self.body = body
        self.status = status
        self.mode = mode
        self.values: dict[str, str] = dict(values or {})
        self.poison: dict[float, str] = dict(poison or {})
        self.drip_seconds = drip_seconds
        self.drip_interval = drip_interval
        self.requests: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0  # most requests received and not yet being answered, at once
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    # -- answers --------------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, length: Optional[int] = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json" if body.startswith(b"{") else "text/plain")
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    def _prometheus_body(self, path: str, params: Mapping[str, str]) -> bytes:
        key = series_key(params.get("query", ""))
        values = dict(DEFAULT_VALUES, **self.values)

        def at(t: float) -> str:
            if key == "requests":
                for when, value in self.poison.items():
                    if abs(t - when) < 0.5:
                        return value
            return values.get(key, "1")

        result: list[dict[str, Any]] = []
        if path.endswith("/query_range"):
            rtype = "matrix"
            if key in values:
                start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
                n = min(int(math.floor((end - start) / step + 1e-9)) + 1, 11000)
                result = [{"metric": {}, "values": [[start + i * step, at(start + i * step)] for i in range(n)]}]
        else:
            rtype = "vector"
            if key in values:
                t = float(params.get("time", time.time()))
                result = [{"metric": {}, "value": [t, at(t)]}]
        return json.dumps({"status": "success", "data": {"resultType": rtype, "result": result}}).encode()

    def _answer(self, h: BaseHTTPRequestHandler, path: str, params: Mapping[str, str]) -> None:
        mode = self.mode
        if mode == "hang":
            self._stop.wait()
            h.close_connection = True
            return
        if mode == "drip":
            body = self._prometheus_body(path, params)
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body) + 1_000_000))
            h.end_headers()
            h.wfile.flush()
            until = time.monotonic() + self.drip_seconds
            while time.monotonic() < until and not self._stop.is_set():
                h.wfile.write(b" ")
                h.wfile.flush()
                self._stop.wait(self.drip_interval)
            h.close_connection = True
            return
        if mode == "garbage":
            self._send(h, 200, self.GARBAGE)
            return
        if mode == "prometheus":
            self._send(h, 200, self._prometheus_body(path, params))
            return
        if mode == "echo":
            self._send(h, self.status, ("bad gateway; request headers: " + repr(dict(h.headers))).encode())
            return
        if self._stop.wait(self.delay):
            h.close_connection = True
            return
        h.release()  # type: ignore[attr-defined]
        self._send(h, self.status, self.body)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> "FakeHTTPServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
