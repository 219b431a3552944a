"""Compare the three backends' train steps on one fixed batch, term by term.

    python tools/compare_trainers.py            # prints a table; exit 1 when a backend differs

Each backend runs in its own process (Keras fixes the backend at import) from the same initial
weights and the same batch with fixed target labels. The optimizers are plain SGD, so the
weight change of one step is exactly -lr * gradient and the gradients can be read back and
compared; the G+E optimizer keeps an EMA with momentum 0.5, so two steps test the EMA update.
The G loss is taken once per term (adversarial, style, cycle, orthogonality: the other weights
set to 0), so a wrong gradient is pinned to its term.

What is compared, backend against TensorFlow: every logged loss of step 1, the relative
difference of the gradients of G+E (per term) and of D, and the EMA after two steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
# The G loss with one term at a time (R1 and D's terms are in every D step).
TERMS = {
    "all": {},
    "adversarial": {"adversarial": 1.0, "style": 0.0, "cycle": 0.0, "orthogonality": 0.0},
    "style": {"adversarial": 0.0, "style": 1.0, "cycle": 0.0, "orthogonality": 0.0},
    "cycle": {"adversarial": 0.0, "style": 0.0, "cycle": 1.0, "orthogonality": 0.0},
    "orthogonality": {"adversarial": 0.0, "style": 0.0, "cycle": 0.0, "orthogonality": 1.0},
}
LEARNING_RATE = 1e-3
EMA_MOMENTUM = 0.5


def fixed_batch(size: int, n: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"images": rng.uniform(-1, 1, (n, size, size, 3)).astype("float32"),
            "labels": np.array([0, 1, 0, 1], "int32")[:n],
            "target_labels": np.array([1, 0, 0, 1], "int32")[:n]}


def run_backend(preset: str, weights: Path, out: Path, terms: list[str]) -> None:
    """In this process (KERAS_BACKEND already set): one step per term, a second step of the
    full loss for the EMA."""
    import keras
    from keras import ops

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.losses import LossWeights
    from keras_l2mgan.model import L2MGAN

    config = get_preset(preset)
    batch = fixed_batch(config.img_size)

    def fresh(term_weights):
        model = L2MGAN(config)
        if weights.exists():
            model.load_weights(weights)
        else:
            model.save_weights(weights)
        sgd = keras.optimizers.SGD
        model.compile(g_optimizer=sgd(LEARNING_RATE, use_ema=True, ema_momentum=EMA_MOMENTUM),
                      d_optimizer=sgd(LEARNING_RATE), loss_weights=LossWeights(**term_weights),
                      jit_compile=False)
        return model

    def values(variables):
        return [np.array(ops.convert_to_numpy(v), np.float64) for v in variables]

    result: dict[str, object] = {}
    for term in terms:
        model = fresh(TERMS[term])
        opt = model.optimizer
        g_before, d_before = values(opt.g_variables), values(opt.d_variables)
        logs = model.train_on_batch(batch, return_dict=True)
        g_grads = [(b - a) / LEARNING_RATE for b, a in zip(g_before, values(opt.g_variables),
                                                             strict=True)]
        result[f"grad_g_{term}"] = g_grads
        result[f"logs_{term}"] = {k: float(np.asarray(ops.convert_to_numpy(v)))
                                  for k, v in logs.items()}
        if term == "all":
            result["grad_d"] = [(b - a) / LEARNING_RATE
                                for b, a in zip(d_before, values(opt.d_variables), strict=True)]
            model.train_on_batch(batch)  # the EMA after two steps (momentum 0.5)
            result["ema"] = values([avg for _, avg in opt.ema_pairs()])
            result["raw_after_2"] = values([raw for raw, _ in opt.ema_pairs()])
    with open(out, "wb") as handle:
        np.save(handle, np.array(result, dtype=object), allow_pickle=True)


def relative_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """|a - b| / |a| over all arrays together (0 when they agree)."""
    num = np.sqrt(sum(float(np.sum((x - y) ** 2)) for x, y in zip(a, b, strict=True)))
    den = np.sqrt(sum(float(np.sum(x ** 2)) for x in a))
    return num / max(den, 1e-30)


def compare(preset: str, tolerance: float, terms: list[str]) -> tuple[list[dict], bool]:
    """Run every backend and compare it with TensorFlow; (rows, all within tolerance)."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "init.weights.h5"
        dumps = {}
        for backend in BACKENDS:  # tensorflow first: it writes the initial weights
            out = Path(tmp) / f"{backend}.npy"
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
            subprocess.run([sys.executable, __file__, "--worker", "--preset", preset,
                            "--weights", str(weights), "--out", str(out),
                            "--terms", ",".join(terms)],
                           env=env, check=True, cwd=REPO)
            dumps[backend] = np.load(out, allow_pickle=True).item()
    reference = dumps["tensorflow"]
    rows, ok = [], True
    for backend in BACKENDS[1:]:
        dump = dumps[backend]
        row = {"backend": backend}
        for key in ["grad_d"] + [f"grad_g_{t}" for t in terms] + ["ema", "raw_after_2"]:
            row[key] = relative_difference(reference[key], dump[key])
        loss_diff = 0.0
        for term in terms:
            for name, value in reference[f"logs_{term}"].items():
                other = dump[f"logs_{term}"][name]
                loss_diff = max(loss_diff, abs(value - other) / max(abs(value), 1e-6))
        row["losses"] = loss_diff
        ok = ok and all(v <= tolerance for k, v in row.items() if k != "backend")
        rows.append(row)
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny_32")
    parser.add_argument("--tolerance", type=float, default=1e-2,
                        help="largest relative difference from TensorFlow accepted (L1 terms "
                             "differ by ~1e-3: |x|' flips sign with rounding near 0)")
    parser.add_argument("--terms", default=",".join(TERMS),
                        help="G loss terms to differentiate one at a time ('all': the full "
                             "loss, always included: its step also feeds the EMA check)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    terms = ["all"] + [t for t in args.terms.split(",") if t and t != "all"]
    unknown = [t for t in terms if t not in TERMS]
    if unknown:
        parser.error(f"--terms: unknown {', '.join(unknown)}; choose from {', '.join(TERMS)}")
    if args.worker:
        sys.path.insert(0, str(REPO))
        run_backend(args.preset, args.weights, args.out, terms)
        return 0
    rows, ok = compare(args.preset, args.tolerance, terms)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        keys = [k for k in rows[0] if k != "backend"]
        print("relative difference from tensorflow (one step, SGD; EMA after two)")
        print("| backend | " + " | ".join(keys) + " |")
        print("|---" * (len(keys) + 1) + "|")
        for row in rows:
            print(f"| {row['backend']} | " + " | ".join(f"{row[k]:.1e}" for k in keys) + " |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
