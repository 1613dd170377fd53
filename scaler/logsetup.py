"""Process-wide settings for the optional forecasting libraries, applied by the edges.

The planning core sets no logger levels or handlers and installs no warning filters of its
own (decision loops fit in threads). The commands that fit predictors (`dynplan serve`,
`explain`, `simulate`) call `quiet_forecasting_libraries()` once instead, so that a Prophet
fit per tick neither logs nor warns:

- prophet logs an ERROR about plotly when it is imported and INFO on every fit, and sets
  its logger to INFO when imported (whatever was set before): a logger filter keeps its
  records below WARNING out, and `prophet.plot` logs nothing below CRITICAL;
- cmdstanpy adds a stderr INFO handler of its own unless a logger above it has one, and
  logs every fit: a NullHandler and level WARNING keep it quiet;
- prophet's fits raise pandas deprecation warnings: warnings attributed to prophet,
  cmdstanpy, or scaler.core.predictors calling them, are ignored.

ARIMA fits silence statsmodels' warnings themselves (scaler.core.predictors explains why a
filter installed here cannot).
"""

from __future__ import annotations

import logging
import warnings

# Modules whose warnings are fit chatter: regular expressions matched (re.match) against
# the module a warning is attributed to, so each covers its submodules.
_QUIET_WARNINGS_FROM = (r"prophet\b", r"cmdstanpy\b", r"scaler\.core\.predictors\b")


class _WarningAndAbove(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def quiet_forecasting_libraries() -> None:
    """Silence prophet's and cmdstanpy's per-fit logs and warnings. Idempotent."""
    prophet = logging.getLogger("prophet")
    if not any(isinstance(f, _WarningAndAbove) for f in prophet.filters):
        prophet.addFilter(_WarningAndAbove())
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
    stan = logging.getLogger("cmdstanpy")
    if not stan.handlers:
        stan.addHandler(logging.NullHandler())
    stan.setLevel(logging.WARNING)
    for module in _QUIET_WARNINGS_FROM:
        warnings.filterwarnings("ignore", module=module)
