"""`dynplan explain`: a decision with every input.

- `explain -f PLAN` reads Prometheus once the way `dynplan serve` starts up (the last N
  throughput windows on the same grid, replayed through the planner to warm the
  predictors), so its answer is the scaler's answer for the latest closed window.
  `--prometheus-url` reads another address (a port-forward) instead of the plan's. When a
  query returns nothing, the query and the plan's selector are printed, once per query.
- `explain --scaler HOST:PORT --plan NAMESPACE/NAME` asks a running scaler instead: its
  latest decision and what GetMetrics answers now, from the read-only
  `/decisions/<namespace>/<plan>` document on its metrics listener.

Advisory only: nothing is changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Optional

import click

from scaler.clikit import Instant, handle_errors
from scaler.core.attainment_sizing import AttainmentInputs
from scaler.core.decision import Decision, LoadPoolInputs, PoolDecision, Reason, ThroughputInputs
from scaler.errors import (
    DynplanError,
    FieldError,
    InputError,
    MetricsUnavailable,
    NoDecisionYet,
    PlanNotFound,
    StaleDecision,
)

if TYPE_CHECKING:
    from scaler.core.plan import Plan
    from scaler.planfile import LoadedPlan
    from scaler.prom.credentials import Credentials

MAX_DOCUMENT_BYTES = 4 << 20  # a decision document is a few KiB; a scaler answering more is not one
SCALER_TIMEOUT_SECONDS = 10.0  # the whole exchange with --scaler: connect, send, read
_HOST = re.compile(r"\A(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)\Z")
_NAME = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


@dataclass(frozen=True)
class Explanation:
    """The decision `explain` reports and where it came from."""

    plan: str
    namespace: str
    prometheus: str                  # the Prometheus URL read
    window_end: Optional[float]      # grid time of the throughput window decided on
    window_seconds: Optional[float]  # the throughput interval (None: load-only plan)
    replayed_windows: int            # windows replayed to warm the predictors
    decision: Decision
    # (series, query) of every query that returned nothing, once each, in reading order
    no_data: tuple[tuple[str, str], ...] = ()
    selector: str = ""               # the plan's selector, as the queries use it
    source: str = "prometheus"       # or "scaler HOST:PORT" (explain --scaler)
    serving: Optional[Mapping[str, Any]] = None  # what GetMetrics answers (explain --scaler)
    made_at: Optional[float] = None  # when the scaler made the decision (explain --scaler)

    def to_dict(self) -> dict[str, Any]:
        """The `--output json` document."""
        doc: dict[str, Any] = {
            "plan": self.plan,
            "namespace": self.namespace,
            "prometheus": self.prometheus,
            "windowEnd": self.window_end,
            "windowSeconds": self.window_seconds,
            "replayedWindows": self.replayed_windows,
            "decision": self.decision.to_dict(),
        }
        if self.serving is None:
            doc["noData"] = [{"series": k, "selector": self.selector, "query": q} for k, q in self.no_data]
        return doc


class _NoteEmpty:
    """Which queries returned nothing (no series at all), each noted once. A query that
    answered once is not reported even if another call came back empty; NaN is an answer
    (an idle window's mean), not an empty result."""

    def __init__(self) -> None:
        self.empty: dict[str, None] = {}  # insertion order: the order they were read
        self.answered: set[str] = set()

    def note(self, query: str, answered: bool) -> None:
        if answered:
            self.answered.add(query)
        else:
            self.empty.setdefault(query, None)

    def queries(self) -> list[str]:
        return [q for q in self.empty if q not in self.answered]


def _series_names(plan: "Plan") -> dict[str, str]:
    """query -> the series it reads (throughput, per-worker, ready replicas)."""
    from scaler.prom.reader import ready_queries, throughput_queries, worker_queries

    names: dict[str, str] = {}
    for table, prefix in ((throughput_queries(plan), ""), (worker_queries(plan), "worker "),
                          (ready_queries(plan), "ready replicas of ")):
        for key, query in table.items():
            names.setdefault(query, prefix + key)
    return names


def _no_data_lines(no_data: tuple[tuple[str, str], ...], sel: str) -> list[str]:
    if not no_data:
        return []
    lines = [f"no data for {len(no_data)} quer{'y' if len(no_data) == 1 else 'ies'} (selector {sel}):"]
    lines += [f"  {name}: {query}" for name, query in no_data]
    return lines


def _override_url(
    loaded: "LoadedPlan", url: str, credentials: "Optional[Credentials]"
) -> tuple["LoadedPlan", Optional[str]]:
    """The plan reading `url` instead of its own Prometheus URL, and a note for stderr.

    The plan's credential goes with it only where the credential's urlPrefixes allow:
    with --credentials, a URL outside them is an error (a port-forward is a new address:
    add it to that entry's prefixes in your copy of the file); without --credentials, the
    forwarded address is read without any credential (a port-forward to Prometheus itself
    usually bypasses the proxy that wanted one), and the note says so."""
    from scaler.core.plan import http_url_problem

    problem = http_url_problem(url)
    if problem is not None:
        raise InputError([FieldError("--prometheus-url", "", f"{url!r} {problem}"[:300])])
    access = loaded.plan.spec.metrics.prometheus
    note = None
    update: dict[str, Any] = {"url": url}
    name = access.credentials
    if name is not None and credentials is not None and name in credentials.entries:
        entry = credentials.entries[name]
        if not entry.allows(url):
            raise InputError([FieldError(
                "--prometheus-url", "",
                f"the plan's credentials {name!r} may only be sent to {', '.join(entry.url_prefixes)}, not {url}: "
                "add the forwarded address to that entry's urlPrefixes in your copy of the credentials file, "
                "or leave out --credentials to read it without them",
            )])
    elif name is not None and credentials is None:
        update["credentials"] = None
        note = f"note: the plan names credentials {name!r}; without --credentials, {url} is read without them"
    metrics = loaded.plan.spec.metrics.model_copy(update={"prometheus": access.model_copy(update=update)})
    plan = loaded.plan.model_copy(update={"spec": loaded.plan.spec.model_copy(update={"metrics": metrics})})
    return replace(loaded, plan=plan), note


async def explain_decision(
    plan_file: str,
    at: Optional[float],
    credentials_file: Optional[str] = None,
    prometheus_url: Optional[str] = None,
    notes: Optional[list[str]] = None,
) -> Explanation:
    """Load the plan, read Prometheus, decide the way `dynplan serve` starts up (with the
    credentials entry the plan names from `credentials_file`, as serve's --credentials).

    `prometheus_url` replaces the plan's URL (see `_override_url`); `notes` collects what
    to tell the user on stderr. A failed read raises MetricsUnavailable naming every query
    that returned nothing and the plan's selector."""
    # Imported here, not at the top: `dynplan --help` imports this module (numpy, scipy
    # and the HTTP stack load only when the command runs).
    from scaler.core.replay import latest_closed
    from scaler.planfile import load_plan
    from scaler.prom.client import PromClient, Sample, Series
    from scaler.prom.credentials import check_access, load_credentials
    from scaler.prom.reader import PromReader
    from scaler.service.loop import LoopSettings, PlanLoop
    from scaler.sources import selector

    loaded = load_plan(plan_file)
    credentials = load_credentials(credentials_file) if credentials_file else None
    if prometheus_url is not None:
        loaded, note = _override_url(loaded, prometheus_url, credentials)
        if note is not None and notes is not None:
            notes.append(note)
    access = loaded.plan.spec.metrics.prometheus
    credential = check_access(access, plan_file, credentials)
    clock = (lambda: at) if at is not None else time.time
    empty = _NoteEmpty()

    class Recording(PromClient):
        """Notes the queries that returned nothing, for the message."""

        async def instant(self, query: str, at: Optional[float] = None) -> list[Sample]:
            samples = await super().instant(query, at)
            empty.note(query, bool(samples))
            return samples

        async def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
            series = await super().range(query, start, end, step)
            empty.note(query, any(s.points for s in series))
            return series

    client = Recording(access, credential=credential, max_concurrency=4)
    plan = loaded.plan
    sel = selector(plan.spec.metrics.selector)

    def no_data() -> tuple[tuple[str, str], ...]:
        names = _series_names(plan)
        return tuple((names.get(q, "series"), q) for q in empty.queries())

    async with client:
        plan_loop = PlanLoop(loaded, PromReader(client), settings=LoopSettings(), clock=clock)
        interval = plan_loop.throughput_interval_seconds
        window_end: Optional[float] = None
        try:
            if interval is not None:
                window_end = latest_closed(plan_loop.clock(), interval, plan_loop.settle)
                decision = await plan_loop.warm_up(window_end)
                # a rejected newest window leaves the decision on an earlier one: name that one
                window_end = decision.timestamp or window_end
            else:
                decision = await plan_loop.tick_load()
        except MetricsUnavailable as exc:
            missing = no_data()
            if not missing:
                raise
            # The loop's message says what failed; the queries say where to look. Each
            # query once, however many windows or calls it came back empty for.
            lines = [str(exc), *_no_data_lines(missing, sel)]
            raise MetricsUnavailable("\n".join(lines)) from None
    return Explanation(
        plan=plan.name,
        namespace=plan.namespace,
        prometheus=access.url,
        window_end=window_end,
        window_seconds=interval,
        replayed_windows=plan_loop.replayed,
        decision=decision,
        no_data=no_data(),
        selector=sel,
    )


# -- explain --scaler ---------------------------------------------------------------------
def parse_scaler_address(value: str) -> tuple[str, int]:
    """HOST:PORT of a scaler's metrics listener (no scheme, no user, no path)."""
    host, sep, port = value.rpartition(":")
    if not sep or not _HOST.match(host) or not (port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise InputError([FieldError("--scaler", "", f"{value[:100]!r} is not HOST:PORT (the scaler's --metrics-listen address)")])
    return host.strip("[]"), int(port)


def parse_plan_ref(value: str) -> tuple[str, str]:
    """NAMESPACE/NAME of a plan."""
    namespace, sep, name = value.partition("/")
    if not sep or not all(_NAME.match(p) and len(p) <= 253 for p in (namespace, name)):
        raise InputError([FieldError("--plan", "", f"{value[:100]!r} is not NAMESPACE/NAME (DNS-1123 labels)")])
    return namespace, name


async def _http_get(host: str, port: int, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of one GET, the body at most MAX_DOCUMENT_BYTES."""
    reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.read(MAX_DOCUMENT_BYTES + 1)
        while len(body) <= MAX_DOCUMENT_BYTES:
            more = await reader.read(MAX_DOCUMENT_BYTES + 1 - len(body))
            if not more:
                break
            body += more
    finally:
        writer.close()
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"answered more than {MAX_DOCUMENT_BYTES >> 20} MiB")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError("did not answer HTTP")
    ctype = ""
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            ctype = value.strip()
    return int(parts[1]), ctype, body


async def fetch_scaler_document(address: str, namespace: str, name: str) -> dict[str, Any]:
    """The scaler's /decisions/<namespace>/<name> document; errors name --scaler or --plan."""
    host, port = parse_scaler_address(address)
    try:
        status, ctype, body = await asyncio.wait_for(
            _http_get(host, port, f"/decisions/{namespace}/{name}"), SCALER_TIMEOUT_SECONDS
        )
    except asyncio.TimeoutError:
        raise MetricsUnavailable(f"the scaler at {address} (--scaler) did not answer within {SCALER_TIMEOUT_SECONDS:g} s") from None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
        raise MetricsUnavailable(f"cannot read the scaler at {address} (--scaler): {why}") from None
    except ValueError as exc:
        raise MetricsUnavailable(f"the scaler at {address} (--scaler) {exc}") from None
    is_json = ctype.startswith("application/json")
    if status == 404 and is_json:
        raise PlanNotFound(f"the scaler at {address} has no plan {name!r} in namespace {namespace!r} (--plan)")
    if status == 404:
        raise MetricsUnavailable(
            f"the scaler at {address} does not serve /decisions: an older dynplan, or not its --metrics-listen address"
        )
    if status != 200 or not is_json:
        raise MetricsUnavailable(f"the scaler at {address} (--scaler) answered HTTP {status}, not a decision document")
    try:
        doc = json.loads(body)
    except ValueError:
        raise MetricsUnavailable(f"the scaler at {address} (--scaler) answered invalid JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != "dynplan.io/decision":
        raise MetricsUnavailable(f"the scaler at {address} (--scaler) answered a document that is not a dynplan decision")
    return doc


def _snake(key: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), key)


def _floats(d: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """A dataclass' fields from its camelCase JSON (the inverse of Decision.to_dict)."""
    names = {f.name for f in fields(cls)}
    return {_snake(k): v for k, v in d.items() if _snake(k) in names}


def decision_from_dict(d: Mapping[str, Any]) -> Decision:
    """A Decision from `Decision.to_dict()` (what /decisions carries), so that `explain
    --scaler` renders exactly the table `explain -f` renders. KeyError, TypeError or
    ValueError on a document of another shape."""
    pools = {
        name: PoolDecision(
            replicas=int(p["replicas"]), requested=int(p["requested"]), gpus_per_replica=int(p["gpusPerReplica"]),
            reasons=tuple(Reason(r) for r in p["reasons"]), capacity_tokens_per_s=p.get("capacityTokensPerS"),
        )
        for name, p in d["pools"].items()
    }
    throughput = None
    if d.get("throughput") is not None:
        tp = _floats(d["throughput"], ThroughputInputs)
        if tp.get("attainment") is not None:
            tp["attainment"] = AttainmentInputs(**_floats(tp["attainment"], AttainmentInputs))
        throughput = ThroughputInputs(**tp)
    load: dict[str, dict[str, LoadPoolInputs]] = {}
    for key, li in d.get("load", {}).items():
        pool, _, signal = key.partition(".")
        values = _floats(li, LoadPoolInputs)
        values["reason"] = Reason(values["reason"])
        load.setdefault(pool, {})[signal] = LoadPoolInputs(**values)
    return Decision(
        plan=str(d["plan"]), pools=pools, reason=Reason(d["reason"]), timestamp=float(d["timestamp"]),
        throughput=throughput, load=load, budget_gpus=d.get("budgetGpus"), warnings=tuple(str(w) for w in d.get("warnings", ())),
    )


def explanation_from_document(doc: Mapping[str, Any], address: str) -> Explanation:
    """The scaler's document as an Explanation (its latest decision must exist)."""
    try:
        decision = decision_from_dict(doc["decision"])
        return Explanation(
            plan=str(doc["plan"]), namespace=str(doc["namespace"]), prometheus=str(doc["prometheus"]),
            window_end=doc.get("windowEnd"), window_seconds=doc.get("windowSeconds"),
            replayed_windows=int(doc.get("replayedWindows") or 0), decision=decision,
            source=f"scaler {address}", serving=dict(doc["serving"]), made_at=doc.get("madeAt"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MetricsUnavailable(f"the scaler at {address} (--scaler) answered a decision of another shape ({exc.__class__.__name__}: {str(exc)[:100]})") from None


def _not_served(doc: Mapping[str, Any]) -> DynplanError:
    """The error GetMetrics answers with (its message), as the CLI's exit code."""
    message = str((doc.get("serving") or {}).get("message") or "not served")[:1000]
    return NoDecisionYet(message) if doc.get("decision") is None else StaleDecision(message)


def _fmt(value: Optional[float], spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _iso(t: Optional[float]) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


def render_table(doc: Explanation) -> str:
    decision = doc.decision
    lines = []
    when = _iso(doc.window_end)
    if doc.serving is None:
        lines.append(f"plan {doc.namespace}/{doc.plan}  (Prometheus {doc.prometheus})")
    else:
        lines.append(f"plan {doc.namespace}/{doc.plan}  ({doc.source}, reading Prometheus {doc.prometheus})")
        if doc.serving.get("code") == "OK":
            served = ", ".join(f"{p} {r}" for p, r in (doc.serving.get("replicas") or {}).items())
            lines.append(f"serving: GetMetrics answers {served}; decision made {_iso(doc.made_at)}")
        else:
            lines.append(f"serving: {doc.serving.get('code')}: {doc.serving.get('message')}")
    lines.append(
        f"window ending {when}, {doc.window_seconds or '-'} s; predictors warmed on {doc.replayed_windows} window(s)"
    )
    lines.append(f"reason: {decision.reason.value}")
    lines.append("")
    lines.append(f"{'pool':<10}{'replicas':>10}{'requested':>11}{'GPUs':>7}  reasons")
    for name, p in decision.pools.items():
        lines.append(f"{name:<10}{p.replicas:>10}{p.requested:>11}{p.gpus:>7}  {','.join(r.value for r in p.reasons) or '-'}")
    budget = f" of {decision.budget_gpus}" if decision.budget_gpus is not None else ""
    lines.append(f"{'total':<10}{'':>10}{'':>11}{decision.total_gpus:>7}{budget}")
    tp = decision.throughput
    if tp is not None:
        lines.append("")
        lines.append(f"{'input':<28}{'observed':>12}{'predicted':>12}")
        rows = (
            ("rate (req/s)", tp.observed_rate, tp.predicted_rate),
            ("ISL (tokens)", tp.observed_isl, tp.predicted_isl),
            ("OSL (tokens)", tp.observed_osl, tp.predicted_osl),
            ("TTFT (ms; predicted=profiled)", tp.observed_ttft_ms, tp.profiled_ttft_ms),
            ("ITL (ms; predicted=at point)", tp.observed_itl_ms, tp.decode_itl_at_point_ms),
        )
        for label, obs, pred in rows:
            lines.append(f"{label:<28}{_fmt(obs):>12}{_fmt(pred):>12}")
        lines.append(
            f"prefill {_fmt(tp.prefill_thpt_per_gpu, '.0f')} tok/s/GPU; decode {_fmt(tp.decode_thpt_per_gpu, '.0f')} tok/s/GPU "
            f"at ITL target {_fmt(tp.decode_itl_target_ms)} ms (KV usage {_fmt(tp.decode_kv_usage_at_point)})"
        )
        cf = "on" if tp.correction_enabled else "off"
        lines.append(f"correction factors ({cf}): prefill {tp.correction_prefill:.3f}, decode {tp.correction_decode:.3f}")
        if tp.attainment is not None:
            lines.append(tp.attainment.summary())
        if tp.queueing_factor is not None:
            lines.append(
                f"queueing: variability factor {tp.queueing_factor:.2f} (1 = Poisson); "
                f"prefill replicas for TTFT under queueing {_fmt(tp.prefill_queueing_replicas)}"
            )
    for pool, by_signal in decision.load.items():
        for signal, li in by_signal.items():
            lines.append(
                f"load {pool}.{signal}: workers {li.workers}, reason {li.reason.value}, direction {li.direction:+d}; "
                f"fit slope {_fmt(li.slope)} intercept {_fmt(li.intercept)} on {li.observations} points, "
                f"capacity/worker {_fmt(li.capacity_per_worker)}, busiest worker {_fmt(li.max_worker_load)}"
            )
    for w in decision.warnings:
        lines.append(f"warning: {w}")
    lines += _no_data_lines(doc.no_data, doc.selector)
    return "\n".join(lines)


@click.command("explain")
@click.option("-f", "--file", "plan_file", type=click.Path(dir_okay=False), help="Plan file (decide from Prometheus).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--at", "at", type=Instant(), default=None,
              help="Decide as of this time: now, Unix seconds or RFC 3339 (2026-12-01T10:00:00Z); default now.")
@click.option("--credentials", "credentials_file", type=click.Path(dir_okay=False), help="The scaler's credentials file (as dynplan serve --credentials), for a plan that names an entry.")
@click.option("--prometheus-url", "prometheus_url", default=None, metavar="URL",
              help="Read this Prometheus instead of the plan's (e.g. a kubectl port-forward).")
@click.option("--scaler", "scaler", default=None, metavar="HOST:PORT",
              help="Ask a running scaler (its --metrics-listen address) for its latest decision instead.")
@click.option("--plan", "plan_ref", default=None, metavar="NAMESPACE/NAME", help="With --scaler: the plan (default: -f's).")
@handle_errors
def explain(
    plan_file: Optional[str], output: str, at: Optional[float], credentials_file: Optional[str],
    prometheus_url: Optional[str], scaler: Optional[str], plan_ref: Optional[str],
) -> None:
    """Print the decision the scaler would make now (or, with --scaler, the one it serves),
    with every input and the reason."""
    if scaler is not None:
        _explain_scaler(scaler, plan_ref, plan_file, output, {"--at": None if at is None else str(at),
                                                              "--credentials": credentials_file,
                                                              "--prometheus-url": prometheus_url})
        return
    if plan_file is None:
        raise InputError([FieldError("-f", "", "a plan file is needed (or --scaler HOST:PORT --plan NAMESPACE/NAME)")])
    if plan_ref is not None:
        raise InputError([FieldError("--plan", "", "only with --scaler (-f names the plan)")])
    from scaler.logsetup import quiet_forecasting_libraries

    quiet_forecasting_libraries()
    # The loop's own log events (decision_failed, empty-series warnings) would reach
    # stderr through logging's last resort; explain reports them itself, once.
    logging.getLogger("dynplan").addHandler(logging.NullHandler())
    when = at
    notes: list[str] = []
    doc = asyncio.run(explain_decision(plan_file, when, credentials_file, prometheus_url, notes))
    for note in notes:
        click.echo(note, err=True)
    if output == "json":
        click.echo(json.dumps(doc.to_dict(), indent=2))
    else:
        click.echo(render_table(doc))


def _explain_scaler(address: str, plan_ref: Optional[str], plan_file: Optional[str], output: str,
                    unused: Mapping[str, Optional[str]]) -> None:
    for flag, value in unused.items():
        if value is not None:
            raise InputError([FieldError(flag, "", "does not apply with --scaler (the scaler decides from its own reads)")])
    if plan_ref is not None and plan_file is not None:
        raise InputError([FieldError("--plan", "", "give --plan or -f, not both")])
    if plan_ref is not None:
        namespace, name = parse_plan_ref(plan_ref)
    elif plan_file is not None:
        from scaler.planfile import load_plan

        plan = load_plan(plan_file, runtime=False).plan
        namespace, name = plan.namespace, plan.name
    else:
        raise InputError([FieldError("--plan", "", "--scaler needs the plan: --plan NAMESPACE/NAME or -f PLAN")])
    doc = asyncio.run(fetch_scaler_document(address, namespace, name))
    if doc.get("decision") is None:
        raise _not_served(doc)
    explanation = explanation_from_document(doc, address)
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(render_table(explanation))
    if (doc.get("serving") or {}).get("code") != "OK":
        raise _not_served(doc)
