"""tools/take_discriminator.py: the new bundle has one bundle's G and E and the other's D."""

import importlib.util

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT

from keras_l2mgan.bundle import load_bundle, save_bundle
from keras_l2mgan.data.domains import domain_names
from keras_l2mgan.model import L2MGAN

SPEC = importlib.util.spec_from_file_location("take_discriminator",
                                              REPO_ROOT / "tools" / "take_discriminator.py")
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def _bundle(path, seed, attrs=("smiling", "male")):
    import keras

    keras.utils.set_random_seed(seed)
    names = tuple(domain_names(list(attrs)))
    return save_bundle(L2MGAN.from_preset("tiny_32", domain_names=names,
                                          num_domains=len(names)), path)


def _values(network):
    return [np.asarray(w.numpy()) for w in network.weights]


@pytest.mark.slow  # three tiny bundles and 800 rendered faces, twice
def test_swaps_the_discriminator_and_keeps_g_and_e(tmp_path):
    edits, donor = _bundle(tmp_path / "edits", 1), _bundle(tmp_path / "donor", 2)
    out = tmp_path / "out"
    result = CliRunner().invoke(tool.main, [str(edits), "--discriminator-of", str(donor),
                                            "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "domain guessed on synthetic test faces:" in result.output
    made, first, second = load_bundle(out), load_bundle(edits), load_bundle(donor)
    for mine, theirs in zip(_values(made.discriminator), _values(second.discriminator),
                            strict=True):
        np.testing.assert_array_equal(mine, theirs)
    for network in ("generator", "style_encoder"):
        for mine, theirs in zip(_values(getattr(made, network)),
                                _values(getattr(first, network)), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    assert not np.array_equal(_values(made.discriminator)[0], _values(first.discriminator)[0])
    # An existing output and bundles of other domains are refused, nothing written.
    again = CliRunner().invoke(tool.main, [str(edits), "--discriminator-of", str(donor),
                                           "-o", str(out)])
    assert again.exit_code != 0 and "exists" in again.output
    other = _bundle(tmp_path / "smiling_only", 3, attrs=("smiling",))
    refused = CliRunner().invoke(tool.main, [str(edits), "--discriminator-of", str(other),
                                             "-o", str(tmp_path / "never")])
    assert refused.exit_code != 0 and "domains differ" in refused.output
    assert not (tmp_path / "never").exists()
