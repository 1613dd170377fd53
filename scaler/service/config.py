"""Trigger metadata -> a typed, validated reference to one pool of one plan.

KEDA forwards every key of the trigger's `metadata` (its own `scalerAddress`, `enableTLS`,
`unsafeSsl` included) as strings; only `plan` and `pool` mean something here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from scaler.core.plan import POOL_NAMES_BY_MODE
from scaler.errors import MetadataError

PLAN_KEY = "plan"
POOL_KEY = "pool"
KNOWN_POOLS: tuple[str, ...] = tuple(sorted({p for pools in POOL_NAMES_BY_MODE.values() for p in pools}))
# Keys KEDA itself reads and forwards anyway (external scaler trigger metadata and TLS).
KEDA_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl", "caCert", "tlsClientCert", "tlsClientKey"})
_ALLOWED_KEYS = KEDA_KEYS | {PLAN_KEY, POOL_KEY}
_POOLS = frozenset(KNOWN_POOLS)


@dataclass(frozen=True, slots=True)
class PoolRef:
    """Which pool a ScaledObject scales: (namespace of the ScaledObject, plan name, pool)."""

    namespace: str
    plan: str
    pool: str


def parse_metadata(namespace: str, metadata: Mapping[str, str]) -> PoolRef:
    """Validate `scalerMetadata`; MetadataError (INVALID_ARGUMENT) names the offending key.

    Unknown keys are rejected rather than ignored: a misspelt key (`pol: decode`) must not
    silently scale the wrong thing. KEDA's own keys pass.
    """
    unknown = [k for k in metadata if k not in _ALLOWED_KEYS]
    if unknown:
        unknown.sort()
        raise MetadataError(
            f"unknown trigger metadata key {unknown[0]!r} (dynplan reads '{PLAN_KEY}' and '{POOL_KEY}'; "
            f"KEDA's own keys {', '.join(sorted(KEDA_KEYS))} are ignored)"
        )
    plan = metadata.get(PLAN_KEY, "").strip()
    if not plan:
        raise MetadataError(f"trigger metadata key '{PLAN_KEY}' is missing or empty (the plan's metadata.name)")
    pool = metadata.get(POOL_KEY, "").strip()
    if not pool:
        raise MetadataError(
            f"trigger metadata key '{POOL_KEY}' is missing or empty (one of: {', '.join(KNOWN_POOLS)})"
        )
    if pool not in _POOLS:
        raise MetadataError(f"trigger metadata key '{POOL_KEY}': unknown pool {pool!r} (one of: {', '.join(KNOWN_POOLS)})")
    if not namespace:
        raise MetadataError("ScaledObjectRef.namespace is empty")
    return PoolRef(namespace=namespace, plan=plan, pool=pool)
