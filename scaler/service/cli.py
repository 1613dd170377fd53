"""`dynplan serve`: run the KEDA external scaler."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import click

from scaler.clikit import handle_errors
from scaler.errors import FieldError, InputError
from scaler.service.logs import LOG_FORMATS, configure_logging, log_event

if TYPE_CHECKING:
    from scaler.prom.credentials import Credentials

log = logging.getLogger("dynplan.server")


def _host_port(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    if not value:  # '' disables (--metrics-listen '')
        return None
    from scaler.service.options import split_host_port

    try:
        split_host_port(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _prometheus_access(allow: tuple[str, ...], credentials_file: Optional[str]) -> Optional[Credentials]:
    """Check --prometheus-allow and load --credentials (InputError, exit 2, naming the flag)."""
    from scaler.core.plan import http_url_problem
    from scaler.prom.credentials import load_credentials

    errors = [FieldError("--prometheus-allow", "", f"{i + 1}: {p}") for i, p in
              enumerate(http_url_problem(a) for a in allow) if p is not None]
    if errors:
        raise InputError(errors)
    return load_credentials(credentials_file) if credentials_file else None


def _trusted_namespace(value: Optional[str]) -> Optional[str]:
    """--trusted-namespace: a namespace name, or unset ('' from an empty POD_NAMESPACE too)."""
    from scaler.naming import is_dns1123_label

    if not value:
        return None
    if not is_dns1123_label(value):
        raise InputError([FieldError("--trusted-namespace", "", f"{value[:80]!r} is not a namespace name (a DNS-1123 label)")])
    return value


@click.command("serve")
@click.option("--plans", "plans_dir", required=True, type=click.Path(file_okay=False, exists=True), help="Directory of plan files (and the profiles they reference); reloaded on change.")
@click.option("--listen", default="0.0.0.0:9090", show_default=True, callback=_host_port, help="gRPC address (KEDA's scalerAddress).")
@click.option("--metrics-listen", default="0.0.0.0:9091", show_default=True, callback=_host_port, help="/metrics address; '' disables it.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="Server certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="Server private key (PEM).")
@click.option("--tls-client-ca", type=click.Path(dir_okay=False, exists=True), help="CA for client certificates: enables mTLS.")
@click.option("--staleness-factor", default=3.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Decisions older than this many intervals are not served (UNAVAILABLE).")
@click.option("--heartbeat-seconds", default=5.0, show_default=True, type=click.FloatRange(min=0.1), help="StreamIsActive heartbeat while active.")
@click.option("--reload-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0.1), help="How often the plans directory is checked.")
@click.option("--settle-seconds", type=click.FloatRange(min=0), help="Delay after a window closes before it is read (default min(15 s, interval/4)).")
@click.option("--shutdown-timeout", "shutdown_timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.5), help="After SIGTERM/SIGINT the process exits within this many seconds, whatever is stuck.")
@click.option("--prometheus-allow", "prometheus_allow", multiple=True, metavar="URL-PREFIX", help="Plans may only read Prometheus under this URL prefix (repeatable); without it any URL is allowed (a warning is logged).")
@click.option("--credentials", "credentials_file", type=click.Path(dir_okay=False), help="YAML file of named Prometheus credentials (token or basic auth, TLS, the URL prefixes each may be sent to); plans name an entry.")
@click.option("--profile-root", "profile_roots", multiple=True, type=click.Path(file_okay=False), metavar="DIR", help="Plans' spec.profile must lie under the plans directory or this directory (repeatable); without it a plan may name any directory (a warning is logged).")
@click.option("--trusted-namespace", envvar="POD_NAMESPACE", metavar="NAMESPACE", help="Plan files the collector copied from ConfigMaps of this namespace (the scaler's own: the manifests set POD_NAMESPACE) may define plans of any namespace; those of every other namespace only plans of their own. Default: $POD_NAMESPACE, else none.")
@click.option("--prometheus-concurrency", default=8, show_default=True, type=click.IntRange(1, 256), help="Queries in flight at once per Prometheus access, shared by the plans using it.")
@click.option("--one-process", is_flag=True, help="Read, plan and serve in one process (the default runs the decisions in a child process so that no decision work delays an RPC).")
@click.option("--planner-processes", default=0, show_default=True, type=click.IntRange(0, 64), help="Further child processes the planning is computed in (for many plans on many cores); 0 computes in threads of the deciding process.")
@click.option("--decision-spread", "decision_spread", default=5.0, show_default=True, type=click.FloatRange(0, 60), help="Plans act on a due window at fixed offsets spread over up to this many seconds (at most interval/6), so many plans do not wake at once; 0: all at once.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", default="json", show_default=True, type=click.Choice(LOG_FORMATS), help="Every line on stderr is a JSON object (json) or 'TIME LEVEL LOGGER: message' (text).")
@handle_errors
def serve(
    plans_dir: str,
    listen: str,
    metrics_listen: Optional[str],
    tls_cert: Optional[str],
    tls_key: Optional[str],
    tls_client_ca: Optional[str],
    staleness_factor: float,
    heartbeat_seconds: float,
    reload_seconds: float,
    settle_seconds: Optional[float],
    shutdown_timeout: float,
    prometheus_allow: tuple[str, ...],
    credentials_file: Optional[str],
    prometheus_concurrency: int,
    profile_roots: tuple[str, ...],
    trusted_namespace: Optional[str],
    one_process: bool,
    planner_processes: int,
    decision_spread: float,
    log_level: str,
    log_format: str,
) -> None:
    """Serve KEDA's external scaler protocol for every plan in --plans."""
    if bool(tls_cert) != bool(tls_key):
        raise InputError([FieldError("--tls-cert/--tls-key", "", "give both a certificate and its key")])
    if tls_client_ca and not tls_cert:
        raise InputError([FieldError("--tls-client-ca", "", "mTLS needs --tls-cert and --tls-key too")])
    credentials = _prometheus_access(prometheus_allow, credentials_file)
    trusted_namespace = _trusted_namespace(trusted_namespace)
    # Before the server's imports: their warnings go to the log stream in its format too.
    configure_logging(log_level, log_format)
    if not prometheus_allow:
        log_event(log, "prometheus_unrestricted", logging.WARNING,
                  detail="no --prometheus-allow: plans may point the scaler at any Prometheus URL")
    if not profile_roots:
        log_event(log, "profiles_unrestricted", logging.WARNING,
                  detail="no --profile-root: plans may make the scaler read any directory as a profile")
    from scaler.service.main import run
    from scaler.service.options import ServeConfig, TlsConfig

    tls = TlsConfig(Path(tls_cert), Path(tls_key), Path(tls_client_ca) if tls_client_ca else None) if tls_cert and tls_key else None
    config = ServeConfig(
        plans_dir=Path(plans_dir),
        listen=listen,
        metrics_listen=metrics_listen or None,
        tls=tls,
        staleness_factor=staleness_factor,
        heartbeat_seconds=heartbeat_seconds,
        reload_seconds=reload_seconds,
        settle_seconds=settle_seconds,
        shutdown_seconds=shutdown_timeout,
        prometheus_allow=tuple(prometheus_allow),
        credentials=credentials,
        prometheus_concurrency=prometheus_concurrency,
        profile_roots=tuple(Path(r) for r in profile_roots) if profile_roots else None,
        trusted_namespace=trusted_namespace,
        planner_processes=planner_processes,
        decision_spread_seconds=decision_spread,
        decider_process=not one_process,
        log_level=log_level,
        log_format=log_format,
    )
    run(config)
