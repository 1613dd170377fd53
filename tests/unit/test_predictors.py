"""Predictors: Dynamo's vectors (reference section 9.7), Kalman behaviour, real ARIMA and Prophet
fits (the test environment installs the `arima` and `prophet` extras: these tests fail, never
skip, without them), restart-by-replay, and the optional-dependency hints."""

from __future__ import annotations

import importlib.util
import logging
import math
import random
import warnings
from datetime import timedelta
from typing import Callable, get_args

import pytest

from scaler.core import predictors
from scaler.core.plan import ArimaParams, KalmanParams, PredictorSpec, ProphetParams
from scaler.core.predictors import (
    PROPHET_START,
    ArimaPredictor,
    ConstantPredictor,
    KalmanPredictor,
    Predictor,
    ProphetPredictor,
    make_predictor,
    memory,
    predictor_missing_dependency,
)
from scaler.errors import OptionalDependencyMissing
from scaler.logsetup import quiet_forecasting_libraries

RAMP = [10.0 * i for i in range(1, 21)]  # 10, 20, ..., 200


def feed(p: Predictor, values: list[float]) -> Predictor:
    for v in values:
        p.observe(v)
    return p


@pytest.fixture(autouse=True)
def _quiet_fits() -> None:
    """What the edges do once (scaler.logsetup): real fits warn on short windows."""
    quiet_forecasting_libraries()


def noisy_series(n: int = 40, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [max(0.0, 50 + 2 * i + rng.gauss(0, 4)) if i % 9 else 0.0 for i in range(n)]


# -- common semantics (constant predictor, section 9.7 vectors) --------------------------------


def test_constant_no_data_is_zero() -> None:
    assert ConstantPredictor().predict_next() == 0.0


def test_constant_returns_last_value() -> None:
    assert feed(ConstantPredictor(), [10, 20, 30]).predict_next() == 30


def test_leading_zeros_are_skipped() -> None:
    p = feed(ConstantPredictor(), [0, 0])
    assert p.predict_next() == 0
    assert p.count == 0


def test_zeros_after_first_nonzero_are_kept() -> None:
    p = feed(ConstantPredictor(), [5, 0])
    assert p.predict_next() == 0
    assert p.count == 2


def test_nan_becomes_zero() -> None:
    p = feed(ConstantPredictor(), [10, math.nan])
    assert p.predict_next() == 0
    assert p.count == 2
    assert feed(ConstantPredictor(), [10, math.inf]).predict_next() == 0


def test_negative_input_counts_as_zero() -> None:
    p = feed(ConstantPredictor(), [-3, 4, -1])
    assert p.count == 2 and p.predict_next() == 0


def test_reset_idle_skip_rearms_leading_zero_skipping() -> None:
    p = feed(ConstantPredictor(), [7])
    p.reset_idle_skip()
    feed(p, [0, 0])
    assert p.count == 1 and p.predict_next() == 7


def test_buffers_are_bounded() -> None:
    p = feed(ConstantPredictor(), [1.0] * (predictors.HISTORY + 50))
    assert p.count == predictors.HISTORY
    k = feed(KalmanPredictor(), [1.0] * (predictors.HISTORY + 50))
    assert k.count == predictors.kalman_window(5) == 20


def test_every_plan_predictor_type_has_a_kind() -> None:
    assert set(predictors.KINDS) == set(get_args(PredictorSpec.model_fields["type"].annotation))
    with pytest.raises(ValueError, match="unknown predictor type 'crystal-ball'"):
        make_predictor(PredictorSpec.model_construct(type="crystal-ball"), 60)


@pytest.mark.parametrize(
    "spec, intervals",
    [
        (PredictorSpec(type="constant", min_points=1), 4),
        (PredictorSpec(type="kalman", min_points=10), 41),                       # its window + 1
        (PredictorSpec(type="arima", arima=ArimaParams(window=100)), 100),       # the fit window
        (PredictorSpec(type="arima", arima=ArimaParams(window=10), min_points=5), 20),
        (PredictorSpec(type="prophet", prophet=ProphetParams(window=50)), 50),
    ],
)
def test_memory_is_the_fit_window_and_at_least_four_times_min_points(spec: PredictorSpec, intervals: int) -> None:
    assert memory(spec) == intervals


def test_make_predictor_builds_each_kind() -> None:
    assert isinstance(make_predictor(PredictorSpec(type="constant"), 180), ConstantPredictor)
    k = make_predictor(PredictorSpec(type="kalman", kalman=KalmanParams(r=2.0), min_points=3), 180)
    assert isinstance(k, KalmanPredictor) and k.min_points == 3 and k._R == 2.0
    a = make_predictor(PredictorSpec(type="arima", arima=ArimaParams(window=20), log1p=True), 180)
    assert isinstance(a, ArimaPredictor) and a.log1p and a._values.maxlen == 20
    pr = make_predictor(PredictorSpec(type="prophet", prophet=ProphetParams(window=7)), 60)
    assert isinstance(pr, ProphetPredictor) and pr.interval_seconds == 60 and pr._values.maxlen == 7
    for p in (k, a, pr):
        assert isinstance(p, Predictor)


# -- Kalman ---------------------------------------------------------------------------------


def test_kalman_zero_before_data() -> None:
    assert KalmanPredictor().predict_next() == 0.0
    assert feed(KalmanPredictor(), [0, 0, 0]).predict_next() == 0.0


def test_kalman_below_min_points_returns_last() -> None:
    assert feed(KalmanPredictor(min_points=5), [10, 50, 20]).predict_next() == 20


def test_kalman_prediction_cached_until_next_observe() -> None:
    p = feed(KalmanPredictor(), noisy_series())
    first = p.predict_next()
    assert all(p.predict_next() == first for _ in range(5))
    p.observe(500)
    assert p.predict_next() != first


def test_kalman_follows_linear_ramp() -> None:
    assert feed(KalmanPredictor(), RAMP).predict_next() == pytest.approx(210, rel=0.03)


def test_kalman_never_negative() -> None:
    falling = [200, 160, 120, 80, 40, 5]
    assert feed(KalmanPredictor(), falling).predict_next() == 0.0
    p = feed(KalmanPredictor(log1p=True), falling + [1, 0, 0])
    assert p.predict_next() >= 0.0


def test_kalman_log1p_mode_tracks_level() -> None:
    p = feed(KalmanPredictor(log1p=True), [99.0] * 10)
    assert p.predict_next() == pytest.approx(99.0, rel=1e-3)


def test_kalman_forecast_is_a_function_of_its_window_only() -> None:
    """L7: a filter carried since start-up remembered its first value (a restart gave a
    predicted rate 7e-5 relative off). Now any two histories that end in the same window of
    values (leading zeros aside) forecast the same, bit for bit."""
    tail = noisy_series()[:30]
    w = predictors.kalman_window(5)
    long_run = feed(KalmanPredictor(), [500.0, 3.0] * 40 + tail)
    restarted = feed(KalmanPredictor(), tail[-w:])
    assert long_run.predict_next() == restarted.predict_next()
    # idle windows before the traffic: dropped, however many the window holds
    assert feed(KalmanPredictor(), [9.0] * 30 + [0.0] * 15 + tail[:5]).predict_next() == feed(
        KalmanPredictor(), tail[:5]).predict_next()


def test_kalman_replay_is_identical_with_or_without_interleaved_predictions() -> None:
    series = noisy_series()
    a = KalmanPredictor()
    for v in series:
        a.observe(v)
        a.predict_next()  # as a live loop would, every tick
    b = feed(KalmanPredictor(), series)  # rebuilt after a restart
    assert a.predict_next() == b.predict_next()
    assert a.count == b.count


# -- ARIMA (real statsmodels fits) --------------------------------------------------------------


def test_arima_library_is_installed() -> None:
    import statsmodels  # noqa: F401 - the test venv must have the extra

    assert predictor_missing_dependency("arima") is None


def test_arima_constant_series() -> None:
    assert feed(ArimaPredictor(), [7.0] * 10).predict_next() == 7.0
    assert feed(ArimaPredictor(log1p=True), [99.0] * 5).predict_next() == pytest.approx(99.0)


def test_arima_no_data_and_below_min_points() -> None:
    assert ArimaPredictor().predict_next() == 0.0
    assert feed(ArimaPredictor(min_points=5), [10, 20, 30]).predict_next() == 30


def test_arima_follows_trend() -> None:
    up = feed(ArimaPredictor(), RAMP).predict_next()
    assert 200 < up < 230
    down_series = [300 - 7.0 * i for i in range(30)]
    down = feed(ArimaPredictor(), down_series).predict_next()
    assert down < down_series[-1]


def test_arima_follows_noisy_trend() -> None:
    rng = random.Random(3)
    series = [100 + 5 * i + rng.gauss(0, 3) for i in range(40)]
    pred = feed(ArimaPredictor(), series).predict_next()
    assert pred > sum(series[-5:]) / 5  # above the recent mean: the trend carries on


def test_arima_never_negative() -> None:
    falling = [200.0, 160, 120, 80, 40, 8, 1]
    assert feed(ArimaPredictor(), falling).predict_next() >= 0.0
    assert feed(ArimaPredictor(log1p=True), falling).predict_next() >= 0.0


def test_arima_window_bounds_buffer_and_replay_is_deterministic() -> None:
    series = noisy_series(60)
    a = feed(ArimaPredictor(window=30), series)
    b = feed(ArimaPredictor(window=30), series)
    assert a.count == 30
    pa = a.predict_next()
    assert math.isfinite(pa) and pa >= 0
    assert pa == b.predict_next() == a.predict_next()


# -- Prophet (real fits) ----------------------------------------------------------------------


def test_prophet_library_is_installed() -> None:
    import pandas  # noqa: F401
    import prophet  # noqa: F401

    assert predictor_missing_dependency("prophet") is None


def test_prophet_timestamps_use_interval() -> None:
    p = feed(ProphetPredictor(interval_seconds=180), [1, 2, 3, 4, 5, 6])
    assert p.next_timestamp() == PROPHET_START + timedelta(seconds=1080)


def test_prophet_window_caps_buffer() -> None:
    p = feed(ProphetPredictor(window=5), [1, 2, 3, 4, 5, 6, 7, 8])
    assert p.count == 5
    assert p.next_timestamp() == PROPHET_START + timedelta(seconds=8 * 180)


def test_prophet_below_min_points_returns_last() -> None:
    assert feed(ProphetPredictor(), [10, 20, 30]).predict_next() == 30
    assert ProphetPredictor().predict_next() == 0.0


def test_prophet_constant_series_and_log1p() -> None:
    assert feed(ProphetPredictor(), [42.0] * 6).predict_next() == 42.0
    assert feed(ProphetPredictor(log1p=True), [99.0] * 5).predict_next() == pytest.approx(99.0)
    p = feed(ProphetPredictor(log1p=True), [90, 95, 99, 97, 99, 101, 98])
    assert 80 < p.predict_next() < 120


def test_prophet_follows_trend() -> None:
    up = feed(ProphetPredictor(), RAMP).predict_next()
    assert 200 < up < 230
    down_series = [300 - 7.0 * i for i in range(30)]
    assert feed(ProphetPredictor(), down_series).predict_next() < down_series[-1]


def test_prophet_never_negative() -> None:
    falling = [200.0, 160, 120, 80, 40, 8]
    assert feed(ProphetPredictor(), falling).predict_next() >= 0.0


def test_prophet_replay_is_deterministic() -> None:
    series = noisy_series(25)
    a = feed(ProphetPredictor(window=20), series)
    b = feed(ProphetPredictor(window=20), series)
    pa = a.predict_next()
    assert math.isfinite(pa) and pa >= 0
    assert pa == pytest.approx(b.predict_next(), rel=1e-9)
    assert a.predict_next() == pa  # cached


# -- optional dependencies --------------------------------------------------------------------


def test_builtin_predictors_need_nothing() -> None:
    assert predictor_missing_dependency("constant") is None
    assert predictor_missing_dependency("kalman") is None


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError):
        predictor_missing_dependency("crystal-ball")


def test_hint_for_fake_kind_with_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = predictors.Kind(build=predictors.KINDS["constant"].build, needs=(("no_such_module_dynplan_xyz", "fake"),), window=lambda cfg: 0)
    monkeypatch.setitem(predictors.KINDS, "fake", fake)
    hint = predictor_missing_dependency("fake")
    assert hint is not None
    assert "pip install 'dynplan[fake]'" in hint and "no_such_module_dynplan_xyz" in hint


def _hide(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    real: Callable = importlib.util.find_spec

    def fake_find_spec(name: str, package: str | None = None):  # type: ignore[no-untyped-def]
        return None if name == hidden else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)


def test_hint_when_statsmodels_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "statsmodels")
    assert predictor_missing_dependency("arima") == (
        "needs the optional package 'statsmodels': pip install 'dynplan[arima]'"
    )
    with pytest.raises(OptionalDependencyMissing) as info:
        ArimaPredictor().predict_next()
    assert info.value.extra == "arima" and info.value.module == "statsmodels"


def test_prophet_missing_raises_at_predict_time(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "prophet")
    p = feed(ProphetPredictor(), [1, 2, 3])  # observing needs nothing
    with pytest.raises(OptionalDependencyMissing):
        p.predict_next()


# -- global state: the edges quiet the libraries; the core sets none ---------------------


def _forbid(*_: object, **__: object) -> None:
    raise AssertionError("a fit changed process-wide warning or logging state")


def test_prophet_fits_change_no_warning_filters_or_logger_state(monkeypatch: pytest.MonkeyPatch) -> None:
    import prophet  # noqa: F401 - imported first: prophet sets its own logger's level on import

    p = feed(ProphetPredictor(window=20), noisy_series(25))
    with monkeypatch.context() as m:  # undone before pytest's own logging runs again
        for name in ("catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"):
            m.setattr(warnings, name, _forbid)
        for name in ("setLevel", "addHandler", "removeHandler", "addFilter"):
            m.setattr(logging.Logger, name, _forbid)
        forecast = p.predict_next()
    assert math.isfinite(forecast)


def test_arima_fits_silence_statsmodels_one_at_a_time() -> None:
    # statsmodels forces "always" on its warnings when imported: only a fit-time filter works
    falling = [200.0, 160, 120, 80, 40, 8, 1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feed(ArimaPredictor(), falling).predict_next()
    assert caught == []
    assert not predictors._ARIMA_FITS.locked()


def test_the_edges_quiet_prophets_logs_and_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_forecasting_libraries()
        quiet_forecasting_libraries()  # idempotent
        for module in ("prophet.forecaster", "cmdstanpy.model", "scaler.core.predictors"):
            warnings.warn_explicit("fit chatter", FutureWarning, "x.py", 1, module=module)
        warnings.warn_explicit("news", FutureWarning, "x.py", 1, module="scaler.core.planner")
    assert [str(w.message) for w in caught] == ["news"]
    quiet = logging.getLogger("prophet")
    assert not quiet.filter(logging.LogRecord("prophet", logging.INFO, "f", 1, "Disabling yearly seasonality", None, None))
    assert quiet.filter(logging.LogRecord("prophet", logging.WARNING, "f", 1, "real news", None, None))
    assert len(quiet.filters) == 1
    stan = logging.getLogger("cmdstanpy")
    assert stan.level == logging.WARNING and stan.handlers
