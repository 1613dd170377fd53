"""Regenerate the gRPC code for KEDA's externalscaler.proto into scaler/proto/.

The .proto is copied into a temporary tree as `scaler/proto/externalscaler.proto` and
compiled with that tree as the include root, so the generated `_pb2_grpc` module imports
its sibling as `from scaler.proto import externalscaler_pb2` (package-relative) instead of
a top-level `import externalscaler_pb2` that breaks inside a package. The wire names come
from the proto's `package` and `service` only, so this path change does not touch them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The .proto lives at the repository root (proto/); a built wheel carries a copy next to
# the generated code (pyproject force-include), so look in both places.
PROTO_CANDIDATES = (
    PACKAGE_DIR.parents[1] / "proto" / "externalscaler.proto",
    PACKAGE_DIR / "externalscaler.proto",
)
GENERATED = ("externalscaler_pb2.py", "externalscaler_pb2.pyi", "externalscaler_pb2_grpc.py")


def proto_source() -> Path:
    """The externalscaler.proto this package is generated from."""
    for candidate in PROTO_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("externalscaler.proto not found in " + ", ".join(map(str, PROTO_CANDIDATES)))


def generate(out_dir: Path, proto: Path | None = None) -> list[Path]:
    """Compile the proto and write the generated modules into `out_dir`; return their paths."""
    from grpc_tools import protoc  # build-time only (grpcio-tools, in the test extra)

    proto = proto or proto_source()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dynplan-proto-") as tmp:
        root = Path(tmp) / "src"
        target = root / "scaler" / "proto"
        target.mkdir(parents=True)
        shutil.copyfile(proto, target / "externalscaler.proto")
        gen = Path(tmp) / "gen"
        gen.mkdir()
        include = Path(protoc.__file__).resolve().parent / "_proto"  # well-known types
        argv = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={gen}",
            f"--pyi_out={gen}",
            f"--grpc_python_out={gen}",
            "scaler/proto/externalscaler.proto",
        ]
        if protoc.main(argv) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
        written = []
        for name in GENERATED:
            dest = out_dir / name
            shutil.copyfile(gen / "scaler" / "proto" / name, dest)
            written.append(dest)
    return written


def main() -> int:
    for path in generate(PACKAGE_DIR):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
