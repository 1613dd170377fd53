"""TLS and mTLS on the gRPC server, with certificates made by the openssl CLI in the test."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from keda_client import KedaClient
from scaler.errors import InputError
from scaler.service.logs import event_of
from scaler.service.server import TlsConfig
from service_harness import rpc_error, running_scaler, test_plan, trigger, write_plans


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("the openssl CLI is needed to make test certificates (apt-get install openssl)", pytrace=False)
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server cert for 127.0.0.1/localhost and a client cert, all signed by the CA."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=dynplan-test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=dynplan-{name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def _spec(channel: grpc.aio.Channel, address: str) -> str:
    keda = KedaClient(channel, address, enable_tls=True)
    spec = await keda.metric_spec(trigger("llama-8b", "prefill"), timeout=3)
    return spec.metricSpecs[0].metricName


async def test_tls_server(tmp_path: Path, pki: dict[str, Path]) -> None:
    write_plans(tmp_path, [test_plan("llama-8b", "http://127.0.0.1:1", "x")])
    tls = TlsConfig(pki["server.crt"], pki["server.key"])
    async with running_scaler(tmp_path, tls=tls) as (server, _plain):
        address = f"127.0.0.1:{server.port}"
        creds = grpc.ssl_channel_credentials(root_certificates=pki["ca.crt"].read_bytes())
        async with grpc.aio.secure_channel(address, creds) as ch:
            assert await _spec(ch, address) == "dynplan-llama-8b-prefill"
        async with grpc.aio.insecure_channel(address) as ch:
            err = await rpc_error(_spec(ch, address))
            assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_requires_a_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    write_plans(tmp_path, [test_plan("llama-8b", "http://127.0.0.1:1", "x")])
    tls = TlsConfig(pki["server.crt"], pki["server.key"], client_ca=pki["ca.crt"])
    async with running_scaler(tmp_path, tls=tls) as (server, _plain):
        address = f"127.0.0.1:{server.port}"
        ca = pki["ca.crt"].read_bytes()
        with_cert = grpc.ssl_channel_credentials(ca, pki["client.key"].read_bytes(), pki["client.crt"].read_bytes())
        async with grpc.aio.secure_channel(address, with_cert) as ch:
            assert await _spec(ch, address) == "dynplan-llama-8b-prefill"
        async with grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca)) as ch:
            err = await rpc_error(_spec(ch, address))
            assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_rotated_certificate_is_used_without_restart(tmp_path: Path, pki: dict[str, Path]) -> None:
    (tmp_path / "other-pki").mkdir()
    other = make_pki(tmp_path / "other-pki")  # a second CA: clients trusting only it see the change
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki["server.crt"], live / "tls.crt")
    shutil.copy(pki["server.key"], live / "tls.key")
    plans = tmp_path / "plans"
    write_plans(plans, [test_plan("llama-8b", "http://127.0.0.1:1", "x")])
    async with running_scaler(plans, tls=TlsConfig(live / "tls.crt", live / "tls.key")) as (server, _plain):
        address = f"127.0.0.1:{server.port}"
        trusts_other = grpc.ssl_channel_credentials(root_certificates=other["ca.crt"].read_bytes())
        async with grpc.aio.secure_channel(address, trusts_other) as ch:
            err = await rpc_error(_spec(ch, address))
            assert err.code() == grpc.StatusCode.UNAVAILABLE
        # Rotate (as a Secret update would): the next connection gets the new certificate.
        shutil.copy(other["server.key"], live / "tls.key")
        shutil.copy(other["server.crt"], live / "tls.crt")
        async with grpc.aio.secure_channel(address, trusts_other) as ch:
            assert await _spec(ch, address) == "dynplan-llama-8b-prefill"


async def test_rotation_to_unparsable_files_keeps_the_certificate_and_logs_once(
    tmp_path: Path, pki: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """L18: garbage in the rotated files used to be kept silently."""
    caplog.set_level(logging.INFO, logger="dynplan.server")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki["server.crt"], live / "tls.crt")
    shutil.copy(pki["server.key"], live / "tls.key")
    plans = tmp_path / "plans"
    write_plans(plans, [test_plan("llama-8b", "http://127.0.0.1:1", "x")])
    async with running_scaler(plans, tls=TlsConfig(live / "tls.crt", live / "tls.key")) as (server, _plain):
        address = f"127.0.0.1:{server.port}"
        trusts = grpc.ssl_channel_credentials(root_certificates=pki["ca.crt"].read_bytes())
        (live / "tls.key").write_text("garbage\n")
        for _ in range(3):  # three new connections, three handshakes
            async with grpc.aio.secure_channel(address, trusts) as ch:
                assert await _spec(ch, address) == "dynplan-llama-8b-prefill"
    failed = [e for e in map(event_of, caplog.records) if e is not None and e["event"] == "tls_reload_failed"]
    assert len(failed) == 1, failed
    assert failed[0]["key"] == str(live / "tls.key") and "not a PEM private key" in failed[0]["error"]
    assert failed[0]["keeping"] == "the current certificate"


def test_check_names_the_flag(tmp_path: Path, pki: dict[str, Path]) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("garbage\n")
    with pytest.raises(InputError, match=r"^--tls-key: .*garbage\.pem: not a PEM private key for"):
        TlsConfig(pki["server.crt"], garbage).check()
    with pytest.raises(InputError, match=r"^--tls-cert: .*garbage\.pem: not a PEM certificate"):
        TlsConfig(garbage, pki["server.key"]).check()
    with pytest.raises(InputError, match=r"^--tls-client-ca: .*garbage\.pem: not a PEM certificate"):
        TlsConfig(pki["server.crt"], pki["server.key"], client_ca=garbage).check()
    with pytest.raises(InputError, match=r"^--tls-key: .*client\.key: not a PEM private key for .*server\.crt"):
        TlsConfig(pki["server.crt"], pki["client.key"]).check()  # a valid key, not this certificate's
    TlsConfig(pki["server.crt"], pki["server.key"], client_ca=pki["ca.crt"]).check()
