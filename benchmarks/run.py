"""The one benchmark entry point: runs every benchmarks/bench_*.py, counts FLOPs per image of
G, E and D, measures the machine's matmul peak, and writes results/latest.json and latest.md.

    python benchmarks/run.py [--quick] [--only data,train,edit,serving] [--single-thread]
        [--out DIR]

Each bench script runs in its own process (it picks its own Keras backend and writes its own
JSON and Markdown into --out); this script collects them, adds achieved FLOP/s (FLOPs per
image x images/s) against the measured float32 / bfloat16 matmul peak, and stamps everything
with the machine (CPU model, cores, load) and the date. --quick runs shorter settings and
leaves the per-script result files of the last full run alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
FLOP_PRESETS = ("small_64", "official_64", "celeba_hq_256")

# Per bench script: (file, full-run invocations, quick-run invocations); each invocation is an
# argument list. Missing scripts are reported, not fatal.
SCRIPTS = {
    "data": ("bench_data.py", [[]], [[]]),
    # Every backend in float32 and mixed_bfloat16 (XLA as `--jit auto` picks it), each timed
    # alternately with the official PyTorch step in the same run (benchmarks/side_by_side.py).
    # At 256 px a step takes minutes on a 2-core CPU: few timed steps.
    "train": ("bench_train.py", [
        ["--presets", "official_64,celeba_hq_256", "--steps", "3,2"],
    ], [["--presets", "tiny_32", "--precisions", "float32", "--steps", "1"]]),
    "edit": ("bench_edit.py", [[]], [["--batches", "1", "--repeats", "1",
                                      "--precisions", "float32"]]),
    "serving": ("bench_serving.py", [[]], [["--seconds", "2"]]),
}

def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu_model": model, "cpu_cores": os.cpu_count(),
            "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(
                os, "sched_getaffinity") else os.cpu_count(),
            "load_average_at_start": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "platform": platform.platform()}
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                            capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return info


def run_script(name: str, quick: bool, out: Path, timeout: int,
               single_thread: bool = False) -> dict:
    """Run one bench script (one or more invocations); return its status and the JSON and
    Markdown files it wrote."""
    script, full_runs, quick_runs = SCRIPTS[name]
    path = BENCH / script
    if not path.is_file():
        return {"status": "missing", "script": script}
    start = time.time()
    section = {"status": "ok", "script": script, "commands": [], "results": {}, "markdown": []}
    for arguments in quick_runs if quick else full_runs:
        command = [sys.executable, str(path), *arguments, "--out", str(out)]
        if single_thread and name in ("train", "edit"):
            command.append("--single-thread")
        section["commands"].append(" ".join(command[1:]))
        print(f"== {' '.join(command[1:])}", flush=True)
        try:
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            section.update(status=f"timed out after {timeout} s")
            break
        if result.returncode != 0:
            section.update(status=f"failed (exit {result.returncode})",
                           error=(result.stderr.strip().splitlines() or ["?"])[-1])
            break
    section["seconds"] = round(time.time() - start, 1)
    for produced in sorted(out.glob("*")):
        if produced.name.startswith("latest.") or produced.stat().st_mtime < start:
            continue
        if produced.suffix == ".json":
            section["results"][produced.stem] = json.loads(produced.read_text())
        elif produced.suffix == ".md":
            section["markdown"].append(produced.read_text())
    return section

def flops_and_peak(quick: bool) -> dict:
    """FLOPs per image (TensorFlow graph) and matmul peaks, in a TensorFlow subprocess."""
    code = f"""
import json, os
os.environ["KERAS_BACKEND"] = "tensorflow"
from keras_l2mgan.config import get_preset
from benchmarks.flops import matmul_peak, network_flops
out = {{"flops_per_image": {{p: network_flops(get_preset(p)) for p in {list(FLOP_PRESETS)!r}}}}}
out["matmul_peak_flops"] = {{d: matmul_peak(d, {1024 if quick else 2048}, {1 if quick else 3})
                             for d in ("float32", "bfloat16")}}
print("RESULT" + json.dumps(out))
"""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    for line in result.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    raise RuntimeError("FLOP counting failed: " + (result.stderr.strip().splitlines() or ["?"])[-1])


def _rows(results):
    """Every dict in a bench result that reports a preset and images/s, however nested."""
    if isinstance(results, dict):
        if "preset" in results and "images_per_s" in results:
            yield results
        for value in results.values():
            yield from _rows(value)
    elif isinstance(results, list):
        for value in results:
            yield from _rows(value)

def achieved(sections: dict, flops: dict) -> list[dict]:
    """Achieved FLOP/s of timed rows whose preset has a FLOP count, against the matmul peak."""
    per_image = flops["flops_per_image"]
    peaks = flops["matmul_peak_flops"]
    rows = []
    edit = sections.get("edit", {}).get("results", {}).get("edit_latency")
    if edit:
        preset = edit.get("meta", {}).get("preset")
        for row in edit.get("rows", []):
            if preset in per_image and row.get("seconds"):
                dtype = "bfloat16" if "bfloat16" in row["runner"] else "float32"
                value = per_image[preset]["edit"] * row["batch"] / row["seconds"]
                rows.append({"what": f"edit, {row['runner']}, batch {row['batch']}",
                             "preset": preset, "flop_per_s": value, "dtype": dtype,
                             "fraction_of_peak": value / peaks[dtype]})
    serving = sections.get("serving", {}).get("results", {}).get("serving")
    if serving:
        preset = serving.get("meta", {}).get("preset")
        per_request = serving.get("meta", {}).get("images_per_request", 1)
        for row in serving.get("rows", []):
            if preset in per_image and row.get("requests_per_s"):
                value = per_image[preset]["edit"] * per_request * row["requests_per_s"]
                rows.append({"what": f"serving, batching {'on' if row['batching'] else 'off'}, "
                                     f"{row['clients']} client{'s' if row['clients'] != 1 else ''}",
                             "preset": preset,
                             "flop_per_s": value, "dtype": "float32",
                             "fraction_of_peak": value / peaks["float32"]})
    for results in sections.get("train", {}).get("results", {}).values():
        for preset, official in (results.get("official", {}) if isinstance(results, dict)
                                 else {}).items():
            if preset in per_image and official.get("median_s"):
                batch = official.get("batch", 8)
                value = per_image[preset]["train_step_estimate"] * batch / official["median_s"]
                rows.append({"what": f"train step, official PyTorch float32, batch {batch}",
                             "preset": preset, "flop_per_s": value, "dtype": "float32",
                             "fraction_of_peak": value / peaks["float32"]})
        for row in _rows(results):
            preset, rate = row.get("preset"), row.get("images_per_s")
            if preset in per_image and rate:
                dtype = "bfloat16" if "bfloat16" in str(row.get("precision", "")) else "float32"
                value = per_image[preset]["train_step_estimate"] * rate
                label = ", ".join(str(row[k]) for k in ("backend", "precision") if k in row)
                rows.append({"what": f"train step, {label}, XLA {row.get('xla', '?')}, "
                                     f"batch {row.get('batch', '?')}", "preset": preset,
                             "flop_per_s": value, "dtype": dtype,
                             "fraction_of_peak": value / peaks[dtype]})
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"{report['date']} on {m['cpu_model']}, {m['cpu_cores']} cores "
        f"({m.get('memory_gib', '?')} GiB RAM), load average {m['load_average_at_start']} at "
        f"start{', quick settings' if report['quick'] else ''}; commit "
        f"{m.get('git_commit', '?')}. The machine is shared: wall-clock numbers are lower "
        "bounds of what it can do.",
        "",
    ]
    flops = report.get("flops")
    if flops:
        lines += ["## FLOPs per image (forward, 2 x multiply-accumulates of convolutions and "
                  "matmuls)", "",
                  "| preset | G | E (with transformer) | D | edit (E + G) | train step (est.) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for preset, f in flops["flops_per_image"].items():
            lines.append(f"| {preset} | {f['generator'] / 1e9:.2f} G | "
                         f"{f['style_encoder'] / 1e9:.2f} G | {f['discriminator'] / 1e9:.2f} G | "
                         f"{f['edit'] / 1e9:.2f} G | {f['train_step_estimate'] / 1e9:.1f} G |")
        peaks = flops["matmul_peak_flops"]
        lines += ["", "Train step estimate: 7 E + 7 G + 12 D forward-equivalents per image "
                  "(forward + backward = 3 forward; R1 about 6 D).", "",
                  f"Measured matmul peak: {peaks['float32'] / 1e9:.1f} GFLOP/s float32, "
                  f"{peaks['bfloat16'] / 1e9:.1f} GFLOP/s bfloat16.", ""]
        if report["achieved"]:
            lines += ["## Achieved FLOP/s", "", "| what | preset | GFLOP/s | of matmul peak |",
                      "|---|---|---:|---:|"]
            lines += [f"| {r['what']} | {r['preset']} | {r['flop_per_s'] / 1e9:.1f} | "
                      f"{100 * r['fraction_of_peak']:.0f} % ({r['dtype']}) |"
                      for r in report["achieved"]]
            lines.append("")
    for name, section in report["benchmarks"].items():
        lines += [f"## {name} ({section['status']}"
                  + (f", {section['seconds']} s" if "seconds" in section else "") + ")", ""]
        if section.get("error"):
            lines += [f"Error: {section['error']}", ""]
        for text in section.get("markdown", []):
            lines += [line.replace("# ", "### ", 1) if line.startswith("# ") else line
                      for line in text.strip().splitlines()] + [""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short settings (minutes)")
    parser.add_argument("--only", default=",".join(SCRIPTS),
                        help=f"comma-separated subset of {','.join(SCRIPTS)}")
    parser.add_argument("--no-flops", action="store_true", help="skip FLOPs and matmul peak")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per bench script")
    parser.add_argument("--single-thread", action="store_true",
                        help="train and edit: one compute thread on every side (a busy machine)")
    parser.add_argument("--out", default=str(BENCH / "results"))
    args = parser.parse_args()
    from keras_l2mgan.atomic import write_file_atomic

    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(SCRIPTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "quick": args.quick, "single_thread": args.single_thread, "machine": machine(),
              "benchmarks": {}}
    # A quick run must not overwrite the full runs' per-script files: it gets a scratch dir
    # (its numbers still land in latest.json / latest.md).
    with tempfile.TemporaryDirectory(prefix="bench_quick.") as scratch:
        script_out = Path(scratch) if args.quick else out
        for name in chosen:
            report["benchmarks"][name] = run_script(name, args.quick, script_out, args.timeout,
                                                    args.single_thread)
            print(f"   {name}: {report['benchmarks'][name]['status']}", flush=True)
    if not args.no_flops:
        print("== FLOPs per image and matmul peak", flush=True)
        report["flops"] = flops_and_peak(args.quick)
        report["achieved"] = achieved(report["benchmarks"], report["flops"])
    write_file_atomic(out / "latest.json", json.dumps(
        {k: ({n: {key: v for key, v in s.items() if key != "markdown"}
              for n, s in v.items()} if k == "benchmarks" else v)
         for k, v in report.items()}, indent=2) + "\n")
    text = markdown(report)
    write_file_atomic(out / "latest.md", text)
    print(text)


if __name__ == "__main__":
    main()
