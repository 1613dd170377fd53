"""`dynplan serve` as a process against a Prometheus that serves poisoned windows (red-team
L2): a request count of 1e308 in the newest windows at start-up. Before, every decision
raised OverflowError, retried forever (UNAVAILABLE for good, and a restart replayed the same
window). Now the warm-up skips the poisoned windows (counted, logged), serves the decision on
the newest good one, and the next live window decides."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from procs import ServeProcess
from scaler.core.replay import grid_end
from service_harness import T, test_plan, write_plans

REPO = Path(__file__).resolve().parents[2]
SETTLE = T / 4  # the loop's default settle delay for T = 10 s
VALUES = {"requests_": 500.0, "input_sequence": 3000.0, "output_sequence": 150.0, "time_to_first_token": 0.05,
          "inter_token_latency": 0.005, "request_duration": 3.0}


class PoisonProm(BaseHTTPRequestHandler):
    """Instant and range queries like Prometheus: one series per traffic query, with the
    request count 1e308 at the grid times in `poison`; worker and ready series empty."""

    poison: frozenset[float] = frozenset()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        self._answer(urllib.parse.parse_qs(self.rfile.read(n).decode()))

    def do_GET(self) -> None:
        self._answer(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))

    def _value(self, query: str, t: float) -> str | None:
        for needle, value in VALUES.items():
            if needle in query and "worker" not in query:
                if needle == "requests_" and any(abs(t - p) < 0.5 for p in self.poison):
                    return "1e308"
                return repr(value)
        return None

    def _answer(self, params: dict[str, list[str]]) -> None:
        q = params.get("query", [""])[-1]
        if self.path.startswith("/api/v1/query_range"):
            start, end, step = (float(params[k][-1]) for k in ("start", "end", "step"))
            times = [start + i * step for i in range(int(math.floor((end - start) / step + 1e-9)) + 1)]
            points = [[t, v] for t in times if (v := self._value(q, t)) is not None]
            result = [{"metric": {}, "values": points}] if points else []
            data = {"resultType": "matrix", "result": result}
        else:
            t = float(params.get("time", [time.time()])[-1])
            v = self._value(q, t)
            data = {"resultType": "vector", "result": [] if v is None else [{"metric": {}, "value": [t, v]}]}
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_poisoned_windows_are_skipped_at_start_up_and_the_next_window_decides(tmp_path: Path) -> None:
    started = time.time()
    newest = grid_end(started - SETTLE, T)  # the newest closed window when serve starts (or the one before)
    PoisonProm.poison = frozenset(newest - k * T for k in range(4))
    prom = ThreadingHTTPServer(("127.0.0.1", 0), PoisonProm)
    prom.daemon_threads = True
    threading.Thread(target=prom.serve_forever, daemon=True).start()
    doc = test_plan("llama-8b", f"http://127.0.0.1:{prom.server_address[1]}", "x")
    doc["spec"]["metrics"]["useRecordingRules"] = False
    write_plans(tmp_path, [doc])
    serve = ServeProcess(["--plans", str(tmp_path), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
    events = serve.events
    try:
        live = serve.wait_for(lambda evs: any(e.get("event") == "decision" and e.get("kind") == "throughput" for e in evs),
                              T + SETTLE + 10)
        assert live, serve.log()[-3000:]
        rejected = [e for e in events if e.get("event") == "window_rejected"]
        assert sorted(e["windowEnd"] for e in rejected) == sorted(PoisonProm.poison)
        assert {(e["kind"], e["reason"]) for e in rejected} == {("warmup", "absurd_requests")}
        [warmup] = [e for e in events if e.get("event") == "decision" and e.get("kind") == "warmup"]
        # the newest good window before the poisoned ones; or, when start-up took the clock
        # past the next window's settle delay, that (good) window, with all four in history
        assert warmup["windowEnd"] in (newest - 4 * T, newest + T)
        assert warmup["decision"]["throughput"]["observedRate"] == 50.0
        [tick] = [e for e in events if e.get("event") == "decision" and e.get("kind") == "throughput"]
        assert tick["windowEnd"] > newest and tick["decision"]["throughput"]["observedRate"] == 50.0
        assert not [e for e in events if e.get("level") == "ERROR"], "no tracebacks"
        [listening] = [e for e in events if e.get("event") == "listening"]
        text = urllib.request.urlopen(f"http://127.0.0.1:{listening['metricsPort']}/metrics", timeout=5).read().decode()
        want = 'dynplan_windows_rejected_total{namespace="inference",plan="llama-8b",reason="absurd_requests"} 4.0'
        assert want in text
        assert 'dynplan_decision_lag_seconds{namespace="inference",plan="llama-8b"}' in text
    finally:
        serve.stop()
        prom.shutdown()
        prom.server_close()
