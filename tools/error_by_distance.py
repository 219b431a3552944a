"""Where an edit's error against the ground truth lies: inside the attribute's mask, or in rings
at a growing distance from it (synthetic test faces, one attribute model).

    python tools/error_by_distance.py runs/ship_smiling/model --attr smiling --limit 200

For each source domain: the share of the squared error (edit vs the re-rendered truth) in each
region, its mean squared error there, and the edit's change of the input there (outside the
mask the truth is the input, so the two agree).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RINGS = (("inside the mask", 0, 0), ("1-2 px away", 0, 2), ("2-4 px", 2, 4), ("4-8 px", 4, 8),
         ("> 8 px", 8, np.inf))


def _psnr(mse: float) -> float:
    return 10 * np.log10(255.0**2 / max(mse, 1e-6))


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--attr", default="smiling", show_default=True)
@click.option("--limit", type=int, default=200, show_default=True, help="Faces per source.")
@click.option("--alpha", type=float, default=1.0, show_default=True)
def main(bundle: str, attr: str, limit: int, alpha: float) -> None:
    from keras import ops
    from scipy import ndimage

    from keras_l2mgan.bundle import load_bundle
    from keras_l2mgan.image_range import to_uint8
    from keras_l2mgan.metrics import synthetic

    model = load_bundle(bundle)
    params = synthetic.split_params("test")
    values = synthetic.attribute_values(params, [attr])[:, 0]
    size = model.config.img_size
    print("| source | region | pixels | share of squared error | MSE vs GT | MSE identity "
          "| MSE vs input |\n|---|---|---:|---:|---:|---:|---:|")
    for source in (0, 1):
        chosen = params[values == source][:limit]
        inputs = synthetic.render(chosen, size)
        truth, masks = synthetic.ground_truth(chosen, [attr], size)
        x = inputs.astype(np.float32) / 127.5 - 1
        edits = np.concatenate([
            to_uint8(ops.convert_to_numpy(model.edit(x[i:i + 50], source, 1 - source, alpha)))
            for i in range(0, len(x), 50)]).astype(np.float32)
        error = ((edits - truth) ** 2).mean(-1)
        identity = ((inputs.astype(np.float32) - truth) ** 2).mean(-1)
        change = ((edits - inputs) ** 2).mean(-1)
        distance = np.stack([ndimage.distance_transform_edt(~m) for m in masks])
        for name, near, far in RINGS:
            region = distance == 0 if far == 0 else (distance > near) & (distance <= far)
            print(f"| {source} -> {1 - source} | {name} | {region.mean():.3f} | "
                  f"{100 * error[region].sum() / error.sum():.1f} % | {error[region].mean():.1f} "
                  f"| {identity[region].mean():.1f} | {change[region].mean():.1f} |")
        print(f"| {source} -> {1 - source} | whole image | 1 | 100 % | {error.mean():.1f} "
              f"({_psnr(error.mean()):.2f} dB) | {identity.mean():.1f} "
              f"({_psnr(identity.mean()):.2f} dB) | {change.mean():.1f} |")


if __name__ == "__main__":
    main()
