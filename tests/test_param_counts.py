"""Parameter counts equal the official modules' exactly (reference table in shared/docs)."""

import pytest

from keras_l2mgan.config import L2MConfig

# (img_size, w_hpf, num_domains) -> (generator, style encoder + transformer, discriminator)
OFFICIAL_COUNTS = {
    (256, 1, 2): (43_467_395, 20_954_368, 20_852_290),
    (256, 0, 2): (33_892_995, 20_954_368, 20_852_290),
    (256, 0, 3): (33_892_995, 20_999_680, 20_852_803),
    (128, 1, 2): (43_206_403, 20_837_184, 20_735_106),
    (512, 1, 2): (43_538_499, 20_983_264, 20_881_186),
    (64, 0, 2): (32_634_883, 20_365_248, 20_263_170),
    (32, 0, 2): (28_740_099, 18_471_104, 18_369_026),
}


def _counts(img_size, w_hpf, num_domains):
    from keras_l2mgan.model import L2MGAN

    model = L2MGAN(L2MConfig(img_size=img_size, w_hpf=float(w_hpf), num_domains=num_domains))
    return (model.generator.count_params(), model.style_encoder.count_params(),
            model.discriminator.count_params())


@pytest.mark.backend_independent  # shapes are backend-independent; the 32 px row runs everywhere
@pytest.mark.parametrize("row", [r for r in OFFICIAL_COUNTS if r != (32, 0, 2)])
def test_official_parameter_counts(row):
    assert _counts(*row) == OFFICIAL_COUNTS[row]


def test_official_parameter_counts_32px_on_every_backend():
    assert _counts(32, 0, 2) == OFFICIAL_COUNTS[(32, 0, 2)]


def test_style_transformer_sizes():
    from keras_l2mgan.networks import StyleEncoder

    encoder = StyleEncoder(img_size=32, num_domains=3, dim_in=8, max_conv_dim=16)
    assert encoder.decomposer.count_params() == 12_480
    assert [t.count_params() for t in encoder.transformers] == [12_480] * 3
