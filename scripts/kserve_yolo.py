#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""A KServe ModelServer hosting a YOLO ONNX model through ONNX Runtime, over the Open Inference
Protocol (v2) on gRPC: the server the remote backend of yolodetect is tested and benchmarked
against (tests/remote.rs, scripts/bench-remote.sh, scripts/gpu/remote-bench.sh).

    kserve_yolo.py --model yolov8n.onnx --name yolov8n --grpc-port 8001 [--http-port 8080]
                   [--provider cpu|cuda] [--threads N] [--tls-cert PEM --tls-key PEM]

Answers ModelMetadata with the ONNX model's input and output (names, FP32, shapes, -1 for a
dynamic dimension) and ModelInfer with raw FP32 output, whatever batch the request carries (a
static-batch model runs it item by item). With --tls-cert/--tls-key the gRPC port speaks TLS
(grpcs:// on the client side).
"""

import argparse
import logging
import sys

import numpy as np
import onnxruntime as ort

# KServe parses sys.argv when it is imported: give it only its own options (gRPC's 8 MiB message
# limit is less than two 640x640 FP32 frames).
_OURS = sys.argv[1:]
sys.argv = sys.argv[:1] + ["--grpc_max_receive_message_length", str(1 << 30),
                           "--grpc_max_send_message_length", str(1 << 30)]
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402

ORT_TYPES = {"tensor(float)": "FP32", "tensor(float16)": "FP16"}


def dims(shape):
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


class YoloModel(Model):
    def __init__(self, name, path, provider, threads):
        super().__init__(name)
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if provider == "cuda":
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, opts, providers=providers)
        if provider == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise SystemExit("onnxruntime: the CUDA execution provider did not start")
        self.input = self.session.get_inputs()[0]
        self.static_batch = self.input.shape[0] if isinstance(self.input.shape[0], int) else None
        logging.info("%s: providers %s", name, self.session.get_providers())
        self.ready = True

    def get_input_types(self):
        return [
            {"name": i.name, "datatype": ORT_TYPES.get(i.type, i.type), "shape": dims(i.shape)}
            for i in self.session.get_inputs()
        ]

    def get_output_types(self):
        return [
            {"name": o.name, "datatype": ORT_TYPES.get(o.type, o.type), "shape": dims(o.shape)}
            for o in self.session.get_outputs()
        ]

    def predict(self, payload: InferRequest, headers=None, response_headers=None):
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        if self.static_batch == 1 and x.shape[0] > 1:
            y = np.concatenate([self.session.run(None, {self.input.name: x[i:i + 1]})[0]
                                for i in range(x.shape[0])])
        else:
            y = self.session.run(None, {self.input.name: x})[0]
        out = InferOutput(name=self.session.get_outputs()[0].name, shape=list(y.shape),
                          datatype="FP32")
        out.set_data_from_numpy(np.ascontiguousarray(y, dtype=np.float32), binary_data=True)
        return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=[out],
                             use_binary_outputs=True)


def serve_tls(cert, key):
    """KServe's GRPCServer (0.21) only opens an insecure port, as deployments usually terminate
    TLS in front of it (Triton has --grpc-use-ssl): make the port it opens a TLS one instead."""
    import grpc
    from grpc.aio import _server

    with open(cert, "rb") as c, open(key, "rb") as k:
        creds = grpc.ssl_server_credentials([(k.read(), c.read())])
    _server.Server.add_insecure_port = lambda self, addr: self.add_secure_port(addr, creds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--name", default="yolov8n")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--tls-cert", help="PEM certificate chain of the gRPC port (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    a = p.parse_args(_OURS)
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if a.tls_cert:
        serve_tls(a.tls_cert, a.tls_key)
    model = YoloModel(a.name, a.model, a.provider, a.threads)
    http_port = a.http_port
    if http_port == 0:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            http_port = s.getsockname()[1]
    ModelServer(grpc_port=a.grpc_port, http_port=http_port, workers=1,
                enable_docs_url=False).start([model])


if __name__ == "__main__":
    main()
