"""Print the README's ablation table from `l2m eval` outputs (docs/eval/ablation/*/eval.json).

    python tools/ablation_table.py docs/eval/ablation/rec0 docs/eval/ablation/rec1 ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(folder: Path) -> str:
    report = json.loads((folder / "eval.json").read_text())
    mean = report["mean"]
    return (f"| {folder.name} | {mean['accuracy'] * 100:.1f} % | {mean['psnr_gt']:.2f} / "
            f"{mean['identity_psnr_gt']:.2f} dB | {mean['psnr_outside']:.2f} dB | "
            f"{mean['fid']:.2f} | {mean['alpha_monotonic_tasks']} | {mean['n']} |")


def main(folders: list[str]) -> int:
    print("| run | accuracy | PSNR vs GT: edit / identity | PSNR outside | FID (cls) "
          "| alpha monotonic | edits |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for folder in folders:
        print(row(Path(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
