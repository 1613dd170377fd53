"""The simulator's measured outcome per window: the fraction of TTFTs over the SLA bucket
(scaler.sim.window.WindowStats, as 1 - bucket{le=SLA} / count gives it in Prometheus)."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.sim.window import WindowStats


def test_fraction_of_first_tokens_above_the_bound() -> None:
    stats = WindowStats([0.0, 1.0, 2.0, 3.0], np.asarray([100.0] * 4), ttft_bound_ms=800.0)
    for ttft in (100.0, 800.0, 801.0, 2000.0):  # a TTFT at the bound is in its bucket (le)
        stats.first_token(ttft)
    assert stats.window(60.0, 60.0).ttft_miss == pytest.approx(0.5)
    stats.reset()
    # no first token since the reset: no value (0/0), not a zero
    assert stats.window(120.0, 60.0).ttft_miss is None
    stats.first_token(100.0)
    assert stats.window(180.0, 60.0).ttft_miss == 0.0


def test_no_bound_no_fraction() -> None:
    stats = WindowStats([0.0], np.asarray([100.0]))
    stats.first_token(5000.0)
    assert stats.window(60.0, 60.0).ttft_miss is None
