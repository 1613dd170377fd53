"""A real Prometheus server for tests (Debian's `prometheus` and `promtool` binaries).

Used by the tests in tests/integration/prometheus/ (the folder marks them `prometheus`).

`PromFactory` starts servers in temp dirs on a free loopback port, optionally with scrape
targets (scrape and rule evaluation every 1 s), rule files, and preloaded history
(OpenMetrics text -> `promtool tsdb create-blocks-from openmetrics`), waits for /-/ready,
and stops every server it started (SIGTERM, then SIGKILL) when closed. Missing binaries
FAIL the test with instructions: these tests never skip.

Timing facts (Prometheus 2.42): /-/ready in ~0.2 s; scraping starts after service
discovery's first 5 s tick, so the first scraped sample appears after 5-6 s and the
first rule output after 7-8 s; use `wait_for_value` rather than sleeping.
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import pytest
import yaml

_LISTEN = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')


def binaries() -> tuple[str, str]:
    """Paths of prometheus and promtool, or a test failure saying how to install them."""
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH: these tests need a real Prometheus. "
            "Install Debian's package: `make prometheus` (or `sudo apt-get install -y "
            "--no-install-recommends prometheus`).",
            pytrace=False,
        )
    return found["prometheus"], found["promtool"]  # type: ignore[return-value]


@dataclass
class PromServer:
    """One running Prometheus: `url`, its files in `dir`, `stop()`/`restart()`."""

    dir: Path
    config: Path
    data: Path
    log: Path
    proc: Optional[subprocess.Popen] = None
    port: int = 0
    _binary: str = field(default="prometheus", repr=False)
    web_config: Optional[Path] = None  # TLS: served over https when set

    @property
    def url(self) -> str:
        scheme = "https" if self.web_config else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _open(self, url: str, *, method: str = "GET", timeout: float = 5) -> Any:
        # the fixture's own checks do not verify the test certificate; clients under test do
        ctx = ssl._create_unverified_context() if self.web_config else None
        return urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout, context=ctx)

    def start(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            raise RuntimeError("already running")
        log = open(self.log, "ab")
        offset = self.log.stat().st_size
        try:
            self.proc = subprocess.Popen(
                [
                    self._binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.data}",
                    "--web.listen-address=127.0.0.1:0",
                    "--web.enable-lifecycle",
                    "--web.enable-admin-api",
                    "--storage.tsdb.retention.time=10y",
                    "--log.level=info",
                    *([f"--web.config.file={self.web_config}"] if self.web_config else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        try:
            while True:
                text = self.log.read_bytes()[offset:].decode(errors="replace")
                m = _LISTEN.search(text)
                if m:
                    self.port = int(m.group(1))
                    break
                self._check_alive(deadline, "never logged 'Listening on'")
                time.sleep(0.05)
            while True:
                try:
                    with self._open(self.url + "/-/ready", timeout=1) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
                self._check_alive(deadline, "never became ready")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def _check_alive(self, deadline: float, what: str) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None or time.monotonic() > deadline:
            tail = self.log.read_text(errors="replace")[-3000:]
            status = "exited" if self.proc.poll() is not None else "timed out"
            pytest.fail(f"prometheus {status}: {what}; log:\n{tail}", pytrace=False)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        """Stop and start on the same config and data (the port changes)."""
        self.stop()
        self.start()

    def reload(self) -> None:
        with self._open(self.url + "/-/reload", method="POST") as r:
            assert r.status == 200

    def query(self, q: str, at: Optional[float] = None) -> list[dict[str, Any]]:
        """Instant query, returning the raw result list (test assertions only)."""
        params = {"query": q}
        if at is not None:
            params["time"] = f"{at:.3f}"
        with self._open(self.url + "/api/v1/query?" + urllib.parse.urlencode(params)) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def backfill_rules(self, rule_file: Path, start: int, end: int, eval_interval: str = "15s") -> None:
        """Evaluate recording rules over past data (`promtool tsdb create-blocks-from rules`),
        add the blocks to this server's data dir and restart it so they are queryable."""
        _, promtool = binaries()
        out = self.dir / "rule-blocks"
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run(
            [
                promtool, "tsdb", "create-blocks-from", "rules",
                f"--url={self.url}", f"--start={start}", f"--end={end}",
                f"--eval-interval={eval_interval}", f"--output-dir={out}", str(rule_file),
            ],
            capture_output=True, text=True, timeout=60,
        )
        if proc.returncode != 0:
            pytest.fail(f"promtool create-blocks-from rules failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
        self.stop()
        for block in out.iterdir():
            if block.is_dir():
                shutil.move(str(block), self.data / block.name)
        self.start()


def write_config(
    path: Path,
    *,
    scrape_targets: Sequence[str] = (),
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> None:
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [],
    }
    if scrape_targets:
        cfg["scrape_configs"].append(
            {"job_name": "targets", "scrape_timeout": "1s" if scrape_interval == "1s" else "10s",
             "static_configs": [{"targets": list(scrape_targets)}]}
        )
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


class PromFactory:
    """Starts Prometheus servers on demand; `close()` stops all of them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.servers: list[PromServer] = []

    def __call__(
        self,
        *,
        scrape_targets: Sequence[str] = (),
        rule_files: Sequence[Path] = (),
        history: Union[str, None, Any] = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        tls: Optional[tuple[Path, Path]] = None,
    ) -> PromServer:
        """Start a server. `history`: OpenMetrics text or an object with `.text()` (e.g.
        `scaler.devtools.backfill.OpenMetricsWriter`), backfilled before start. `tls`:
        (certificate, key) files: serve https only."""
        prometheus, promtool = binaries()
        d = self.base / f"prom{len(self.servers)}"
        d.mkdir(parents=True)
        data = d / "data"
        data.mkdir()
        cfg = d / "prometheus.yml"
        write_config(
            cfg, scrape_targets=scrape_targets, rule_files=rule_files,
            scrape_interval=scrape_interval, evaluation_interval=evaluation_interval,
        )
        if history is not None:
            text = history if isinstance(history, str) else history.text()
            om = d / "history.om"
            om.write_text(text)
            proc = subprocess.run(
                [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
                capture_output=True, text=True, timeout=120,
            )
            if proc.returncode != 0:
                pytest.fail(f"promtool create-blocks-from openmetrics failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
        web = None
        if tls is not None:
            web = d / "web.yml"
            web.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": str(tls[0]), "key_file": str(tls[1])}}))
        server = PromServer(d, cfg, data, d / "prometheus.log", _binary=prometheus, web_config=web)
        self.servers.append(server)
        server.start()
        return server

    def close(self) -> None:
        for s in self.servers:
            s.stop()


def wait_for_value(
    server: PromServer,
    query: str,
    predicate: Callable[[list[dict[str, Any]]], bool] = bool,
    timeout: float = 20.0,
) -> list[dict[str, Any]]:
    """Poll an instant query until `predicate(result)` holds (default: non-empty); fail on timeout."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = server.query(query)
        if predicate(result):
            return result
        time.sleep(0.2)
    pytest.fail(f"query {query!r} did not reach the expected value in {timeout}s; last result: {result}", pytrace=False)
