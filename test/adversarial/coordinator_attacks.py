"""The hardening review's attacks on a running autoprune coordinator, from a second gRPC implementation.

    coordinator_attacks.py HOST:PORT --protocol-version N      (the join token in AUTOPRUNE_JOIN_TOKEN)

Compiles proto/autoprune/v1/coordinator.proto with grpc_tools.protoc into a temporary directory, then
registers as "mallory": an insider that holds the join token, as every worker does, and so has a
credential of its own. It prints {"event": "registered"} and waits for a line on stdin; then it tries each
attack against the workers w0 and w1 and prints one line per attack, {"event": "attack", "attack": NAME,
"code": STATUS_NAME, "details": ..., "trailing": {...}}, then {"event": "done"}. Mallory heartbeats until
stdin closes, so that the coordinator never counts it as lost.
"""

import argparse
import importlib.resources
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

import grpc
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
CREDENTIAL_KEY = "autoprune-credential"
TIMEOUT_S = 10


def compile_protocol(into):
    """The Coordinator's messages and stub, generated from the contract as it is now."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    proto = "autoprune/v1/coordinator.proto"
    status = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={into}", f"--grpc_python_out={into}", proto])
    if status != 0:
        sys.exit(f"grpc_tools.protoc failed ({status}) on {PROTO_ROOT / proto}")
    sys.path.insert(0, into)
    from autoprune.v1 import coordinator_pb2, coordinator_pb2_grpc

    return coordinator_pb2, coordinator_pb2_grpc


def report(name, call):
    """Makes the call and prints how it ended: its status, details and trailing metadata."""
    try:
        call()
        line = {"attack": name, "code": "OK", "details": "", "trailing": {}}
    except grpc.RpcError as error:
        trailing = {key: value for key, value in (error.trailing_metadata() or ())}
        line = {"attack": name, "code": error.code().name, "details": error.details(), "trailing": trailing}
    print(json.dumps({"event": "attack", **line}), flush=True)


def doctored_state(config_hash, step):
    """A state in the checkpoint format (safetensors) at `step` of phase 0, its first layer zeroed."""
    position = {"phase": "dense", "phaseIndex": "0", "step": str(step), "epoch": "0", "configHash": config_hash, "model": "lenet300"}
    tensor = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    header = json.dumps({"__metadata__": {"format": "autoprune-checkpoint/1", **position}, "parameter/fc1.kernel": tensor}).encode()
    return len(header).to_bytes(8, "little") + header + bytes(8)


class Attacker:
    """Calls on the coordinator, each as a thunk for report(): `mine` presents mallory's own credential."""

    def __init__(self, stub, pb, registration, generation):
        self.stub, self.pb, self.generation = stub, pb, generation
        self.mine = ((CREDENTIAL_KEY, registration.credential),)
        self.forged = doctored_state(registration.config_hash, 1499)

    def call(self, method, request, metadata=()):
        return lambda: getattr(self.stub, method)(request, metadata=metadata, timeout=TIMEOUT_S)

    def fetch(self, worker_id, metadata):
        request = self.pb.StateRequest(worker_id=worker_id, generation=self.generation, phase_index=0)
        return lambda: list(self.stub.FetchState(request, metadata=metadata, timeout=TIMEOUT_S))

    def upload(self, worker_id, metadata, total_bytes=None):
        chunk = self.pb.StateChunk(worker_id=worker_id, generation=self.generation, phase_index=0, step=1499, data=self.forged)
        chunk.total_bytes = len(self.forged) if total_bytes is None else total_bytes
        return lambda: self.stub.UploadState(iter([chunk]), metadata=metadata, timeout=TIMEOUT_S)

    def register(self, worker_id, join_token, protocol_version, metadata=()):
        request = self.pb.RegisterRequest(
            worker_id=worker_id, address="127.0.0.1:9", data_address="127.0.0.1:9", join_token=join_token, protocol_version=protocol_version
        )
        return self.call("Register", request, metadata)

    def member_calls(self, worker_id, metadata):
        """What a member of the run calls, made as `worker_id`."""
        pb, generation = self.pb, self.generation
        return [
            ("heartbeat", self.call("Heartbeat", pb.HeartbeatRequest(worker_id=worker_id, generation=generation), metadata)),
            ("report-failure", self.report_failure(worker_id, metadata)),
            ("fetch-state", self.fetch(worker_id, metadata)),
            ("upload-state", self.upload(worker_id, metadata)),
            ("rendezvous", self.call("Rendezvous", pb.RendezvousRequest(worker_id=worker_id, last_generation=generation, backend="cpu"), metadata)),
            ("next-task", self.call("NextTask", pb.TaskRequest(worker_id=worker_id, generation=generation, finished_task=0), metadata)),
            ("report-progress", self.call("ReportProgress", pb.ProgressReport(worker_id=worker_id, generation=generation, step=4, loss=9), metadata)),
            ("report-evaluation", self.call("ReportEvaluation", pb.EvaluationReport(worker_id=worker_id, generation=generation, correct=1, count=1), metadata)),
        ]

    def report_failure(self, worker_id, metadata):
        request = self.pb.FailureReport(worker_id=worker_id, generation=self.generation, reason="forged", will_rejoin=False)
        return self.call("ReportFailure", request, metadata)


def attack(attacker, token, protocol):
    """Every attack, in order; `protocol`: the coordinator's protocol version."""
    pb, generation = attacker.pb, attacker.generation
    report("heartbeat-unknown-id", attacker.call("Heartbeat", pb.HeartbeatRequest(worker_id="nobody", generation=generation)))
    for name, call in attacker.member_calls("w0", ()):
        report(f"{name}-as-w0", call)
    for name, call in attacker.member_calls("w0", attacker.mine):
        report(f"{name}-as-w0-with-mallorys-credential", call)
    report("register-wrong-token-and-protocol", attacker.register("eve", "not-the-join-token", protocol + 1))
    report("register-live-id-without-credential", attacker.register("w0", token, protocol))
    report("register-live-id-with-mallorys-credential", attacker.register("w0", token, protocol, attacker.mine))
    report("register-beyond-the-maximum", attacker.register("eve", token, protocol))
    report("report-failure-as-mallory", attacker.report_failure("mallory", attacker.mine))
    report("upload-state-as-mallory", attacker.upload("mallory", attacker.mine))
    report("upload-state-announcing-1-tib-as-mallory", attacker.upload("mallory", attacker.mine, total_bytes=1 << 40))
    report("oversized-heartbeat", attacker.call("Heartbeat", pb.HeartbeatRequest(worker_id="x" * (4 << 20), generation=generation)))
    report("oversized-register", attacker.register("eve", "t" * (4 << 20), protocol))


def keep_alive(stub, pb, metadata, interval_s, stop):
    """Mallory's heartbeats: silent, it would be lost, and a lost worker re-forms the run."""
    while not stop.wait(interval_s):
        try:
            stub.Heartbeat(pb.HeartbeatRequest(worker_id="mallory"), metadata=metadata, timeout=TIMEOUT_S)
        except grpc.RpcError:
            pass  # the coordinator has finished and gone


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="the coordinator, HOST:PORT")
    parser.add_argument("--protocol-version", type=int, required=True)
    args = parser.parse_args()
    token = os.environ["AUTOPRUNE_JOIN_TOKEN"]
    with tempfile.TemporaryDirectory(prefix="autoprune-attacks-") as generated:
        pb, pb_grpc = compile_protocol(generated)
        with grpc.insecure_channel(args.address) as channel:
            stub = pb_grpc.CoordinatorStub(channel)
            registration = stub.Register(
                pb.RegisterRequest(
                    worker_id="mallory", address="127.0.0.1:9", data_address="127.0.0.1:9", join_token=token, protocol_version=args.protocol_version
                ),
                timeout=TIMEOUT_S,
            )
            mine = ((CREDENTIAL_KEY, registration.credential),)
            stop = threading.Event()
            heartbeats = threading.Thread(target=keep_alive, args=(stub, pb, mine, registration.heartbeat_interval_ms / 1000, stop))
            heartbeats.start()
            print(json.dumps({"event": "registered", "worker": "mallory"}), flush=True)
            if sys.stdin.readline():
                generation = stub.Heartbeat(pb.HeartbeatRequest(worker_id="mallory"), metadata=mine, timeout=TIMEOUT_S).generation
                attack(Attacker(stub, pb, registration, generation), token, args.protocol_version)
                print(json.dumps({"event": "done"}), flush=True)
                sys.stdin.read()
            stop.set()
            heartbeats.join()


if __name__ == "__main__":
    main()
