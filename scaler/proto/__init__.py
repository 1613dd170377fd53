"""KEDA's externalscaler protocol: Python code generated from proto/externalscaler.proto.

Regenerate with `make proto` (`python -m scaler.proto.regenerate`); never edit the
generated `externalscaler_pb2*.py` files by hand. tests/unit/test_service_proto.py fails when
they drift from the .proto.
"""
