"""A bounded concurrent load on `l2m serve`'s REST API, with gRPC on the same server as the
reference: C clients (each its own keep-alive connection), one 64 px image per request
(serving_default, row format), for a fixed time; every answer is checked (HTTP 200, one
64x64x3 image) and anything else counts as an error.

    python benchmarks/bench_rest.py [--model saved_models/smiling] [--seconds 10] \\
        [--clients 1,16] [--out benchmarks/results]

Writes rest.json and rest.md. The machine's load average is recorded before and after: on a
shared machine compare the REST / gRPC ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def start_server(model: str, max_batch: int, timeout_us: int, max_concurrent: int):
    command = [sys.executable, "-m", "cli.main", "serve", model, "--port", "0",
               "--enable-batching", "--max-batch-size", str(max_batch),
               "--batch-timeout-micros", str(timeout_us),
               "--max-concurrent-requests", str(max_concurrent)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=os.environ)
    rest = None
    for line in process.stdout:
        if line.startswith("REST API on "):
            rest = int(line.split(":")[2].split("/")[0])
        if line.startswith("serving on "):
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, rest, int(line.rsplit(":", 1)[1])
    raise RuntimeError("server did not start")


def connect(port: int) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def rest_worker(port: int, body: bytes, size: int):
    connection = connect(port)

    def call() -> bool:
        nonlocal connection
        try:
            connection.request("POST", "/v1/models/smiling:predict", body=body,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = connect(port)
            return False
        if response.status != 200:
            return False
        image = np.asarray(json.loads(payload)["predictions"], np.uint8)
        return image.shape == (1, size, size, 3)

    return call


def grpc_worker(client, inputs: dict, size: int):
    import grpc

    def call() -> bool:
        try:
            return client.edit("smiling", **inputs).shape == (1, size, size, 3)
        except grpc.RpcError:
            return False

    return call


def load(make_call, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    calls = [make_call() for _ in range(clients)]
    for call in calls:  # warm each connection
        call()
    stop = time.monotonic() + seconds

    def worker(call):
        while time.monotonic() < stop:
            start = time.perf_counter()
            ok = call()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    ms = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": errors[0],
            "requests_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def cpu() -> dict:
    model, flags = platform.processor(), ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                     if line.startswith("model name"))
        flags = " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16")
                         if f in text.split())
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "flags": flags or "none of avx512f/avx512_bf16/amx_bf16",
            "cores": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/smiling")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout-micros", type=int, default=2000)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    from keras_l2mgan.atomic import write_file_atomic
    from keras_l2mgan.metrics import synthetic
    from keras_l2mgan.serving.client import ServingClient

    clients = [int(c) for c in args.clients.split(",")]
    size = 64
    face = synthetic.render(synthetic.split_params("test", 1), size)
    body = json.dumps({"instances": [{"images": face[0].tolist(), "source_domain": 0,
                                      "target_domain": 1, "alpha": 1.0}]}).encode()
    inputs = {"images": face, "source": np.zeros(1, np.int32), "target": np.ones(1, np.int32),
              "alpha": np.ones(1, np.float32)}
    load_before = os.getloadavg()
    process, rest_port, grpc_port = start_server(args.model, args.max_batch_size,
                                                 args.batch_timeout_micros, max(clients))
    rows = []
    try:
        for count in clients:
            rows.append({"api": "REST", **load(lambda: rest_worker(rest_port, body, size),
                                               count, args.seconds)})
            client = ServingClient(f"127.0.0.1:{grpc_port}", timeout_s=120)
            # One channel (HTTP/2 multiplexes the clients' calls), as gRPC clients share one.
            rows.append({"api": "gRPC", **load(lambda c=client: grpc_worker(c, inputs, size),
                                               count, args.seconds)})
            client.close()
            print(rows[-2], rows[-1], file=sys.stderr)
    finally:
        process.terminate()
        process.wait(timeout=60)
    results = {"model": args.model, "seconds": args.seconds, "body_bytes": len(body),
               "batching": {"max_batch_size": args.max_batch_size,
                            "batch_timeout_micros": args.batch_timeout_micros},
               "machine": {**cpu(), "load_average_before": load_before,
                           "load_average_after": os.getloadavg()},
               "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = results["machine"]
    lines = [f"# REST vs gRPC on `l2m serve`, {args.model} (64 px), one image per request",
             "",
             f"{machine['cpu']} ({machine['cores']} cores; {machine['flags']}); load average "
             f"{machine['load_average_before'][0]:.1f} before, "
             f"{machine['load_average_after'][0]:.1f} after (a shared machine: other jobs ran "
             "at the same time). Batching on (max batch "
             f"{args.max_batch_size}, {args.batch_timeout_micros} us); {args.seconds:g} s per "
             f"row; REST body {len(body):,} bytes (row format JSON).",
             "",
             "| API | clients | requests | errors | requests/s | p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['api']} | {row['clients']} | {row['requests']} | {row['errors']} "
                     f"| {row['requests_per_s']:.1f} | {row['p50_ms']:.1f} | "
                     f"{row['p99_ms']:.1f} |")
    write_file_atomic(out / "rest.json", json.dumps(results, indent=2) + "\n")
    write_file_atomic(out / "rest.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if any(row["errors"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
