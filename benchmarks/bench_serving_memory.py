"""Peak memory of `l2m serve` under hostile requests, and honest clients served through them.

    python benchmarks/bench_serving_memory.py [--preset small_64] [--rounds 3] [--clients 12]
        [--out benchmarks/results]

Starts the server (a subprocess, default limits), warms it up with honest requests, then for
each phase resets the server's peak RSS (VmHWM, via /proc/PID/clear_refs) and reads it after:

- attacks: the requests of the "nothing lost, nothing leaked" report, from --clients threads at
  once, --rounds times: a 135-byte uint8 [1, 37837, 37837, 3] image, a string tensor declaring
  5M entries, 2048 images from one value each, four 12000x12000 PNGs for edit_encoded; plus a
  tensor_content shorter than its shape, an unknown rank, a corrupt PNG behind a valid header
  and an out-of-range label. Each must get its status code and message.
- near_limit: edit_encoded photos just under the per-image pixel limit, --clients at once (the
  decoded-pixel budget lets one decode at a time).
- full_messages: edit_encoded requests of nearly --max-request-mb each, --clients at once.
- mixed: all of the above at once.

Honest serving_default and edit_encoded requests run alongside every phase and after it; their
outputs must match the SavedModel run locally. Writes serving_memory.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
MiB = 2**20


# --- the server process and its memory ---------------------------------------------------------

def start_server(base: Path, *args: str, timeout_s: float = 180) -> tuple[subprocess.Popen, int]:
    """`l2m serve BASE --port 0 ARGS` in a subprocess; (process, port) once it serves."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", str(base), "--port", "0", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith("serving on "):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining
            return process, int(line.rsplit(":", 1)[1])
    process.kill()
    raise RuntimeError("server did not start:\n" + "".join(seen[-20:]))


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def reset_peak(pid: int) -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- requests ----------------------------------------------------------------------------------

def grey_png(width: int, height: int, pad_bytes: int = 0) -> bytes:
    """A valid black greyscale PNG, compressed row block by row block (a 12000x12000 one is
    about 140 KB and never exists decoded here). pad_bytes adds an ancillary chunk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    compressor = zlib.compressobj(6)
    rows_per_block = max(1, (16 * MiB) // (width + 1))
    block = b"\0" * ((width + 1) * rows_per_block)
    parts = []
    for start in range(0, height, rows_per_block):
        rows = min(rows_per_block, height - start)
        parts.append(compressor.compress(block if rows == rows_per_block
                                         else block[:(width + 1) * rows]))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    padding = chunk(b"zzPd", b"\0" * pad_bytes) if pad_bytes else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + padding
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def photo_png(seed: int, width: int = 45, height: int = 61) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def raw_tensor(dtype: int, shape: list[int] | None, **values):
    """A TensorProto as an attacker writes it: any declared shape, any values."""
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    if shape is None:
        proto.tensor_shape.unknown_rank = True
    for size in shape or []:
        proto.tensor_shape.dim.add(size=size)
    return proto


def predict_request(signature: str, model: str = "faces", **inputs):
    """A PredictRequest; numpy values go through make_tensor_proto, TensorProtos as they are."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import model_pb2, predict_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model, signature_name=signature))
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                     else tf.make_tensor_proto(value))
    return request


def labels(count: int, target: int = 1) -> dict:
    import numpy as np

    return {"source_domain": np.zeros(count, np.int32),
            "target_domain": np.full(count, target, np.int32),
            "alpha": np.ones(count, np.float32)}


def attacks(img_size: int, max_images: int, image_pixels: int) -> list[dict]:
    """The hostile requests: name, request, expected status code name, expected message part."""
    import numpy as np

    uint8, int32, float32, string = 4, 3, 1, 7
    huge = grey_png(12000, 12000)
    good = photo_png(0)
    corrupt = good[:len(good) // 2]  # header and IHDR intact, IDAT cut
    return [
        {"name": "shape_bomb", "code": "INVALID_ARGUMENT",
         "message": "input images has shape [1, 37837, 37837, 3], incompatible",
         "request": predict_request("serving_default", images=raw_tensor(
             uint8, [1, 37837, 37837, 3], int_val=[0]), **labels(1))},
        {"name": "string_bomb", "code": "INVALID_ARGUMENT",
         "message": f"input image_bytes has 5000000 entries, over the server's limit of "
                    f"{max_images} images per request",
         "request": predict_request("edit_encoded", image_bytes=raw_tensor(
             string, [5_000_000], string_val=[b"x"]), **labels(1))},
        {"name": "batch_bomb", "code": "INVALID_ARGUMENT",
         "message": f"has 2048 entries, over the server's limit of {max_images} images",
         "request": predict_request(
             "serving_default",
             images=raw_tensor(uint8, [2048, img_size, img_size, 3], int_val=[128]),
             source_domain=raw_tensor(int32, [2048], int_val=[0]),
             target_domain=raw_tensor(int32, [2048], int_val=[1]),
             alpha=raw_tensor(float32, [2048], float_val=[1.0]))},
        {"name": "pixel_bomb", "code": "INVALID_ARGUMENT",
         "message": f"image_bytes[0] is 12000x12000 = 144,000,000 pixels, over the "
                    f"{image_pixels:,} pixels limit per image",
         "request": predict_request("edit_encoded", image_bytes=np.array([huge] * 4, object),
                                    **labels(4))},
        {"name": "short_content", "code": "INVALID_ARGUMENT",
         "message": "input images declares shape [32, "
                    f"{img_size}, {img_size}, 3] ({32 * img_size * img_size * 3} bytes) but "
                    "sends 10 bytes",
         "request": predict_request("serving_default", images=raw_tensor(
             uint8, [32, img_size, img_size, 3], tensor_content=b"\0" * 10), **labels(32))},
        {"name": "unknown_rank", "code": "INVALID_ARGUMENT",
         "message": "input alpha has an unknown rank",
         "request": predict_request("serving_default", **{
             **labels(1), "images": np.zeros((1, img_size, img_size, 3), np.uint8),
             "alpha": raw_tensor(float32, None, float_val=[1.0])})},
        {"name": "corrupt_png", "code": "INVALID_ARGUMENT", "message": "Invalid PNG data",
         "request": predict_request("edit_encoded", image_bytes=np.array([corrupt], object),
                                    **labels(1))},
        {"name": "bad_label", "code": "INVALID_ARGUMENT",
         "message": "assertion failed: [target_domain must be < 2]",
         "request": predict_request("edit_encoded", image_bytes=np.array([good], object),
                                    **labels(1, target=7))},
    ]


def near_limit_request(image_pixels: int):
    import numpy as np

    width = 9000
    height = image_pixels // width
    return predict_request("edit_encoded",
                           image_bytes=np.array([grey_png(width, height)], object), **labels(1))


def full_message_request(max_images: int, message_bytes: int):
    """edit_encoded with max_images small PNGs padded to fill message_bytes in all."""
    import numpy as np

    pad = max(0, message_bytes // max_images - 4096)
    image = grey_png(40, 30, pad_bytes=pad)
    return predict_request("edit_encoded",
                           image_bytes=np.array([image] * max_images, object),
                           **labels(max_images))


class Honest:
    """Honest requests and their expected outputs from the SavedModel run locally."""

    def __init__(self, version_dir: Path, img_size: int):
        import numpy as np
        import tensorflow as tf

        loaded = tf.saved_model.load(str(version_dir))
        rng = np.random.default_rng(7)
        self.images = {**labels(2), "images": rng.integers(0, 256, (2, img_size, img_size, 3),
                                                           dtype=np.uint8)}
        self.images["alpha"] = np.array([0.5, 1.0], np.float32)
        expected = loaded.signatures["serving_default"](
            **{k: tf.constant(v) for k, v in self.images.items()})["images"].numpy()
        self.expected_images = expected
        self.encoded = {"image_bytes": np.array([photo_png(1), photo_png(2, 80, 50)], object),
                        **labels(2)}
        outputs = loaded.signatures["edit_encoded"](
            **{k: tf.constant(v) for k, v in self.encoded.items()})["images"].numpy()
        self.expected_encoded = np.stack([tf.io.decode_png(png).numpy() for png in outputs])

    def check(self, stub, timeout_s: float = 300) -> None:
        """One honest request of each kind; AssertionError if an answer is wrong."""
        import numpy as np
        import tensorflow as tf

        response = stub.Predict(predict_request("serving_default", **self.images),
                                timeout=timeout_s)
        got = tf.make_ndarray(response.outputs["images"]).astype(int)
        assert np.abs(got - self.expected_images.astype(int)).max() <= 1, "serving_default"
        response = stub.Predict(predict_request("edit_encoded", **self.encoded),
                                timeout=timeout_s)
        got = np.stack([tf.io.decode_png(png).numpy()
                        for png in tf.make_ndarray(response.outputs["images"])]).astype(int)
        assert np.abs(got - self.expected_encoded.astype(int)).max() <= 1, "edit_encoded"


def run_concurrently(stub, jobs: list[dict], clients: int, timeout_s: float = 600) -> list[dict]:
    """Send every job's request from `clients` threads; each job gets 'got' (code, details)."""
    import grpc

    queue = list(jobs)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            try:
                stub.Predict(job["request"], timeout=timeout_s)
                job["got"] = ("OK", "")
            except grpc.RpcError as error:
                job["got"] = (error.code().name, error.details() or "")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return jobs


def stub_for(port: int):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def run_phase(name: str, pid: int, stub, jobs: list[dict], honest: Honest, clients: int,
              honest_rounds: int = 2) -> dict:
    """Reset the peak, send the jobs (with honest checks alongside), read the peak."""
    before = memory_mib(pid)
    reset_peak(pid)
    honest_failures: list[str] = []

    def honest_loop():
        for _ in range(honest_rounds):
            try:
                honest.check(stub)
            except Exception as error:  # reported, and the phase fails
                honest_failures.append(f"{type(error).__name__}: {error}")

    side = threading.Thread(target=honest_loop)
    start = time.perf_counter()
    side.start()
    run_concurrently(stub, jobs, clients)
    side.join()
    seconds = time.perf_counter() - start
    after = memory_mib(pid)
    try:
        honest.check(stub)  # and after the phase
    except Exception as error:
        honest_failures.append(f"after: {type(error).__name__}: {error}")
    wrong = [f"{job['name']}: got {job['got']}" for job in jobs
             if "code" in job and (job["got"][0] != job["code"]
                                   or job["message"] not in job["got"][1])]
    return {"phase": name, "requests": len(jobs), "seconds": round(seconds, 1),
            "rss_before_mib": round(before["VmRSS"], 1),
            "peak_mib": round(after["VmHWM"], 1), "rss_after_mib": round(after["VmRSS"], 1),
            "wrong_answers": wrong, "honest_failures": honest_failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small_64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=12,
                        help="concurrent client threads (below the server's 16 RPC limit)")
    parser.add_argument("--max-request-mb", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.export import export_saved_model
    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.photo import MAX_PIXELS
    from keras_l2mgan.serving.limits import MAX_IMAGES_PER_REQUEST, ServingLimits

    config = get_preset(args.preset, domain_names=("smiling", "not_smiling"))
    work = Path(tempfile.mkdtemp(prefix="bench_serving_memory."))
    save_bundle(L2MGAN(config), work / "model")
    export_saved_model(work / "model", "faces", output_dir=work / "saved_models")
    limits = ServingLimits(max_message_bytes=args.max_request_mb * MiB)
    process, port = start_server(work / "saved_models", "--max-request-mb",
                                 str(args.max_request_mb))
    channel, stub = stub_for(port)
    try:
        honest = Honest(work / "saved_models" / "faces" / "1", config.img_size)
        for _ in range(3):
            honest.check(stub)  # warm-up: first-call allocations are not the attacks' doing
        idle = memory_mib(process.pid)
        peak_resettable = reset_peak(process.pid)
        print(json.dumps({"idle": idle, "peak_resettable": peak_resettable}), flush=True)

        def attack_jobs():
            return [dict(job) for _ in range(args.rounds)
                    for job in attacks(config.img_size, MAX_IMAGES_PER_REQUEST, MAX_PIXELS)]

        def near_jobs():
            request = near_limit_request(MAX_PIXELS)
            return [{"name": "near_limit", "code": "OK", "message": "", "request": request}
                    for _ in range(args.clients)]

        def full_jobs():
            request = full_message_request(MAX_IMAGES_PER_REQUEST,
                                           limits.max_message_bytes - 64 * 1024)
            return [{"name": "full_message", "code": "OK", "message": "", "request": request}
                    for _ in range(args.clients)]

        phases = [("attacks", attack_jobs()), ("near_limit", near_jobs()),
                  ("full_messages", full_jobs())]
        phases.append(("mixed", attack_jobs() + near_jobs() + full_jobs()))
        rows = []
        for name, jobs in phases:
            row = run_phase(name, process.pid, stub, jobs, honest, args.clients)
            rows.append(row)
            print(json.dumps(row), flush=True)
        alive = process.poll() is None
    finally:
        channel.close()
        process.terminate()
        process.wait(timeout=30)

    baseline = idle["VmHWM"]
    # The stated bound (keras_l2mgan/serving/limits.py): up to 6 copies of a full message per
    # admitted request, 16 bytes per decoded pixel in flight, 300 MiB of allocator slack.
    bound = (baseline + limits.max_concurrent_requests * 6 * limits.max_message_bytes / MiB
             + limits.max_decoded_pixels * 16 / MiB + 300)
    worst = max(row["peak_mib"] for row in rows)
    meta = {"preset": args.preset, "img_size": config.img_size, "rounds": args.rounds,
            "clients": args.clients, "max_images_per_request": limits.max_images_per_request,
            "max_concurrent_requests": limits.max_concurrent_requests,
            "max_request_mib": args.max_request_mb,
            "max_decoded_pixels": limits.max_decoded_pixels, "image_pixels": MAX_PIXELS,
            "idle_peak_mib": round(baseline, 1), "bound_mib": round(bound, 1),
            "worst_peak_mib": worst, "within_bound": worst <= bound,
            "server_alive_after": alive, "peak_resettable": peak_resettable,
            "command": " ".join(["python", "benchmarks/bench_serving_memory.py", *sys.argv[1:]])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving_memory.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Serving memory under hostile requests, {args.preset} ({config.img_size} px)", "",
             f"`{meta['command']}`, default limits: {limits.max_images_per_request} images per "
             f"request, {limits.max_concurrent_requests} concurrent requests, "
             f"{args.max_request_mb} MiB per request, {limits.max_decoded_pixels:,} decoded "
             f"pixels in flight. {args.clients} client threads, {args.rounds} rounds of attacks; "
             "honest requests checked during and after every phase.", "",
             f"Idle peak RSS after warm-up: {baseline:.0f} MiB. Stated bound: idle + "
             f"{limits.max_concurrent_requests} x 6 x {args.max_request_mb} MiB + "
             f"{limits.max_decoded_pixels:,} px x 16 B + 300 MiB = {bound:.0f} MiB. Peak = VmHWM, "
             "reset before each phase.", "",
             "Before these limits (as reported): the 135-byte [1, 37837, 37837, 3] image took "
             "the server to 5.0 GB peak RSS, the 141-byte 5M-string tensor 1.6 GB, 2048 images "
             "from one value 33 s of CPU, four 12000x12000 PNGs 4.6 GB. Now each is refused from "
             "its declared shape or image header (the attacks row).", "",
             "RSS after a burst of full-size messages stays about 1 GiB above idle: freed "
             "memory the allocators keep for reuse (later phases reuse it; MALLOC_ARENA_MAX=2 or "
             "MALLOC_MMAP_THRESHOLD_ did not change it).", "",
             "| phase | requests | s | peak MiB | peak - idle | RSS after | wrong answers "
             "| honest ok |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['phase']} | {r['requests']} | {r['seconds']} | {r['peak_mib']:.0f} | "
              f"{r['peak_mib'] - baseline:.0f} | {r['rss_after_mib']:.0f} | "
              f"{len(r['wrong_answers'])} | {'yes' if not r['honest_failures'] else 'NO'} |"
              for r in rows]
    (out / "serving_memory.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(meta), flush=True)


if __name__ == "__main__":
    main()
