"""Peak memory (RSS) and wall time of `l2m edit` on large and many photos, on CPU with a tiny
random-weight model (tiny_32): what is measured is photo handling, not the network.

    python benchmarks/bench_edit_memory.py [--cases big_1bit,jpegs_2,jpegs_40] [--ref REV]
        [--batch-size 8] [--out benchmarks/results]

Each case runs `l2m edit` in a fresh process; its peak RSS comes from os.wait4's rusage (that
process alone). --ref REV also runs the cli/ and keras_l2mgan/ of that git revision (taken with
`git archive`, nothing in the work tree changes) on the same inputs, for a before/after table.
Writes edit_memory.json and edit_memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "floor": "one 640x480 JPEG (the floor: Python, TensorFlow, the model)",
    "big_1bit": "one 80 MP 1-bit PNG (10000x8000)",
    "jpegs_2": "2 JPEGs of 12 MP (4000x3000)",
    "jpegs_40": "40 JPEGs of 12 MP (4000x3000)",
}


def make_inputs(case: str, folder: Path) -> list[Path]:
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    if case == "big_1bit":
        image = Image.new("1", (10000, 8000), 1)
        ImageDraw.Draw(image).ellipse((3000, 1500, 7000, 6500), outline=0, width=40)
        path = folder / "big.png"
        image.save(path, optimize=True)
        return [path]
    # A smooth gradient with mild noise: a phone-photo-like JPEG of a few MB.
    width, height = (640, 480) if case == "floor" else (4000, 3000)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 255 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    first = folder / "photo_00.jpg"
    Image.fromarray(pixels).save(first, quality=90)
    count = 1 if case == "floor" else int(case.split("_")[1])
    paths = [first]
    for i in range(1, count):  # same bytes, distinct files: decoding cost is what matters
        paths.append(folder / f"photo_{i:02d}.jpg")
        shutil.copyfile(first, paths[-1])
    return paths


def make_bundle(path: Path) -> None:
    code = ("import sys\nfrom keras_l2mgan.bundle import save_bundle\n"
            "from keras_l2mgan.config import get_preset\nfrom keras_l2mgan.model import L2MGAN\n"
            "save_bundle(L2MGAN(get_preset('tiny_32', domain_names=('not_smiling', 'smiling'))),"
            " sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=_env(REPO))


def _env(code_root: Path) -> dict:
    # PYTHONPATH comes before the editable install's finder, so code_root's packages are used.
    return {**os.environ, "PYTHONPATH": str(code_root), "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_edit(code_root: Path, inputs: list[Path], bundle: Path, out: Path,
             batch_size: int) -> dict:
    """One `l2m edit` in a fresh process: its peak RSS (os.wait4) and wall time."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    command = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())",
               "edit", *map(str, inputs), "--to", "smiling", "--model", str(bundle), "-o",
               str(out), "--batch-size", str(batch_size),
               "--detector", "center"]  # noise photos: no face to detect
    start = time.perf_counter()
    process = subprocess.Popen(command, env=_env(code_root), cwd=out, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"l2m edit failed ({process.returncode}):\n{output[-3000:]}")
    written = sorted(p.name for p in out.rglob("*") if p.is_file())
    if len(written) != len(inputs):
        raise RuntimeError(f"expected {len(inputs)} outputs, found {written}")
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1)}


def revision_tree(ref: str, folder: Path) -> tuple[Path, str]:
    """cli/ and keras_l2mgan/ of a git revision, unpacked into folder (work tree untouched)."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit, "cli", "keras_l2mgan"], cwd=REPO,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder, commit


def markdown(results: dict) -> str:
    labels = list(results["runs"])
    lines = ["# `l2m edit` peak memory", "",
             f"tiny_32 random-weight bundle, TensorFlow backend on CPU, --batch-size "
             f"{results['batch_size']}; peak RSS of the `l2m edit` process (os.wait4), wall "
             "time including TensorFlow's import. Command: `python "
             "benchmarks/bench_edit_memory.py" + (f" --ref {results['ref']}`"
                                                  if results.get("ref") else "`"), "",
             "| case | " + " | ".join(f"{label} peak RSS | {label} time" for label in labels)
             + " |", "|---|" + "---:|---:|" * len(labels)]
    for case, description in results["cases"].items():
        cells = []
        for label in labels:
            run = results["runs"][label].get(case)
            cells += ([f"{run['peak_rss_mb']:,.0f} MB", f"{run['seconds']:.1f} s"] if run
                      else ["-", "-"])
        lines.append(f"| {description} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--ref", default=None, help="also run this git revision (before)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")

    with tempfile.TemporaryDirectory(prefix="bench_edit_memory_") as tmp:
        work = Path(tmp)
        make_bundle(work / "model")
        trees = {}
        if args.ref:
            tree, commit = revision_tree(args.ref, work / "before")
            trees[f"before ({commit})"] = tree
        trees["after (work tree)"] = REPO
        runs: dict[str, dict] = {label: {} for label in trees}
        for case in cases:
            inputs = make_inputs(case, work / "inputs" / case)
            for label, tree in trees.items():
                result = run_edit(tree, inputs, work / "model", work / "out", args.batch_size)
                runs[label][case] = result
                print(f"{case:10s} {label:22s} peak {result['peak_rss_mb']:8.0f} MB  "
                      f"{result['seconds']:6.1f} s", flush=True)
            shutil.rmtree(work / "inputs" / case)

    results = {"batch_size": args.batch_size, "ref": args.ref,
               "cases": {c: CASES[c] for c in cases}, "runs": runs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from keras_l2mgan.atomic import write_file_atomic

    for name, text in (("edit_memory.json", json.dumps(results, indent=2) + "\n"),
                       ("edit_memory.md", markdown(results))):
        write_file_atomic(out / name, text)
    print(markdown(results))


if __name__ == "__main__":
    main()
