"""`dynplan serve` as a process: flags, health on a real port, graceful exit on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keda_client import KedaClient
from procs import ServeProcess, closed_port
from scaler.cli import main
from service_harness import test_plan, trigger, write_plans

REPO = Path(__file__).resolve().parents[2]


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    result = CliRunner().invoke(main, ["serve", "--plans", str(tmp_path), "--tls-cert", str(cert)])
    assert result.exit_code == 2 and "give both a certificate and its key" in result.output
    result = CliRunner().invoke(main, ["serve", "--plans", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "--plans" in result.output
    result = CliRunner().invoke(main, ["serve", "--plans", str(tmp_path), "--listen", "nohostport"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
    result = CliRunner().invoke(main, ["serve", "--plans", str(tmp_path), "--log-format", "xml"])
    assert result.exit_code == 2 and "'json', 'text'" in result.output


@pytest.mark.parametrize("flags", [[], ["--one-process"]], ids=["two-processes", "one-process"])
async def test_serve_process_health_and_sigterm(tmp_path: Path, flags: list[str]) -> None:
    write_plans(tmp_path, [test_plan("llama-8b", "http://127.0.0.1:1", "x")])
    serve = ServeProcess(["--plans", str(tmp_path), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", *flags])
    proc = serve.proc
    try:
        assert serve.wait_event("listening", 20), serve.log()
        [listening] = serve.named("listening")
        port = listening["port"]
        assert listening["plans"] == 1 and listening["level"] == "INFO" and listening["logger"] == "dynplan.server"
        # the decider's process id, unless everything runs in this one
        assert ("deciderPid" in listening) == (not flags) and listening.get("deciderPid") != proc.pid
        address = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(address) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("liveness", "readiness"):
                resp = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
            spec = await KedaClient(ch, address).metric_spec(trigger("llama-8b", "decode"))
            assert spec.metricSpecs[0].metricName == "dynplan-llama-8b-decode"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - t0 < 8
        # One format on the whole stream (the default, json): every line is a JSON object,
        # decision failures (Prometheus is down here) as events with their fields.
        docs = [json.loads(line) for line in serve.lines]
        failed = [d for d in docs if d.get("event") == "decision_failed"]
        assert failed and failed[0]["plan"] == "llama-8b" and "cannot connect" in failed[0]["error"]
        assert {"time", "level", "logger"} <= set(docs[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_explain_time_and_failure_exit_codes(tmp_path: Path) -> None:
    from procs import closed_port
    from scaler.clikit import Instant

    # explain --at and profile learn --until read times with the same parser
    parse = Instant().convert
    assert parse("2026-01-01T00:00:00Z", None, None) == 1767225600.0
    assert parse("2026-01-01T01:00:00+01:00", None, None) == 1767225600.0
    assert parse("1767225600.5", None, None) == 1767225600.5
    naive = CliRunner().invoke(main, ["explain", "-f", "unused.yaml", "--at", "2026-01-01T00:00:00"])
    assert naive.exit_code == 2 and "has no time zone (add Z for UTC)" in naive.output
    write_plans(tmp_path, [test_plan("llama-8b", f"http://127.0.0.1:{closed_port()}", "x")])
    plan = str(tmp_path / "llama-8b-inference.yaml")
    bad = CliRunner().invoke(main, ["explain", "-f", plan, "--at", "yesterday-ish"])
    assert bad.exit_code == 2 and "--at" in bad.output
    down = CliRunner().invoke(main, ["explain", "-f", plan])
    assert down.exit_code == 3 and "Connection refused" in down.output


def test_unusable_tls_key_and_ports_in_use_exit_2_naming_the_flag(tmp_path: Path) -> None:
    """L11: a garbage --tls-key, and the gRPC or the metrics port taken, were exit 1 with a
    traceback (grpcio's "Failed to bind", asyncio's OSError)."""
    import socket

    write_plans(tmp_path, [test_plan("llama-8b", "http://127.0.0.1:1", "x")])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("garbage\n")
    cert = tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=dynplan-test"], check=True, capture_output=True, timeout=30)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = f"127.0.0.1:{closed_port()}"
        cases = {
            "--tls-key": ["--tls-cert", str(cert), "--tls-key", str(garbage), "--listen", free, "--metrics-listen", ""],
            "--listen": ["--listen", f"127.0.0.1:{port}", "--metrics-listen", ""],
            "--metrics-listen": ["--listen", free, "--metrics-listen", f"127.0.0.1:{port}"],
        }
        procs = {
            flag: subprocess.Popen([sys.executable, "-m", "scaler.cli", "serve", "--plans", str(tmp_path), *args],
                                   cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
            for flag, args in cases.items()
        }
        results = {flag: (p.wait(30), p.communicate()[1]) for flag, p in procs.items()}
    for flag, (rc, stderr) in results.items():
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert rc == 2 and "Traceback" not in stderr, (flag, rc, stderr)
        assert len(errors) == 1 and errors[0].startswith(f"error: {flag}: "), (flag, stderr)
    assert f"{garbage}: not a PEM private key for {cert}" in results["--tls-key"][1]
    assert f"cannot listen on 127.0.0.1:{port} (address in use" in results["--listen"][1]
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in results["--metrics-listen"][1]


async def test_a_second_scaler_on_the_same_port_fails_to_bind(tmp_path: Path) -> None:
    """gRPC sets SO_REUSEPORT by default: a second `dynplan serve` on a taken port used to
    bind, and KEDA's connections were split between the two."""
    import pytest

    from scaler.errors import InputError
    from scaler.service.server import ScalerServer, ServeConfig
    from service_harness import running_scaler

    write_plans(tmp_path, [test_plan("llama-8b", "http://127.0.0.1:1", "x")])
    async with running_scaler(tmp_path) as (first, _keda):
        second = ScalerServer(ServeConfig(plans_dir=tmp_path, listen=f"127.0.0.1:{first.port}", metrics_listen=None))
        with pytest.raises(InputError, match=rf"^--listen: cannot listen on 127\.0\.0\.1:{first.port} \(address in use"):
            await second.start()
        await second.stop(grace=0)
