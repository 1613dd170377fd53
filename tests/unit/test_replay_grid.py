"""The grids two replicas share (pure, core.replay): the fold of throughput windows
restarts at multiples of N x T since the epoch, and load ticks sit on the load grid."""

from __future__ import annotations

from scaler.core.replay import first_load_tick, fold_start, fold_windows, load_settle, next_load_tick

T = 60.0
N = 8
E = 1_800_000_000.0  # a multiple of N x T


def test_the_fold_restarts_on_the_grid() -> None:
    assert fold_start(E, T, N) == E - 7 * T
    assert fold_start(E + 3 * T, T, N) == E - 7 * T
    assert fold_start(E + 8 * T, T, N) == E + T
    assert [fold_windows(E + k * T, T, N) for k in (0, 1, 7, 8)] == [8, 9, 15, 8]


def test_load_ticks_on_the_load_grid() -> None:
    assert load_settle(15.0, 10.0) == 2.5 and load_settle(2.0, 10.0) == 2.0
    # a window at E decided at E + 15; load ticks (10 s, read 2.5 s after) due before it
    # were history: the first one after is E + 20 (due E + 22.5 >= E + 15)
    assert first_load_tick(E, 15.0, 10.0, 2.5) == E + 20
    assert first_load_tick(E, 2.5, 10.0, 2.5) == E  # a tie goes to the window first
    # every missed tick in turn, but not more than the horizon behind
    assert next_load_tick(E, E + 32.6, 10.0, 2.5, 21) == E
    assert next_load_tick(E, E + 1000.0, 10.0, 2.5, 21) == E + 990 - 200
