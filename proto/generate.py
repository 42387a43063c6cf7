"""Regenerate pdp/v1/decision_pb2.py, decision_pb2_grpc.py and decision_pb2.pyi from the proto.

Run from anywhere: ``python proto/generate.py``. The output is committed; tests/test_wire.py
regenerates into a temporary folder and fails when the committed files are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
PROTOS = ["pdp/v1/decision.proto"]


def generate(out_dir: Path) -> None:
    """Write the generated modules under ``out_dir`` (as ``out_dir/pdp/v1/...``)."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    out_dir.mkdir(parents=True, exist_ok=True)
    out = str(out_dir)
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
            f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *PROTOS]
    # Relative proto paths under -I proto make protoc write `from pdp.v1 import decision_pb2`.
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
