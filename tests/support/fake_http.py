"""A fake HTTP server standing in for Prometheus where the real one cannot behave that way."""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHTTPServer:
    """A local HTTP server answering every request with `status` and `body` after `delay`
    seconds, and recording each request's query parameters and headers in `requests`.

    Stands in for Prometheus only where the real one cannot behave that way: hanging
    (delay > timeout), a proxy's error page in front of it, or to observe what a client or
    promtool sends.
    """

    EMPTY_VECTOR = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
    EMPTY_MATRIX = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'

    def __init__(self, delay: float = 0.0, body: bytes = EMPTY_VECTOR, status: int = 200) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                query = urllib.parse.urlparse(self.path).query
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    query += "&" + self.rfile.read(length).decode()
                outer.requests.append(
                    {"path": urllib.parse.urlparse(self.path).path,
                     "params": dict(urllib.parse.parse_qsl(query)),
                     "headers": dict(self.headers)}
                )
                with outer._lock:
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                try:
                    if outer._stop.wait(outer.delay):
                        return
                finally:
                    with outer._lock:
                        outer.inflight -= 1
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json" if outer.body.startswith(b"{") else "text/plain")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.delay = delay
        self.body = body
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0  # most requests being answered at once
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

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
