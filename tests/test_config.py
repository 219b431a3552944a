"""L2MConfig: presets, derived widths, JSON round trip and argument checks."""

import pytest

from keras_l2mgan.config import PRESETS, L2MConfig, get_preset

pytestmark = pytest.mark.backend_independent  # plain Python, no backend involved


def test_official_widths_follow_image_size():
    assert L2MConfig(img_size=256).base_dim == 64
    assert L2MConfig(img_size=64).base_dim == 256
    assert L2MConfig(img_size=32).base_dim == 512
    assert L2MConfig(img_size=512).base_dim == 32
    assert L2MConfig(img_size=32, max_conv_dim=128).base_dim == 128


def test_depths_match_official_formulas():
    assert L2MConfig(img_size=256, w_hpf=1).generator_repeat_num == 5
    assert L2MConfig(img_size=256, w_hpf=0).generator_repeat_num == 4
    assert L2MConfig(img_size=32, w_hpf=0).generator_repeat_num == 1
    assert L2MConfig(img_size=256).trunk_repeat_num == 6


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name, tmp_path):
    config = get_preset(name, domain_names=tuple(f"d{i}" for i in range(PRESETS[name].num_domains)))
    assert L2MConfig.from_json(config.to_json()) == config
    config.save(tmp_path / "config.json")
    assert L2MConfig.load(tmp_path / "config.json") == config


def test_official_presets():
    assert get_preset("celeba_hq_256") == L2MConfig(img_size=256, num_domains=2, w_hpf=1.0)
    assert get_preset("afhq_256").num_domains == 3 and get_preset("afhq_256").w_hpf == 0


@pytest.mark.parametrize("size", [0, 16, 48, 100, 257, "64"])
def test_bad_image_size_names_argument_and_allowed_values(size):
    with pytest.raises(ValueError, match=r"img_size must be a power of two from 32 to 1024"):
        L2MConfig(img_size=size)


def test_unknown_preset_lists_choices():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*celeba_hq_256.*tiny_32"):
        get_preset("huge")


def test_domain_names_must_match_domain_count():
    with pytest.raises(ValueError, match="domain_names must be 2 distinct names"):
        L2MConfig(domain_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="domain_names must be 2 distinct names"):
        L2MConfig(domain_names=("a", "a"))


def test_unknown_json_key_is_refused():
    with pytest.raises(ValueError, match="unknown config keys"):
        L2MConfig.from_dict({"img_size": 64, "colour": "red"})
