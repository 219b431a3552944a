"""get_config -> from_config for every class registered in the keras_l2mgan serialization
package, on the current backend: the clone's config is the original's, and the same holds
through keras.saving's JSON-ready serialize / deserialize."""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import pytest

from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "keras_l2mgan"


def _registered_in_source() -> list[str]:
    """Class names under a register_keras_serializable decorator anywhere in the package."""
    pattern = re.compile(r"@keras\.saving\.register_keras_serializable\([^)]*\)\s*\nclass (\w+)")
    return sorted(name for path in PACKAGE_DIR.rglob("*.py")
                  for name in pattern.findall(path.read_text()))


REGISTERED = _registered_in_source()


@pytest.fixture(scope="module")
def examples():
    """One instance of each registered class, taken from a compiled tiny model with a FAN."""
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    model = L2MGAN(get_preset("tiny_32", w_hpf=1.0, fan=True))
    model.compile(seed=0)
    found = {}
    for obj in [model, *model._flatten_layers(include_self=False, recursive=True),
                model.optimizer, model.optimizer.g_optimizer, model.optimizer.d_optimizer]:
        found.setdefault(type(obj).__name__, obj)
    return found


def test_every_registered_class_is_found_and_registered():
    import keras_l2mgan.model  # noqa: F401 - registers the networks and layers
    import keras_l2mgan.networks.fan  # noqa: F401
    import keras_l2mgan.training.optimizers  # noqa: F401

    registered = sorted(key.split(">", 1)[1] for key in keras.saving.get_custom_objects()
                        if key.startswith(SERIALIZATION_PACKAGE + ">"))
    assert registered == REGISTERED and len(REGISTERED) >= 14


@pytest.mark.parametrize("name", REGISTERED)
def test_get_config_from_config_round_trip(examples, name):
    assert name in examples, f"no {name} in the example model: add one to the fixture"
    original = examples[name]
    cls = keras.saving.get_registered_object(f"{SERIALIZATION_PACKAGE}>{name}")
    assert cls is type(original)
    config = original.get_config()
    json.dumps(config)  # plain JSON, as .keras files hold it
    clone = cls.from_config(config)
    assert type(clone) is cls and clone.get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(original)))
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is cls and again.get_config() == config
