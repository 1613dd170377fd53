"""The committed gRPC code matches proto/externalscaler.proto, and the wire names are KEDA's."""

from __future__ import annotations

from pathlib import Path

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.proto.regenerate import GENERATED, PACKAGE_DIR, generate


def test_committed_code_matches_regeneration(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(GENERATED)
    for name in GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (PACKAGE_DIR / name).read_text()
        assert fresh == committed, f"scaler/proto/{name} is stale: run `make proto` and commit it"


def test_generated_imports_are_package_relative() -> None:
    text = (PACKAGE_DIR / "externalscaler_pb2_grpc.py").read_text()
    assert "from scaler.proto import externalscaler_pb2" in text
    assert "\nimport externalscaler_pb2" not in text


def test_wire_names_and_field_numbers_are_kedas() -> None:
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"
    methods = {m.name: (m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods}
    assert methods == {
        "IsActive": ("ScaledObjectRef", "IsActiveResponse", False),
        "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse", True),
        "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", False),
        "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse", False),
        "StreamMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", True),
    }
    fields = {
        msg: {f.name: (f.number, f.type) for f in pb.DESCRIPTOR.message_types_by_name[msg].fields}
        for msg in ("ScaledObjectRef", "MetricSpec", "MetricValue", "GetMetricsRequest")
    }
    F = pb.DESCRIPTOR.message_types_by_name["MetricSpec"].fields[0].__class__
    assert fields["MetricSpec"] == {
        "metricName": (1, F.TYPE_STRING),
        "targetSize": (2, F.TYPE_INT64),
        "targetSizeFloat": (3, F.TYPE_DOUBLE),
    }
    assert fields["MetricValue"] == {
        "metricName": (1, F.TYPE_STRING),
        "metricValue": (2, F.TYPE_INT64),
        "metricValueFloat": (3, F.TYPE_DOUBLE),
    }
    assert fields["ScaledObjectRef"]["name"][0] == 1
    assert fields["ScaledObjectRef"]["namespace"][0] == 2
    assert fields["ScaledObjectRef"]["scalerMetadata"][0] == 3
    assert fields["GetMetricsRequest"]["scaledObjectRef"][0] == 1
    assert fields["GetMetricsRequest"]["metricName"][0] == 2
    assert hasattr(pb_grpc, "ExternalScalerStub") and hasattr(pb_grpc, "add_ExternalScalerServicer_to_server")
