"""The pure planning core: no I/O, no clock. Used by the scaler, explain, capacity and simulate."""
