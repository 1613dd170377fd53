"""The read-only `/decisions` documents on the metrics listener: each plan's latest decision
as the scaler serves it (what `dynplan explain --scaler` prints).

`GET /decisions/<namespace>/<plan>` answers what GetMetrics and IsActive answer for every
pool of the plan at that moment (the same `PlanLoop.current()` call, so the same
staleness rule and the same UNAVAILABLE text), plus the latest decision with every input,
even when it is too old to be served. `GET /decisions` lists the plans. Built in a worker
thread from what the loops publish: a Snapshot is frozen and replaced whole, and a plan's
document reads it once, so it never mixes two decisions.

Secret-free by construction: plan names, numbers, the Prometheus URL (plans cannot carry
userinfo; it is stripped again here) and error texts that already go into gRPC messages.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from scaler.errors import DynplanError, grpc_status_for
from scaler.service.loop import PlanLoop, Snapshot

KIND = "dynplan.io/decision"  # the document's `kind`; bumped if its shape ever changes incompatibly
_USERINFO = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*://)[^@/?#]*@")


def display_url(url: str) -> str:
    """The URL without any `user:password@` (defence in depth: plans are validated without)."""
    return _USERINFO.sub(r"\1", url)


def decision_document(plan_loop: PlanLoop) -> dict[str, Any]:
    """One plan's document (JSON-ready): serving status, the latest decision, its inputs.
    Times are the loop's clock, the one its staleness is judged by."""
    now = plan_loop.clock()
    plan = plan_loop.plan
    snap = plan_loop.latest
    serving: dict[str, Any]
    try:
        current = plan_loop.current()
    except DynplanError as exc:
        serving = {"code": grpc_status_for(exc), "message": str(exc), "replicas": None, "active": None}
    else:
        serving = {
            "code": "OK",
            "message": None,
            "replicas": {pool: current.decision.replicas(pool) for pool in plan.pool_names},
            "active": {pool: current.active(pool) for pool in plan.pool_names},
        }
        snap = current
    return {
        "kind": KIND,
        "plan": plan.name,
        "namespace": plan.namespace,
        "prometheus": display_url(plan.spec.metrics.prometheus.url),
        "windowEnd": None if snap is None else snap.window_end,
        "windowSeconds": plan_loop.throughput_interval_seconds,
        "replayedWindows": plan_loop.replayed,
        "madeAt": None if snap is None else snap.made_at,
        "ageSeconds": None if snap is None else max(0.0, now - snap.made_at),
        "stalenessBoundSeconds": plan_loop.staleness_bound,
        "lastError": plan_loop.last_error,
        "serving": serving,
        "decision": None if snap is None else snap.decision.to_dict(),
    }


def index_document(plan_loops: Iterable[PlanLoop]) -> dict[str, Any]:
    """Every plan served, sorted, with whether it is served and its latest window."""
    plans = []
    for plan_loop in sorted(plan_loops, key=lambda p: (p.plan.namespace, p.plan.name)):
        snap: Optional[Snapshot] = plan_loop.latest
        try:
            plan_loop.current()
            code = "OK"
        except DynplanError as exc:
            code = grpc_status_for(exc)
        plans.append({
            "namespace": plan_loop.plan.namespace,
            "plan": plan_loop.plan.name,
            "code": code,
            "windowEnd": None if snap is None else snap.window_end,
            "path": f"/decisions/{plan_loop.plan.namespace}/{plan_loop.plan.name}",
        })
    return {"kind": KIND + "-list", "plans": plans}
