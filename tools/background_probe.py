"""Does a model's edit recolour the background, and where in the style code does the background
live? For a bundle trained on smiling (and male), on 1,000 freshly rendered synthetic faces:

    python tools/background_probe.py runs/smiling_male/model [--faces 1000]

Per edit (each attribute flipped): the mean |change| of an alpha-1 edit on the image's 4-pixel
border (background in every rendered face; the renderer ties no attribute to it), the mean norms of
s_un, s_re and the move s~_re - s_re, and how well each of them predicts the six background
colour parameters (ridge regression fit on half the faces, R^2 on the other half). A background
that the move predicts, and an edit that changes the border, say the attribute-related part of the
style code carries colour the edit should leave alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BACKGROUND_PARAMS = ("bg_r1", "bg_g1", "bg_b1", "bg_r2", "bg_g2", "bg_b2")
BORDER = 4  # pixels; the face never reaches the image border in a rendered face


def held_out_r2(features: np.ndarray, targets: np.ndarray, ridge: float = 1e-2) -> float:
    """Mean R^2 over targets of a ridge fit on the first half, scored on the second half."""
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    half = len(features) // 2
    fit, test = features[:half], features[half:]
    centre = targets[:half].mean(0)
    weights = np.linalg.solve(fit.T @ fit + ridge * half * np.eye(fit.shape[1]),
                              fit.T @ (targets[:half] - centre))
    residual = targets[half:] - centre - test @ weights
    spread = targets[half:] - targets[half:].mean(0)
    return float(np.mean(1 - (residual ** 2).sum(0) / (spread ** 2).sum(0)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--faces", type=int, default=1000)
    args = parser.parse_args()

    from keras import ops

    from keras_l2mgan.bundle import load_bundle
    from keras_l2mgan.data.synthetic_faces import renderer
    from keras_l2mgan.image_range import to_unit
    from keras_l2mgan.metrics import synthetic
    from keras_l2mgan.metrics.evaluate import synthetic_domains, synthetic_labels

    model = load_bundle(args.bundle)
    attrs, domain_values = synthetic_domains(list(model.config.names))
    params = renderer.sample_params(np.random.default_rng(7), args.faces)
    x = to_unit(synthetic.render(params, model.config.img_size))
    values = synthetic.attribute_values(params, attrs)

    background = params[:, [renderer.PARAM_NAMES.index(k) for k in BACKGROUND_PARAMS]]
    border = np.ones((x.shape[1], x.shape[2]), bool)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    source = synthetic_labels(values, domain_values)
    print("| edit | border change at alpha 1 (grey levels) | norm s_un / s_re / move "
          "| background R^2 from s_un / s_re / move |")
    print("|---|---:|---:|---:|")
    for column, attr in enumerate(attrs):
        flipped_values = values.copy()
        flipped_values[:, column] = 1 - flipped_values[:, column]
        target = synthetic_labels(flipped_values, domain_values)
        _, s_un, s_re, s_tilde_re = (ops.convert_to_numpy(t)
                                     for t in model.style_encoder(x, source, target))
        move = s_tilde_re - s_re
        edited = np.concatenate([ops.convert_to_numpy(model.edit(x[i:i + 100], source[i:i + 100],
                                                                 target[i:i + 100], 1.0))
                                 for i in range(0, args.faces, 100)])
        change = np.abs(edited[:, border] - x[:, border]).mean() * 127.5
        norms = " / ".join(f"{np.linalg.norm(v, axis=1).mean():.1f}" for v in (s_un, s_re, move))
        r2 = " / ".join(f"{held_out_r2(v, background):.2f}" for v in (s_un, s_re, move))
        print(f"| {attr.lower()} flipped | {change:.1f} | {norms} | {r2} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
