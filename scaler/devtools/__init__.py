"""Developer tooling, not part of the shipped package (left out of the wheel, type-checked).

- `demo`: `make demo`, the live local demo; runs from a clone (it reads `examples/`).
- `fake_frontend`: a synthetic Dynamo frontend serving the frontend's Prometheus series,
  for the demo and the tests.
- `backfill`: OpenMetrics text of a synthetic frontend history, for
  `promtool tsdb create-blocks-from openmetrics` (the tests' Prometheus history).

Nothing under `scaler/` outside this package imports it.
"""
