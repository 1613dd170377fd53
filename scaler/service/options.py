"""What `dynplan serve` was asked to do: `ServeConfig` and `TlsConfig`.

Apart from the server so that the serving process (scaler.service.front) imports them
without the decision machinery.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import grpc

from scaler.errors import FieldError, InputError
from scaler.service.logs import log_event

if TYPE_CHECKING:
    from scaler.prom.credentials import Credentials

log = logging.getLogger("dynplan.server")


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Optional[Path] = None  # set -> mTLS: clients must present a cert it signed

    def _files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert, self.key, self.client_ca) if p is not None)

    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in self._files():
            st = p.stat()  # follows symlinks: Kubernetes secret updates swap them
            out.append((os.path.realpath(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def check(self) -> None:
        """Raise InputError naming the flag when a file is not PEM or the key does not match.

        gRPC accepts any bytes and fails later (a bind error at start, silently at
        rotation), so the files go through OpenSSL first."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        for flag, path in (("--tls-cert", self.cert), ("--tls-client-ca", self.client_ca)):
            if path is None:
                continue
            try:
                context.load_verify_locations(cadata=path.read_text(errors="replace"))
            except (ssl.SSLError, ValueError) as exc:
                raise InputError([FieldError(flag, "", f"{path}: not a PEM certificate ({exc.__class__.__name__}: {exc})")]) from None
        try:
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            raise InputError([FieldError("--tls-key", "", f"{self.key}: not a PEM private key for {self.cert} ({exc})")]) from None

    def _configuration(self) -> Any:
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([(self.key.read_bytes(), self.cert.read_bytes())], root_certificates=ca)

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up rotated files on the next new connection."""
        state: dict[str, Any] = {"stamp": self._stamp(), "failed": None}

        def failed(why: object, exc: BaseException) -> None:
            # Once per change, not once per handshake; the current certificate stays.
            if state["failed"] != why:
                state["failed"] = why
                log_event(log, "tls_reload_failed", logging.ERROR, cert=str(self.cert), key=str(self.key),
                          error=str(exc), keeping="the current certificate")

        def fetch() -> Any:
            # Called by gRPC before each new handshake: reload only when a file changed,
            # and keep the current certificate if the new files cannot be read or parsed.
            try:
                stamp = self._stamp()
            except OSError as exc:
                failed(str(exc), exc)
                return None
            if stamp == state["stamp"]:
                return None
            try:
                self.check()
                config = self._configuration()
            except (OSError, ValueError, InputError) as exc:
                failed(stamp, exc)
                return None
            state["stamp"], state["failed"] = stamp, None
            log_event(log, "tls_reloaded", cert=str(self.cert))
            return config

        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), fetch, require_client_authentication=self.client_ca is not None
        )


@dataclass(frozen=True)
class ServeConfig:
    plans_dir: Path
    listen: str = "0.0.0.0:9090"
    metrics_listen: Optional[str] = "0.0.0.0:9091"
    tls: Optional[TlsConfig] = None
    staleness_factor: float = 3.0
    heartbeat_seconds: float = 5.0
    reload_seconds: float = 2.0
    settle_seconds: Optional[float] = None
    warmup_intervals: Optional[int] = None
    grace_seconds: float = 5.0
    shutdown_seconds: float = 10.0  # SIGTERM -> exit within this, whatever is stuck
    metrics_read_timeout: float = 10.0  # a /metrics connection must send its request within this
    metrics_max_connections: int = 64
    # queries in flight per Prometheus access (threads); Prometheus runs 20 at once by
    # default (--query.max-concurrency), so 8 leaves room for its rules and dashboards
    prometheus_concurrency: int = 8  # = scaler.prom.client.DEFAULT_CONCURRENCY (a test keeps them equal)
    # where plans may point (URL prefixes; empty: anywhere) and the operator's credentials
    prometheus_allow: tuple[str, ...] = ()
    credentials: Optional[Credentials] = None
    # directories spec.profile may point into besides the plans directory; None: anywhere
    profile_roots: Optional[tuple[Path, ...]] = None
    # the namespace whose collected plan files may define plans of any namespace (the
    # scaler's own); None: none may (service/registry.py provenance_errors)
    trusted_namespace: Optional[str] = None
    # further processes the planning runs in (scaler.service.compute); 0: threads of the
    # deciding process (`dynplan serve`'s default)
    planner_processes: int = 0
    # plans act on due windows spread over up to this many seconds (LoopSettings.spread_seconds)
    decision_spread_seconds: float = 5.0
    # plans reading, planning and publishing at once (the rest wait their turn)
    decision_concurrency: int = 8
    # Decide in a child process (scaler.service.front): the serving process only answers
    # RPCs from the answers it is sent. False (`--one-process`, the in-process tests):
    # everything in this process.
    decider_process: bool = False
    # the decider process sets its logging up as the serving process did
    log_level: str = "info"
    log_format: str = "json"


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
