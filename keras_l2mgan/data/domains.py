"""Domains from binary attributes: `smiling,male` -> 4 domains named `not_smiling+not_male`, ...

A domain is one combination of the chosen attributes' values. Label bits are read with the
first attribute as the most significant bit, so for `smiling` label 1 is `smiling` and for
`smiling,male` the labels run not_smiling+not_male, not_smiling+male, smiling+not_male,
smiling+male.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The 40 CelebA attributes, in list_attr_celeba.txt order.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip


def normalize(name: str) -> str:
    """`Blond-Hair`, `blond hair` and `Blond_Hair` all become `blond_hair`."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def parse_attrs(attrs: str | Sequence[str], valid: Sequence[str]) -> list[str]:
    """Comma-separated or listed attribute names -> the matching names of `valid`, in order.

    Case-insensitive; raises ValueError naming the valid attributes for an unknown one.
    """
    names = [a for a in (attrs.split(",") if isinstance(attrs, str) else attrs) if a.strip()]
    if not names:
        raise ValueError(f"no attribute given; choose from: {', '.join(valid)}")
    lookup = {normalize(v): v for v in valid}
    chosen = []
    for name in names:
        key = normalize(name)
        if key not in lookup:
            raise ValueError(f"unknown attribute {name.strip()!r}; valid: {', '.join(valid)}")
        if lookup[key] in chosen:
            raise ValueError(f"attribute {name.strip()!r} is listed twice")
        chosen.append(lookup[key])
    if len(chosen) > 4:
        raise ValueError(f"at most 4 attributes (16 domains), got {len(chosen)}: {chosen}")
    return chosen


def domain_names(attrs: Sequence[str]) -> list[str]:
    """Readable names of all 2**len(attrs) domains, indexed by label."""
    keys = [normalize(a) for a in attrs]
    names = []
    for label in range(2 ** len(keys)):
        bits = label_bits(label, len(keys))
        names.append("+".join(k if bit else f"not_{k}" for k, bit in zip(keys, bits, strict=True)))
    return names


def label_bits(label: int, num_attrs: int) -> list[int]:
    """The attribute values (first attribute first) a domain label stands for."""
    return [(label >> (num_attrs - 1 - i)) & 1 for i in range(num_attrs)]


def labels_from_attributes(values: np.ndarray) -> np.ndarray:
    """(N, k) values in {0, 1} or {-1, 1} -> (N,) int32 domain labels."""
    bits = (np.asarray(values) > 0).astype(np.int32)
    weights = 2 ** np.arange(bits.shape[1] - 1, -1, -1, dtype=np.int32)
    return bits @ weights


def check_domain_weights(weights: Sequence[float] | None, names: Sequence[str]) -> None:
    """One finite weight >= 0 per domain, some > 0 (None: every domain equally)."""
    if weights is None:
        return
    if len(weights) != len(names) or not all(0 <= w < float("inf") for w in weights) \
            or not any(w > 0 for w in weights):
        shown = " ".join(f"{w:g}" for w in weights)
        raise ValueError(f"--domain-weights {shown}: give {len(names)} weights >= 0, "
                         f"one per domain in the order {', '.join(names)}, not all 0")
