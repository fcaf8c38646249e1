"""The committed *_pb2.py files are what `make proto` generates from the committed .proto files."""

import pathlib
import subprocess
import sys

PROTO_DIR = pathlib.Path(__file__).resolve().parents[2] / "signalserver" / "proto"


def test_generated_protobuf_code_is_up_to_date(tmp_path):
    protos = sorted(PROTO_DIR.glob("*.proto"))
    assert protos
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp_path}", *map(str, protos)],
        check=True,
    )
    for proto in protos:
        generated = proto.with_name(proto.stem + "_pb2.py")
        assert generated.read_text() == (tmp_path / generated.name).read_text(), f"run `make proto`: {generated.name} is stale"
