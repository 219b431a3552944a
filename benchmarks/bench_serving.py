"""Serving throughput and latency through `l2m serve` (a subprocess) and the official stub:
1 and 16 concurrent clients, dynamic batching off and on, one image per request.

    python benchmarks/bench_serving.py [--preset small_64] [--seconds 8] [--out benchmarks/results]

Writes serving.json and serving.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]


def start_server(base: Path, batching: bool, max_batch: int, timeout_us: int):
    command = [sys.executable, "-m", "cli.main", "serve", str(base), "--port", "0"]
    if batching:
        command += ["--enable-batching", "--max-batch-size", str(max_batch),
                    "--batch-timeout-micros", str(timeout_us)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=os.environ)
    for line in process.stdout:
        if line.startswith("serving on "):
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, int(line.rsplit(":", 1)[1])
    raise RuntimeError("server did not start")


def load(client, name: str, inputs: dict, clients: int, seconds: float) -> dict:
    import numpy as np

    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker():
        while time.monotonic() < stop:
            start = time.perf_counter()
            client.predict(name, inputs)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    values = np.array(latencies) * 1000
    return {"requests": len(latencies), "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small_64")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout-micros", type=int, default=5000)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    import numpy as np

    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.export import export_saved_model
    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.serving.client import ServingClient

    config = get_preset(args.preset)
    work = Path(tempfile.mkdtemp(prefix="bench_serving."))
    save_bundle(L2MGAN(config), work / "model")
    export_saved_model(work / "model", "faces", output_dir=work / "saved_models")
    size = config.img_size
    inputs = {"images": np.random.default_rng(0).integers(0, 256, (1, size, size, 3),
                                                            dtype=np.uint8),
              "source_domain": np.zeros(1, np.int32), "target_domain": np.ones(1, np.int32),
              "alpha": np.ones(1, np.float32)}
    rows = []
    for batching in (False, True):
        process, port = start_server(work / "saved_models", batching, args.max_batch_size,
                                     args.batch_timeout_micros)
        try:
            with ServingClient(f"127.0.0.1:{port}") as client:
                load(client, "faces", inputs, 4, 1.0)  # warm-up
                for clients in (1, 16):
                    row = {"batching": batching, "clients": clients,
                           **load(client, "faces", inputs, clients, args.seconds)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"preset": args.preset, "img_size": size, "seconds_per_setting": args.seconds,
            "max_batch_size": args.max_batch_size,
            "batch_timeout_micros": args.batch_timeout_micros, "images_per_request": 1}
    (out / "serving.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Serving, {args.preset} ({size} px), one image per request", "",
             "| batching | clients | requests/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {'on' if r['batching'] else 'off'} | {r['clients']} | {r['requests_per_s']} "
              f"| {r['p50_ms']} | {r['p99_ms']} |" for r in rows]
    (out / "serving.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
