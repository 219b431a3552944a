"""Start a model for more attributes from one trained on fewer (e.g. smiling -> smiling,male).

Only three parts of L2M-GAN depend on the domain: the style encoder's per-domain heads, the
per-domain style transformers, and the discriminator's per-domain output channel. Everything
else (generator, encoder trunk, decomposer, discriminator trunk) carries over as it is. Each new
domain takes the per-domain weights of the old domain it contains: "smiling+male" and
"smiling+not_male" both start from "smiling". The expanded model therefore edits the old
attributes as before on the first step, and the new attribute is what training has to learn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# Weight paths of the per-domain layers: head3/kernel, transformer1/dense0/bias, ...
_PER_DOMAIN_PATH = re.compile(r"^(head|transformer)(\d+)(/.*)$")
_DOMAIN_OUTPUT_LAYER = "classifier/"  # the discriminator's last conv: one channel per domain


def old_domain_of(new_names: Sequence[str], old_names: Sequence[str]) -> list[int]:
    """For each new domain, the index of the old domain whose attribute values it all has."""
    mapping = []
    for new in new_names:
        parts = set(new.split("+"))
        matches = [i for i, old in enumerate(old_names) if set(old.split("+")) <= parts]
        if len(matches) != 1:
            raise ValueError(f"domain {new!r} contains {len(matches)} of the old domains "
                             f"{list(old_names)}: the new attributes must add to the old ones")
        mapping.append(matches[0])
    return mapping


def expand_domains(model, domain_names: Sequence[str]):
    """A new L2MGAN with `domain_names`, its weights taken from `model` (an L2MGAN whose
    domains are those names' values of fewer attributes)."""
    from keras_l2mgan.model import L2MGAN

    old_names = list(model.config.names)
    mapping = old_domain_of(domain_names, old_names)
    config = model.config.replace(num_domains=len(domain_names),
                                  domain_names=tuple(domain_names))
    expanded = L2MGAN(config)
    old_values = {weight.path: np.asarray(weight.numpy()) for weight in model.weights}
    for weight in expanded.weights:
        per_domain = _PER_DOMAIN_PATH.match(weight.path)
        if per_domain:
            kind, domain, rest = per_domain.groups()
            value = old_values[f"{kind}{mapping[int(domain)]}{rest}"]
        elif weight.path.startswith(_DOMAIN_OUTPUT_LAYER):
            value = old_values[weight.path][..., mapping]
        else:
            value = old_values[weight.path]
        weight.assign(value)
    return expanded
