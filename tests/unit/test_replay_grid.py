"""The grids two replicas share (pure, core.replay): the fold of throughput windows
restarts at multiples of N x T since the epoch, and load ticks sit on the load grid."""

from __future__ import annotations

from scaler.core.replay import (
    FoldRead,
    first_load_tick,
    fold_held,
    fold_read,
    fold_start,
    fold_windows,
    load_settle,
    next_load_tick,
)

T = 60.0
N = 8
E = 1_800_000_000.0  # a multiple of N x T


def test_the_fold_restarts_on_the_grid() -> None:
    assert fold_start(E, T, N) == E - 7 * T
    assert fold_start(E + 3 * T, T, N) == E - 7 * T
    assert fold_start(E + 8 * T, T, N) == E + T
    assert [fold_windows(E + k * T, T, N) for k in (0, 1, 7, 8)] == [8, 9, 15, 8]


def test_what_a_loop_reads_for_the_next_window_on_the_fold() -> None:
    held = (E - 7 * T, E + 2 * T)  # a fold of the windows ending E - 7T .. E + 2T
    # the next window extends it: read that window alone
    assert fold_read(E + 3 * T, E + 3 * T, T, N, held) == FoldRead(True, 1, 0)
    assert fold_held(FoldRead(True, 1, 0), held, E + 3 * T, 1, T) == (E - 7 * T, E + 3 * T)
    # fallen behind by two windows: the three read together, two only folded in
    assert fold_read(E + 5 * T, E + 3 * T, T, N, held) == FoldRead(True, 3, 2)
    # a new fold start (E + 8T): the 7 windows before it again from history, and it
    assert fold_read(E + 8 * T, E + 8 * T, T, N, (E - 7 * T, E + 7 * T)) == FoldRead(False, 8, 0)
    # no fold yet (a first window), or a gap after the one held: from the fold's start
    assert fold_read(E + 3 * T, E + 3 * T, T, N, None) == FoldRead(False, 11, 0)
    assert fold_read(E + 4 * T, E + 4 * T, T, N, held) == FoldRead(False, 12, 0)
    # history held fewer windows than asked for (none before a simulator's first window)
    assert fold_held(FoldRead(False, 11, 0), None, E + 3 * T, 4, T) == (E, E + 3 * T)


def test_load_ticks_on_the_load_grid() -> None:
    assert load_settle(15.0, 10.0) == 2.5 and load_settle(2.0, 10.0) == 2.0
    # a window at E decided at E + 15; load ticks (10 s, read 2.5 s after) due before it
    # were history: the first one after is E + 20 (due E + 22.5 >= E + 15)
    assert first_load_tick(E, 15.0, 10.0, 2.5) == E + 20
    assert first_load_tick(E, 2.5, 10.0, 2.5) == E  # a tie goes to the window first
    # every missed tick in turn, but not more than the horizon behind
    assert next_load_tick(E, E + 32.6, 10.0, 2.5, 21) == E
    assert next_load_tick(E, E + 1000.0, 10.0, 2.5, 21) == E + 990 - 200
