"""Developer tooling, not part of the shipped package (left out of the wheel, type-checked).

- `demo`: `make demo`, the live local demo; runs from a clone (it reads `examples/`).
- `fake_frontend`: a synthetic Dynamo frontend replaying a trace against a small load model,
  for the demo and the tests (`python -m scaler.devtools.fake_frontend`).
- `frontend_exporter`: the frontend's Prometheus series it serves (`SyntheticFrontend`), which
  tests also set by hand.
- `backfill`: OpenMetrics text of a synthetic frontend history, for
  `promtool tsdb create-blocks-from openmetrics` (the tests' Prometheus history).

Nothing under `scaler/` outside this package imports it.
"""
