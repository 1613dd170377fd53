"""One-step-ahead predictors of a scalar series (request rate, mean ISL, mean OSL).

Semantics follow Dynamo's load predictors:
- non-finite inputs become 0 (a missing metric means "nothing seen", not a crash);
- zeros are dropped until the first non-zero value (the idle period after a deploy would
  otherwise drag every forecast down); zeros after that are real idle windows and are kept;
- no data -> 0; fewer than `min_points` observations -> the last value;
- forecasts are never negative; optionally the model runs on log1p(y).

Every predictor is a deterministic function of its observation sequence, so replaying the
same observations into a fresh instance rebuilds it exactly (restart safety). Buffers are
bounded. ARIMA (statsmodels) and Prophet are optional extras, imported only when they fit.
No I/O and no clock here, except what Prophet's Stan backend does internally. Logger
levels and Prophet's warnings are the edges' business, set once at start-up
(`scaler.logsetup.quiet_forecasting_libraries`). ARIMA fits are the one exception: they
silence warnings themselves, one fit at a time (see `_ARIMA_FITS`).

`KINDS` maps each plan `type` to how to build it, the optional packages it needs and the
window it fits on; `make_predictor`, `memory` and `predictor_missing_dependency` read it.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import warnings
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from scaler.core.plan import PredictorSpec
from scaler.errors import OptionalDependencyMissing

# Values kept by predictors that only need the last value and a count.
HISTORY = 100
# Synthetic time origin for Prophet: fixed so that replays give the same fit.
PROPHET_START = datetime(2024, 1, 1)
# ARIMA candidates (order, trend), best AIC wins. Drift ("t" with d=1) lets a ramp be
# followed; (1,0,0)+const covers a stationary series. Small on purpose: a few fits per tick.
ARIMA_CANDIDATES: tuple[tuple[tuple[int, int, int], str], ...] = (
    ((1, 1, 1), "t"),
    ((0, 1, 1), "t"),
    ((1, 0, 0), "c"),
)
# statsmodels puts "always" filters for its warning classes at the front of the process's
# filter list when it is imported (at the first fit), ahead of any filter an edge installed
# at start-up; so ARIMA fits silence their convergence chatter themselves. catch_warnings
# swaps process-wide state and decision loops fit in threads: one ARIMA fit at a time.
_ARIMA_FITS = threading.Lock()


@runtime_checkable
class Predictor(Protocol):
    def observe(self, value: float) -> None: ...

    def predict_next(self) -> float: ...

    @property
    def count(self) -> int: ...


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # broken parent package, or a module without __spec__
        return False


def predictor_missing_dependency(kind: str) -> str | None:
    """Install hint when predictor `kind` needs a package that is not importable, else None."""
    for module, extra in _kind(kind).needs:
        if not _importable(module):
            return f"needs the optional package '{module}': pip install 'dynplan[{extra}]'"
    return None


def _require(kind: str) -> None:
    for module, extra in _kind(kind).needs:
        if not _importable(module):
            raise OptionalDependencyMissing(f"the {kind} predictor", extra, module)


class _BasePredictor:
    """Input cleaning, leading-zero skipping, min_points, caching and the >= 0 clamp."""

    kind = "constant"

    def __init__(self, *, min_points: int = 1, log1p: bool = False, window: int = HISTORY) -> None:
        if min_points < 1 or window < 1:
            raise ValueError("min_points and window must be >= 1")
        self.min_points = min_points
        self.log1p = log1p
        self._values: deque[float] = deque(maxlen=window)
        self._accepted = 0  # all accepted observations, not capped by the window
        self._seen_nonzero = False
        self._cached: float | None = None
        self._deps_ok = False

    # -- observing ----------------------------------------------------------------------
    def observe(self, value: float) -> None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = 0.0
        # Rates and token counts cannot be negative: a negative value is a glitch (and
        # would break log1p), so it counts as 0 like a missing one.
        v = v if math.isfinite(v) and v > 0 else 0.0
        if not self._seen_nonzero:
            if v == 0.0:
                return
            self._seen_nonzero = True
        self._values.append(v)
        self._accepted += 1
        self._cached = None
        self._on_observe(v)

    def reset_idle_skip(self) -> None:
        """Skip leading zeros again (after a warm-up replay, before live data)."""
        self._seen_nonzero = False

    @property
    def count(self) -> int:
        return len(self._values)

    @property
    def observed(self) -> int:
        """Accepted observations since construction (the buffer keeps only the last ones)."""
        return self._accepted

    # -- predicting ---------------------------------------------------------------------
    def predict_next(self) -> float:
        if not self._deps_ok:
            _require(self.kind)
            self._deps_ok = True
        if self._cached is not None:
            return self._cached
        if not self._values:
            result = 0.0
        elif self._accepted < self.min_points:
            result = self._values[-1]
        else:
            result = self._forecast()
            if not math.isfinite(result):
                result = self._values[-1]
        self._cached = max(0.0, float(result))
        return self._cached

    # -- hooks --------------------------------------------------------------------------
    def _on_observe(self, value: float) -> None:
        pass

    def _forecast(self) -> float:
        return self._values[-1]

    def _to_model(self, v: float) -> float:
        return math.log1p(v) if self.log1p else v

    def _from_model(self, v: float) -> float:
        return math.expm1(v) if self.log1p else v


class ConstantPredictor(_BasePredictor):
    """Next value = last value."""

    kind = "constant"

    def __init__(self, *, min_points: int = 1, log1p: bool = False) -> None:
        super().__init__(min_points=min_points, log1p=log1p)


def kalman_window(min_points: int) -> int:
    """Values a Kalman forecast filters: 4 x min_points, at least 20 and below the warm-up's
    cap of 200 (never below min_points). A warm-up replays at least one window more
    (`memory`), so a restarted scaler filters exactly the values a never-stopped one does,
    and the decision before the last one is already made on them: equal bit for bit."""
    return max(min_points, min(199, max(20, 4 * min_points)))


class KalmanPredictor(_BasePredictor):
    """Local linear trend Kalman filter: state [level, trend], observing the level.

    The forecast runs the filter, from the same initial state every time, over the last
    `window` values with their leading zeros dropped: a function of those values only. A
    recursive filter carried since start-up would remember its first value (decaying, never
    gone: a restart once gave 76.997335 where the scaler that never stopped gave 76.99181).
    """

    kind = "kalman"

    def __init__(
        self,
        *,
        q_level: float = 1.0,
        q_trend: float = 0.1,
        r: float = 10.0,
        min_points: int = 5,
        log1p: bool = False,
        window: int | None = None,
    ) -> None:
        super().__init__(min_points=min_points, log1p=log1p, window=window or kalman_window(min_points))
        self._q_level = max(1e-12, q_level)
        self._q_trend = max(1e-12, q_trend)
        self._R = max(1e-9, r)

    def _recent(self) -> list[float]:
        values = list(self._values)
        first = next((i for i, v in enumerate(values) if v != 0.0), len(values))
        return values[first:]

    def predict_next(self) -> float:
        if self._cached is not None:
            return self._cached
        values = self._recent()
        if not values:
            result = 0.0
        elif len(values) < self.min_points:
            result = values[-1]
        else:
            result = self._filter(values)
            if not math.isfinite(result):
                result = values[-1]
        self._cached = max(0.0, float(result))
        return self._cached

    def _filter(self, values: list[float]) -> float:
        """One step ahead of the filter over `values`; 2x2 algebra in plain floats
        (F = [[1, 1], [0, 1]], H = [1, 0], Q = diag(q_level, q_trend), P0 = 1000 I)."""
        level, trend = self._to_model(values[0]), 0.0
        p00, p01, p11 = 1000.0, 0.0, 1000.0
        for v in values[1:]:
            z = self._to_model(v)
            # predict: x = F x, P = F P F' + Q
            level, trend = level + trend, trend
            p00, p01, p11 = p00 + 2 * p01 + p11 + self._q_level, p01 + p11, p11 + self._q_trend
            # update with z
            s = p00 + self._R
            k0, k1 = p00 / s, p01 / s
            innovation = z - level
            level, trend = level + k0 * innovation, trend + k1 * innovation
            p00, p01, p11 = p00 - k0 * p00, p01 - k0 * p01, p11 - k1 * p01
        return self._from_model(level + trend)


class ArimaPredictor(_BasePredictor):
    """ARIMA refit on a sliding window; order chosen by AIC among `ARIMA_CANDIDATES`."""

    kind = "arima"

    def __init__(self, *, window: int = 100, min_points: int = 5, log1p: bool = False) -> None:
        super().__init__(min_points=min_points, log1p=log1p, window=window)

    def _forecast(self) -> float:
        values = list(self._values)
        if all(v == values[0] for v in values):
            return values[0]  # a flat series has no variance to fit; it predicts itself
        try:
            from statsmodels.tsa.arima.model import ARIMA
        except ImportError as exc:
            raise OptionalDependencyMissing("the arima predictor", "arima", "statsmodels") from exc
        y = np.array([self._to_model(v) for v in values])
        try:
            best_aic, best_fc = math.inf, None
            with _ARIMA_FITS, warnings.catch_warnings():
                # Convergence chatter on short or noisy windows is expected; AIC arbitrates.
                warnings.simplefilter("ignore")
                for order, trend in ARIMA_CANDIDATES:
                    try:
                        res = ARIMA(y, order=order, trend=trend).fit()
                    except Exception:  # noqa: BLE001 - one failed candidate is not fatal
                        continue
                    fc = float(np.asarray(res.forecast(1))[0])
                    if math.isfinite(res.aic) and math.isfinite(fc) and res.aic < best_aic:
                        best_aic, best_fc = res.aic, fc
            if best_fc is None:
                return values[-1]
            return self._from_model(best_fc)
        except Exception:  # noqa: BLE001 - Dynamo's rule: a failed forecast reuses the last value
            return values[-1]


class ProphetPredictor(_BasePredictor):
    """Meta's Prophet refit on a sliding window with synthetic, evenly spaced timestamps."""

    kind = "prophet"

    def __init__(
        self,
        *,
        window: int = 50,
        interval_seconds: float = 180.0,
        min_points: int = 5,
        log1p: bool = False,
    ) -> None:
        super().__init__(min_points=min_points, log1p=log1p, window=window)
        if not interval_seconds > 0:
            raise ValueError("interval_seconds must be positive")
        self.interval_seconds = float(interval_seconds)
        self._steps: deque[int] = deque(maxlen=window)  # step index of each buffered value

    def _on_observe(self, value: float) -> None:
        self._steps.append(self._accepted - 1)

    def timestamp(self, step: int) -> datetime:
        return PROPHET_START + timedelta(seconds=step * self.interval_seconds)

    def next_timestamp(self) -> datetime:
        """The timestamp the next forecast is for (one interval after the last point)."""
        return self.timestamp(self._steps[-1] + 1 if self._steps else 0)

    def _forecast(self) -> float:
        values = list(self._values)
        if all(v == values[0] for v in values):
            return values[0]
        try:
            import pandas as pd
            from prophet import Prophet
        except ImportError as exc:
            raise OptionalDependencyMissing("the prophet predictor", "prophet", "prophet") from exc
        try:
            frame = pd.DataFrame(
                {"ds": [self.timestamp(s) for s in self._steps], "y": [self._to_model(v) for v in values]}
            )
            model = Prophet()
            model.fit(frame)
            forecast = model.predict(pd.DataFrame({"ds": [self.next_timestamp()]}))
            return self._from_model(float(forecast["yhat"].iloc[0]))
        except Exception:  # noqa: BLE001 - a failed fit reuses the last value
            return values[-1]


# -- the registry ------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """One predictor type: how the plan's spec builds it, the optional packages it needs
    as (top-level module, extra) pairs, and how many past values its fit looks at."""

    build: Callable[[PredictorSpec, float], Predictor]  # (spec, interval seconds) -> predictor
    # top-level names only: find_spec on a dotted name would import the parent package
    needs: tuple[tuple[str, str], ...]
    window: Callable[[PredictorSpec], int]  # values the fit uses; 0: a recursive filter


KINDS: dict[str, Kind] = {
    "constant": Kind(
        build=lambda cfg, _: ConstantPredictor(min_points=cfg.min_points, log1p=cfg.log1p),
        needs=(),
        window=lambda cfg: 0,
    ),
    "kalman": Kind(
        build=lambda cfg, _: KalmanPredictor(
            q_level=cfg.kalman.q_level, q_trend=cfg.kalman.q_trend, r=cfg.kalman.r,
            min_points=cfg.min_points, log1p=cfg.log1p,
        ),
        needs=(),
        window=lambda cfg: kalman_window(cfg.min_points) + 1,
    ),
    "arima": Kind(
        build=lambda cfg, _: ArimaPredictor(window=cfg.arima.window, min_points=cfg.min_points, log1p=cfg.log1p),
        needs=(("statsmodels", "arima"),),
        window=lambda cfg: cfg.arima.window,
    ),
    "prophet": Kind(
        build=lambda cfg, interval_seconds: ProphetPredictor(
            window=cfg.prophet.window, interval_seconds=interval_seconds,
            min_points=cfg.min_points, log1p=cfg.log1p,
        ),
        needs=(("prophet", "prophet"), ("pandas", "prophet")),
        window=lambda cfg: cfg.prophet.window,
    ),
}


def _kind(kind: str) -> Kind:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown predictor type {kind!r}") from None


def make_predictor(cfg: PredictorSpec, interval_seconds: float) -> Predictor:
    """A fresh predictor for one series, as the plan configures it."""
    return _kind(cfg.type).build(cfg, interval_seconds)


def memory(cfg: PredictorSpec) -> int:
    """Past intervals a predictor's forecast depends on: what a warm-up replays.

    The fit window (ARIMA, Prophet; the Kalman filter's plus one), and at least 4 x
    min_points: no predictor forecasts before min_points values.
    """
    return max(_kind(cfg.type).window(cfg), 4 * cfg.min_points)
