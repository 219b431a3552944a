"""Starting a model for more attributes from a trained one (keras_l2mgan/expand_domains.py)."""

import numpy as np
import pytest
from keras import ops

from keras_l2mgan.data.domains import domain_names
from keras_l2mgan.expand_domains import expand_domains, old_domain_of
from keras_l2mgan.model import L2MGAN


def test_each_new_domain_maps_to_the_old_domain_it_contains():
    old, new = domain_names(["smiling"]), domain_names(["smiling", "male"])
    mapping = old_domain_of(new, old)
    for new_name, old_index in zip(new, mapping, strict=True):
        assert old[old_index] in new_name.split("+")
    with pytest.raises(ValueError, match="must add to the old ones"):
        old_domain_of(domain_names(["male"]), old)


def test_expanded_model_edits_the_old_attribute_as_before():
    old = L2MGAN.from_preset("tiny_32", domain_names=tuple(domain_names(["smiling"])))
    new_names = domain_names(["smiling", "male"])
    new = expand_domains(old, new_names)
    assert new.config.num_domains == 4 and list(new.config.names) == new_names
    mapping = old_domain_of(new_names, list(old.config.names))
    x = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    new_source = np.array([0, 1, 2, 3], "int32")
    new_target = np.array([2, 3, 0, 1], "int32")  # flip the smile, keep the new attribute
    old_source, old_target = (np.array([mapping[d] for d in labels], "int32")
                              for labels in (new_source, new_target))
    np.testing.assert_allclose(
        ops.convert_to_numpy(new.edit(x, new_source, new_target)),
        ops.convert_to_numpy(old.edit(x, old_source, old_target)), atol=1e-5)
    old_logits = ops.convert_to_numpy(old.discriminator.domain_logits(x))
    new_logits = ops.convert_to_numpy(new.discriminator.domain_logits(x))
    np.testing.assert_allclose(new_logits, old_logits[:, mapping], atol=1e-5)
