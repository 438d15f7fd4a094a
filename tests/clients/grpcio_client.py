#!/usr/bin/env python3
"""A Python grpcio client of rollpointd, as a user would write it: stubs
compiled from proto/ with grpcio-tools, a channel with no authority option
(grpcio >= 1.57 sends the socket path, percent-encoded, as :authority).

usage: grpcio_client.py PROTO_DIR TARGET CONTAINER [TOKEN]
TARGET is unix:/path/to.sock or 127.0.0.1:PORT. Creates a snapshot with an
alias, lists it, restores it; prints one JSON line of what it saw."""

import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc


def stubs(proto_dir, out):
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    source = os.path.join(proto_dir, "rollpoint", "v1", "rollpoint.proto")
    code = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", source])
    if code != 0:
        sys.exit(f"protoc failed: {code}")
    sys.path.insert(0, out)
    return (importlib.import_module("rollpoint.v1.rollpoint_pb2"),
            importlib.import_module("rollpoint.v1.rollpoint_pb2_grpc"))


def main():
    proto_dir, target, container = sys.argv[1:4]
    token = sys.argv[4] if len(sys.argv) > 4 else None
    with tempfile.TemporaryDirectory() as out:
        pb, rpc = stubs(proto_dir, out)
        metadata = [("authorization", f"Bearer {token}")] if token else None
        with grpc.insecure_channel(target) as channel:
            snapshots = rpc.SnapshotServiceStub(channel)
            created = snapshots.CreateSnapshot(
                pb.CreateSnapshotRequest(container=container, alias="py-point", expiry_days=7),
                metadata=metadata, timeout=30).snapshot
            listed = snapshots.ListSnapshots(pb.ListSnapshotsRequest(container=container),
                                             metadata=metadata, timeout=30).snapshots
            restored = snapshots.RestoreSnapshot(
                pb.RestoreSnapshotRequest(container=container, snapshot="py-point"),
                metadata=metadata, timeout=60)
            print(json.dumps({
                "created": created.name,
                "alias": created.alias,
                "listed": [s.name for s in listed],
                "restored": restored.restored.name,
                "pre_restore": restored.pre_restore_snapshot,
            }))


if __name__ == "__main__":
    main()
