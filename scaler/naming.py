"""Every name dynplan derives from a plan, in one place (KEDA metric names, objects, files)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^a-z0-9-]+")


def _dns(value: str) -> str:
    return _UNSAFE.sub("-", value.lower()).strip("-")


def metric_name(plan: str, pool: str) -> str:
    """KEDA metric name for a pool: `dynplan-<plan>-<pool>`, lowercase `[a-z0-9-]`.

    It lives in a URL path of the external metrics API; KEDA prefixes `sN-` for the HPA
    and strips it again before GetMetrics.
    """
    return f"dynplan-{_dns(plan)}-{_dns(pool)}"


def scaled_object_name(plan: str, pool: str) -> str:
    """ScaledObject name; <= 54 chars so KEDA's `keda-hpa-<name>` stays <= 63."""
    return f"{_dns(plan)}-{_dns(pool)}"


def hpa_name(plan: str, pool: str) -> str:
    return f"keda-hpa-{scaled_object_name(plan, pool)}"


def trigger_name(pool: str) -> str:
    return f"dynplan-{_dns(pool)}"


def rule_object_name(plan: str) -> str:
    return f"dynplan-{_dns(plan)}"


def rule_group_name(plan: str, kind: str) -> str:
    return f"dynplan-{_dns(plan)}-{kind}"


def plan_configmap_name(plan: str) -> str:
    return f"dynplan-plan-{_dns(plan)}"


def plan_file_name(plan: str) -> str:
    """File name of a plan inside the scaler's plans directory."""
    return f"{_dns(plan)}.yaml"


def profile_dir_name(plan: str) -> str:
    """Directory (relative to the plans dir) holding the plan's profile."""
    return f"{_dns(plan)}-profile"
