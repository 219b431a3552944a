"""The weights of the L2M-GAN loss terms: a plain dataclass, importable without Keras (the CLI
reads its defaults before a backend is chosen). The losses themselves are in losses.py."""

from __future__ import annotations

import dataclasses
from typing import Any

ORTHOGONALITY_FORMS = ("cosine", "abs_dot", "abs_product")


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weight of every loss term, plus the orthogonality form.

    ``orthogonality_form`` defaults to ``"cosine"``: |cos(s_un, s_re)| asks the two codes to point
    in orthogonal directions and nothing else. The absolute dot product can also be driven to
    zero by shrinking either code, which lets the decomposer collapse s_un (or s_re) instead of
    separating the attribute; the mean |elementwise product| is stronger than orthogonality
    (it asks for disjoint support, dimension by dimension) and fights the style code's capacity.
    Cosine is scale-free, bounded in [0, 1] and only constrains what the paper states.
    """

    adversarial: float = 1.0
    r1: float = 1.0
    style: float = 1.0
    cycle: float = 1.0
    orthogonality: float = 1.0
    diversity: float = 0.0
    # |G(x, s) - x|: the edit at alpha 0 must give the input back. Not in the official losses;
    # without it the cycle loss is met by a G that swaps every face for another and back
    # (measured on the GPU-trained demo models: G(x, s(x)) is 13 dB from x, applying it twice
    # comes back to 17 dB; see the README's ablation).
    reconstruction: float = 0.0
    # |G(x, s~) - G(x, s)| where no trained attribute can change the face (masks from the
    # synthetic renderer, `--data synthetic_memory`): the edit must not recolour the background
    # or repaint the rest of the face (measured on smiling_male: see the README's ablation).
    unchanged_region: float = 0.0
    # mean(s^2) over E(x) and the moved code s~: keeps the style codes bounded. Not in the
    # official losses; at lr 2e-3 the detached style term can grow every code without limit
    # (--seed 1: |s| 26 -> 634,000 in ten steps; see the README, Keeping the face).
    style_size: float = 0.0
    orthogonality_form: str = "cosine"
    # Without StarGAN v2's mapping network both sides of the style reconstruction loss come from
    # E, so E can lower it by shrinking every code. True stops the gradient into the target s~
    # (measured: without it a mini_64 smiling run did not learn the edit; see the README).
    detach_style_target: bool = True

    def __post_init__(self) -> None:
        if self.orthogonality_form not in ORTHOGONALITY_FORMS:
            raise ValueError(
                f"unknown orthogonality_form {self.orthogonality_form!r}; "
                f"choose one of: {', '.join(ORTHOGONALITY_FORMS)}"
            )
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (str, bool)):
                continue
            if value < 0 or value != value:
                raise ValueError(f"loss weight {field.name} must be >= 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LossWeights:
        return cls(**(data or {}))
