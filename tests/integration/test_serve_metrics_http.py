"""/metrics over HTTP: served on the event loop (no thread per connection), idle
connections closed after the read timeout, a connection cap that cannot lock scrapes out."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from pathlib import Path

import pytest

from procs import closed_port
from scaler.errors import InputError
from scaler.service.server import ScalerServer, ServeConfig
from service_harness import raw_http, running_scaler, scrape, test_plan, write_plans


async def test_300_idle_connections_cost_no_thread_and_are_closed(tmp_path: Path) -> None:
    write_plans(tmp_path, [test_plan("alpha", f"http://127.0.0.1:{closed_port()}", "x")])
    async with running_scaler(tmp_path, metrics_read_timeout=1.0, metrics_max_connections=64) as (server, _keda):
        assert "dynplan_plans_loaded 1.0" in await scrape(server)
        threads = threading.active_count()
        # Connected from this event loop (the server's too): no client thread either.
        conns = [await asyncio.open_connection("127.0.0.1", server.metrics_port) for _ in range(300)]
        try:
            await asyncio.sleep(0.3)
            assert threading.active_count() == threads  # before: 300 more
            # Over the cap, the oldest idle connections were closed to make room.
            assert sum(reader.at_eof() for reader, _ in conns) == 300 - 64
            # A scrape still answers while the 64 newest sit idle.
            t0 = time.monotonic()
            assert "dynplan_plans_loaded 1.0" in await scrape(server)
            assert time.monotonic() - t0 < 1.0
            await asyncio.sleep(1.3)  # the read timeout
            assert sum(reader.at_eof() for reader, _ in conns) == 300
        finally:
            for _, writer in conns:
                writer.close()


async def test_http_answers(tmp_path: Path) -> None:
    write_plans(tmp_path, [test_plan("alpha", f"http://127.0.0.1:{closed_port()}", "x")])
    async with running_scaler(tmp_path) as (server, _keda):
        port = server.metrics_port
        assert port is not None
        ok = await raw_http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in head
        assert b"dynplan_plans_loaded 1.0" in body
        zipped = await raw_http(port, b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n")
        head, _, body = zipped.partition(b"\r\n\r\n")
        assert b"Content-Encoding: gzip" in head and b"dynplan_plans_loaded 1.0" in gzip.decompress(body)
        openmetrics = await raw_http(port, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n")
        assert b"application/openmetrics-text" in openmetrics and openmetrics.rstrip().endswith(b"# EOF")
        assert (await raw_http(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\n")
        assert (await raw_http(port, b"GET /other HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await raw_http(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await raw_http(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        # A request head over 16 KiB is dropped, not buffered.
        assert await raw_http(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n") == b""
        assert "dynplan_plans_loaded 1.0" in await scrape(server)


async def test_metrics_port_in_use_names_the_flag(tmp_path: Path) -> None:
    write_plans(tmp_path, [test_plan("alpha", f"http://127.0.0.1:{closed_port()}", "x")])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ScalerServer(ServeConfig(plans_dir=tmp_path, listen="127.0.0.1:0", metrics_listen=f"127.0.0.1:{port}"))
        with pytest.raises(InputError, match=r"^--metrics-listen: cannot listen on 127\.0\.0\.1:\d+ \(Address already in use\)$"):
            await server.start()
        await server.stop(grace=0)
