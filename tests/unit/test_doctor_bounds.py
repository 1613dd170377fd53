"""What `dynplan doctor` looks for when `ttft_miss` reads nothing: `sources.bound_bucket`
is the bucket selector the series' query reads (so a bucket it finds is one the query
finds), and the neighbours it names are the positive, finite bounds either side."""

from __future__ import annotations

import math
from typing import Any

import pytest

from helpers import plan_dict, with_changes
from scaler.core.plan import Plan
from scaler.sources import SERIES_BY_KEY, bound_bucket, bounds_either_side, plan_raw_expr, series_selector

VLLM = {"spec.metrics.source": "vllm", "spec.metrics.selector": {"namespace": "inference"},
        "spec.pools.prefill.selector": {"pod": "=~llama-prefill-.*"}, "spec.pools.decode.selector": {"pod": "=~llama-decode-.*"}}


def plan(changes: dict[str, Any]) -> Plan:
    return Plan.model_validate(with_changes(plan_dict(sizing="attainment"), {**VLLM, **changes}))


@pytest.mark.parametrize("changes, le", [
    ({"spec.sla.ttftMs": 300}, 'le="0.3"'),
    ({"spec.sla.ttftMs": 300, "spec.rules.ttftBucketMs": 250}, 'le="0.25"'),
    ({"spec.sla.ttftMs": 1000}, 'le=~"1|1\\\\.0"'),
])
def test_the_bucket_is_the_one_the_query_reads(changes: dict[str, Any], le: str) -> None:
    p = plan(changes)
    series = SERIES_BY_KEY["ttft_miss"]
    metric, sel, at_bound = bound_bucket(p, series)
    assert metric == "vllm:time_to_first_token_seconds_bucket"
    assert sel == '{namespace="inference",pod=~"llama-prefill-.*"}'  # the prefill pool's (series_pool)
    assert at_bound == '{namespace="inference",pod=~"llama-prefill-.*",' + le + "}"
    assert f"increase({series_selector(metric, at_bound)}[60s])" in plan_raw_expr(p, series, 60)


def test_only_an_over_bound_series_has_a_bucket() -> None:
    with pytest.raises(ValueError, match="requests counts no histogram bucket"):
        bound_bucket(plan({}), SERIES_BY_KEY["requests"])


# vLLM's TTFT bounds up to 5 s and +Inf, with Dynamo's first bucket le=0
BOUNDS = [0.0, 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, math.inf]


@pytest.mark.parametrize("at, expected", [
    (0.3, (0.25, 0.5)), (0.2, (0.1, 0.25)),
    (0.0005, (None, 0.001)),  # le=0 (Dynamo's first bucket) counts nothing: no bound to set
    (6.0, (5.0, None)),  # +Inf is no bound to set
])
def test_the_neighbours_are_the_positive_finite_bounds_either_side(at: float, expected: tuple[Any, Any]) -> None:
    assert bounds_either_side(BOUNDS, at) == expected
