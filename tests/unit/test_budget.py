"""The joint GPU budget (scaler.core.budget.apply_budget) and pool bounds, hand-computed.

Our rule: every pool keeps its minimum; the GPUs left are shared in proportion to each
pool's request above its minimum (whole replicas, largest remainder first, ties in pool
order); no pool ever gets more than it asked for.
"""

from __future__ import annotations

import pytest

from scaler.core.budget import apply_budget, clamp

P, D = "prefill", "decode"


def fit(p: int, d: int, gp: int, gd: int, budget: int | None, min_p: int = 1, min_d: int = 1) -> tuple[int, int]:
    out = apply_budget({P: p, D: d}, {P: min_p, D: min_d}, {P: gp, D: gd}, budget)
    return out[P], out[D]


def test_clamp() -> None:
    assert clamp(0, 1, 16) == 1
    assert clamp(20, 1, 16) == 16
    assert clamp(7, 1, 16) == 7


def test_no_budget_or_within_budget_is_unchanged() -> None:
    assert fit(8, 15, 1, 1, None) == (8, 15)
    assert fit(8, 15, 1, 1, 23) == (8, 15)
    assert fit(3, 1, 1, 1, 4) == (3, 1)


def test_example_8_15_into_12_gpus() -> None:
    # available above minimums: 12 - 2 = 10; excess (7, 14) = 21; share 10/21.
    # prefill 1 + floor(7 x 10/21 = 3.33) = 4, decode 1 + floor(14 x 10/21 = 6.67) = 7,
    # 11 GPUs; the last GPU goes to the larger remainder (decode 0.67): (4, 8).
    assert fit(8, 15, 1, 1, 12) == (4, 8)


# Dynamo G2's `_apply_global_gpu_budget` worked examples (reference §9.4). Where the
# results agree the comment says so; where they differ, ours is the documented rule.
@pytest.mark.parametrize(
    "req, g, budget, ours, why",
    [
        ((6, 6), (1, 1), 8, (4, 4), "same as Dynamo"),
        ((10, 2), (1, 1), 8, (6, 2), "same as Dynamo: excess (9,1) x 0.6 = 5.4, 0.6 -> (6,1) + decode's remainder"),
        # Dynamo gives (1, 7): prefill scaled by 8/12 and floored (1), decode takes the rest.
        # Ours: excess (1, 9) x 6/10 = 0.6, 5.4 -> (1, 6), and the spare GPU goes to the larger
        # remainder, prefill (0.6 > 0.4): both pools shrink by the same fraction of their request.
        ((2, 10), (1, 1), 8, (2, 6), "differs: proportional to both requests"),
        # Dynamo gives (2, 3). Ours: 6 GPUs above minimums, excess 8 + 8 GPUs, share 3/8:
        # 1.5 replicas each -> (2, 2) = 8 GPUs; one 2-GPU replica left, remainders tie (0.5),
        # pool order breaks the tie: prefill.
        ((5, 5), (2, 2), 10, (3, 2), "differs only in tie-breaking"),
        ((4, 4), (2, 1), 6, (2, 2), "same as Dynamo: share 1/3 of excess (6, 3) GPUs"),
        ((3, 3), (2, 2), 5, (1, 1), "same as Dynamo: the spare GPU cannot hold a 2-GPU replica"),
        # Dynamo gives (2, 4): decode receives all the leftover budget and grows from 1 to 4
        # replicas although it asked for 1. We never raise a pool above its request: decode
        # stays at 1 and 3 GPUs stay unused (not enough for another 8-GPU prefill replica).
        ((10, 1), (8, 1), 20, (2, 1), "differs: decode must NOT grow to 4"),
    ],
)
def test_dynamo_budget_examples_under_our_semantics(req, g, budget, ours, why) -> None:
    assert fit(req[0], req[1], g[0], g[1], budget) == ours, why


def test_budget_below_minimums_returns_minimums() -> None:
    # Dynamo returns (0, 0) for a budget of 1 with min 1 each. Our validator rejects such a
    # plan (spec.budget.maxGpus); if one gets here anyway we keep the minimums, never 0.
    assert fit(5, 5, 1, 1, 1) == (1, 1)


def test_budget_respects_higher_minimums() -> None:
    # min (2, 3) = 5 GPUs; 5 left for excess (8, 7) = 15 -> share 1/3: (2+2.67, 3+2.33)
    # floors (4, 5) = 9 GPUs, the last GPU to prefill's remainder 0.67: (5, 5).
    assert fit(10, 10, 1, 1, 10, min_p=2, min_d=3) == (5, 5)


def test_single_pool_budget() -> None:
    # agg: one pool of 2-GPU workers asking for 10 (20 GPUs) under a budget of 9 -> 4.
    out = apply_budget({"worker": 10}, {"worker": 1}, {"worker": 2}, 9)
    assert out == {"worker": 4}
