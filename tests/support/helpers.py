"""Shared test helpers: in-memory profiles with hand-computable numbers, and plan builders.

Other test modules import these; keep the signatures stable (add keyword arguments only).

- `flat_profile`: every prefill point has the same TTFT and throughput, every decode point the
  same ITL and throughput, so the interpolators return exactly those numbers anywhere.
- `linear_profile`: TTFT linear in ISL and ITL/throughput linear in KV usage (constant along
  context), which cubic splines, Clough-Tocher triangulation and bilinear lookups all
  reproduce exactly: expectations can be computed by hand (see the docstring).
- `plan_dict` / `make_plan`: a valid plan document with keyword overrides.
- `write_plan`: a plan YAML (and optionally its profile as Dynamo JSON files) under a directory.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import yaml

from scaler.core.plan import Plan
from scaler.core.profile import Profile, profile_from_raw

REPO = Path(__file__).resolve().parents[2]
FIXTURE_PROFILES = REPO / "tests" / "fixtures" / "profiles"
SYNTHETIC_PROFILE_DIR = FIXTURE_PROFILES / "h200-llama3.1-8b-fp8-tp1"
MEASURED_PROFILE_DIR = FIXTURE_PROFILES / "h200-llama3.1-8b-bf16-measured"
EXAMPLES = REPO / "examples"

# Six ISLs and a small (KV usage, context) grid: enough points for the cubic paths.
FLAT_ISLS = (100.0, 500.0, 1000.0, 3000.0, 8000.0, 16000.0)
GRID_KV = (0.0, 0.25, 0.5, 0.75, 1.0)
GRID_CONTEXTS = (50.0, 1000.0, 4000.0, 16000.0)


def _decode_grid(itl, thpt) -> dict[str, Any]:
    kv, ctx, z_itl, z_thpt = [], [], [], []
    for c in GRID_CONTEXTS:
        for u in GRID_KV:
            kv.append(u)
            ctx.append(c)
            z_itl.append(itl(u))
            z_thpt.append(thpt(u))
    return {"x_kv_usage": kv, "y_context_length": ctx, "z_itl": z_itl, "z_thpt_per_gpu": z_thpt}


def flat_profile(
    prefill_thpt: float = 40000.0,
    decode_thpt: float = 10000.0,
    *,
    ttft_ms: float = 50.0,
    itl_ms: float = 5.0,
    max_kv_tokens: float = 1_000_000.0,
) -> Profile:
    """Prefill throughput `prefill_thpt` and decode throughput `decode_thpt` at every point."""
    prefill = {
        "prefill_isl": list(FLAT_ISLS),
        "prefill_ttft": [ttft_ms] * len(FLAT_ISLS),
        "prefill_thpt_per_gpu": [prefill_thpt] * len(FLAT_ISLS),
    }
    decode = _decode_grid(lambda u: itl_ms, lambda u: decode_thpt)
    decode["max_kv_tokens"] = max_kv_tokens
    return profile_from_raw(prefill, decode, source="<flat>")


def linear_profile(
    *,
    prefill_thpt: float = 40000.0,
    ttft_base_ms: float = 10.0,
    ttft_per_token_ms: float = 0.01,
    max_kv_tokens: float = 110_000.0,
) -> Profile:
    """A profile whose interpolated values are known in closed form.

    Prefill: TTFT(ISL) = ttft_base_ms + ttft_per_token_ms x ISL; throughput `prefill_thpt`.
    Decode (any context): ITL(kv) = 1 + 99 kv ms and thpt(kv) = 100 + 9900 kv tokens/s/GPU.
    The decode grid has 100 KV columns kv_j = j/99, so column j has ITL 1 + j ms and
    throughput 100 + 100 j: the best point for an ITL target of t ms (t not an integer,
    1 < t < 100) is column j = floor(t) - 1, throughput 100 x floor(t).
    """
    prefill = {
        "prefill_isl": list(FLAT_ISLS),
        "prefill_ttft": [ttft_base_ms + ttft_per_token_ms * i for i in FLAT_ISLS],
        "prefill_thpt_per_gpu": [prefill_thpt] * len(FLAT_ISLS),
    }
    decode = _decode_grid(lambda u: 1.0 + 99.0 * u, lambda u: 100.0 + 9900.0 * u)
    decode["max_kv_tokens"] = max_kv_tokens
    return profile_from_raw(prefill, decode, source="<linear>")


def linear_best_thpt(itl_target_ms: float) -> float:
    """Best decode throughput of `linear_profile` for a non-integer ITL target in (1, 100)."""
    import math

    return 100.0 * math.floor(itl_target_ms)


def _pool(name: str, gpus: int = 1, lo: int = 1, hi: int = 16) -> dict[str, Any]:
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"llama-{name}"},
        "gpusPerReplica": gpus,
        "minReplicas": lo,
        "maxReplicas": hi,
    }


BUCKET_WARNING_PATHS = ("spec.sla.ttftMs", "spec.sla.itlMs", "spec.rules.ttftBucketMs", "spec.rules.itlBucketMs")


def not_about_buckets(warnings: Any) -> list[Any]:
    """Warnings other than `sources.bucket_warnings`' (plan_dict's 200/20 ms SLA is no bound of
    Dynamo's default buckets; tests about other warnings leave those aside)."""
    return [w for w in warnings if (w.path if hasattr(w, "path") else w[0]) not in BUCKET_WARNING_PATHS]


def plan_dict(
    *,
    name: str = "llama-8b",
    mode: str = "disagg",
    ttft_ms: float = 200.0,
    itl_ms: float = 20.0,
    isl: float = 3000.0,
    osl: float = 150.0,
    profile: Optional[str] = "profile",
    gpus: Optional[dict[str, int]] = None,
    min_replicas: Optional[dict[str, int]] = None,
    max_replicas: Optional[dict[str, int]] = None,
    max_gpus: Optional[int] = None,
    predictor: str = "constant",
    correction: bool = True,
    throughput: bool = True,
    load: bool = False,
    interval_seconds: int = 60,
    sizing: str = "dynamo",
) -> dict[str, Any]:
    """A valid plan document (camelCase, as in YAML). Pools default to 1 GPU, min 1, max 16.

    Sizing defaults to Dynamo's formulas, which the hand-computed expectations of most tests
    are written in; attainment-sizing tests ask for `sizing="attainment"`."""
    gpus, lo, hi = gpus or {}, min_replicas or {}, max_replicas or {}
    names = ("prefill", "decode") if mode == "disagg" else ("worker",)
    doc: dict[str, Any] = {
        "apiVersion": "dynplan/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": name, "namespace": "inference"},
        "spec": {
            "mode": mode,
            "sla": {"ttftMs": ttft_ms, "itlMs": itl_ms},
            "workload": {"isl": isl, "osl": osl},
            "pools": {n: _pool(n, gpus.get(n, 1), lo.get(n, 1), hi.get(n, 16)) for n in names},
            "scaling": {
                "throughput": {
                    "enabled": throughput,
                    "sizing": sizing,
                    "intervalSeconds": interval_seconds,
                    "predictor": {"type": predictor},
                    "correction": correction,
                },
                "load": {"enabled": load, "intervalSeconds": 10},
            },
            # the test Prometheus scrapes every second (tests/support/prometheus.py): query
            # ranges are the windows themselves, as at any scrape of a quarter window or less
            "metrics": {"source": "dynamo", "selector": {"dynamo_namespace": "inference-llama-8b"}, "scrapeIntervalSeconds": 1},
        },
    }
    if profile is not None:
        doc["spec"]["profile"] = profile
    if max_gpus is not None:
        doc["spec"]["budget"] = {"maxGpus": max_gpus}
    return doc


def make_plan(**kwargs: Any) -> Plan:
    """`plan_dict(**kwargs)` validated into a Plan (cross-field checks are not run)."""
    return Plan.model_validate(plan_dict(**kwargs))


def write_plan(
    directory: Path,
    doc: dict[str, Any],
    *,
    profile: Optional[Profile] = None,
    filename: str = "plan.yaml",
) -> Path:
    """Write `doc` as YAML; with `profile`, also write it as Dynamo JSON files under
    `directory / doc.spec.profile` (which must then be a relative path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if profile is not None:
        from scaler.profile_io import write_profile_json

        write_profile_json(profile, directory / doc["spec"]["profile"])
    path = directory / filename
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def with_changes(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `doc` with dotted paths set (value `...` deletes the key)."""
    out = copy.deepcopy(doc)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return out
