"""`l2m import`: official checkpoints (made by tests/torch_reference.py in the official format)
become bundles whose networks compute what the PyTorch modules compute, on this backend.

Parity bounds: style codes 1e-4, images and D logits 1e-3 (max abs difference). At 256 px with
w_hpf 1 both sides compute the face masks themselves with the FAN of the checkpoint
(tests/torch_fan_reference.py), as the official edit does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fan_reference as ref_fan
import torch_reference as ref
from conftest import REPO_ROOT, invoke_l2m, one_error_line

CODE_TOL, IMAGE_TOL = 1e-4, 1e-3
DOMAINS = ("not_smiling", "smiling")


_invoke = invoke_l2m


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output + result.stderr
    return one_error_line(result)


def _checkpoint(nets, entries=("generator", "style_encoder", "discriminator"), prefix=""):
    return {e: {prefix + k: v for k, v in nets[e].state_dict().items()} for e in entries}


def _import(tmp_path: Path, ckpt: dict, *args) -> tuple[Path, object, str]:
    """torch.save ckpt, run `l2m import`, load the bundle: (bundle dir, L2MGAN, output)."""
    from keras_l2mgan.bundle import load_bundle

    path = tmp_path / "100000_nets.ckpt"
    torch.save(ckpt, path)
    out = tmp_path / "bundle"
    result = _invoke("import", path, "-o", out, *args)
    assert result.exit_code == 0, result.output + result.stderr
    return out, load_bundle(out), result.output


def _inputs(img_size: int, seed: int = 1, masks: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, img_size, img_size, generator=g) * 2 - 1
    if not masks:
        return x, None
    return x, tuple(torch.rand(2, 1, img_size, img_size, generator=g) for _ in range(2))


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


def _diff(expected: torch.Tensor, got, nchw: bool = False) -> float:
    from keras import ops

    want = _nhwc(expected) if nchw else expected.numpy()
    return float(np.abs(want - ops.convert_to_numpy(got)).max())


def _check_l2mgan_parity(nets, model, img_size: int, masks: bool, label: str) -> None:
    x, m = _inputs(img_size, masks=masks)
    source, target = torch.tensor([0, 1]), torch.tensor([1, 0])
    km = None if m is None else tuple(_nhwc(t) for t in m)
    with torch.no_grad():
        codes = nets["style_encoder"](x, source, target)
        edits = {a: ref.edit(nets, x, source, target, a, m) for a in (0.5, 1.0)}
    got = model.style_encoder(_nhwc(x), source.numpy(), target.numpy())
    diffs = {name: _diff(c, k) for name, c, k in zip(("s", "s_un", "s_re", "s~_re"), codes, got,
                                                     strict=True)}
    for alpha, image in edits.items():
        diffs[f"edit@{alpha}"] = _diff(image, model.edit(_nhwc(x), source.numpy(),
                                                         target.numpy(), alpha, km), nchw=True)
    print(f"PARITY {label}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert all(diffs[k] <= CODE_TOL for k in ("s", "s_un", "s_re", "s~_re")), diffs
    assert all(diffs[k] <= IMAGE_TOL for k in diffs if k.startswith("edit")), diffs
    # The edits must be real ones: far from the source and apart from each other.
    assert float((edits[1.0] - edits[0.5]).abs().max()) > 0.1


def _check_discriminator(nets, model, img_size: int, label: str) -> None:
    x, _ = _inputs(img_size, seed=2)
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        logits = nets["discriminator"](x, labels)
    diff = _diff(logits, model.discriminator(_nhwc(x), labels.numpy()))
    print(f"PARITY {label}: D {diff:.2e}")
    assert diff <= IMAGE_TOL


# --- Parity -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def l2m_64(tmp_path_factory):
    """A 64 px w_hpf 0 *_nets.ckpt (G, E, D) with a vgg entry and two extra keys."""
    nets = ref.build(img_size=64, w_hpf=0.0, dim_in=16, max_conv_dim=64, seed=0)
    ckpt = _checkpoint(nets)
    ckpt["generator"]["stray.weight"] = torch.ones(2)
    ckpt["vgg"] = {"0.weight": torch.zeros(4, 3, 7, 7)}
    ckpt["epoch"] = 7
    tmp = tmp_path_factory.mktemp("l2m64")
    return (nets, *_import(tmp, ckpt, "--domains", ",".join(DOMAINS)))


def test_l2mgan_64px_parity(l2m_64):
    nets, _, model, _ = l2m_64
    _check_l2mgan_parity(nets, model, 64, masks=False, label="64px w_hpf 0")
    _check_discriminator(nets, model, 64, label="64px w_hpf 0")


def test_import_reports_and_records_its_source(l2m_64):
    _, bundle, model, output = l2m_64
    assert "64 px, w_hpf 0, 2 domains, style_dim 64, dim_in 16, max_conv_dim 64" in output
    assert "vgg: the ResNet-18 trunk" in output
    assert "no FAN" not in output  # w_hpf 0: masks are never used
    assert "unused attention MLPs of generator and style_encoder" in output
    assert "extra keys, not imported (2): generator.stray.weight, epoch" in output
    assert model.config.domain_names == DOMAINS and model.config.dim_in == 16
    assert model.fan is None and not model.config.fan
    source = json.loads((bundle / "import.json").read_text())
    ckpt = bundle.parent / "100000_nets.ckpt"
    assert source["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert source["file"] == ckpt.name and source["format"] == "l2mgan"
    assert source["imported"] == {"generator": 74, "style_encoder": 44, "discriminator": 24}
    assert source["extra_keys"] == ["generator.stray.weight", "epoch"]
    assert len(source["ignored"]) == 8 and source["fresh"] == []
    assert source["fan"] is None and source["landmarks_mean"] is None


@pytest.fixture(scope="module")
def l2m_hpf(tmp_path_factory):
    """A 128 px w_hpf 1 *_nets_ema.ckpt (G and E only; no hpf.filter, as the official file)."""
    nets = ref.build(img_size=128, w_hpf=1.0, dim_in=8, max_conv_dim=32, seed=10)
    tmp = tmp_path_factory.mktemp("l2mhpf")
    return (nets, *_import(tmp, _checkpoint(nets, ("generator", "style_encoder"))))


def test_l2mgan_high_pass_parity_with_masks(l2m_hpf):
    """No FAN in the file: the bundle has none, says so in one line, and takes given masks."""
    nets, bundle, model, output = l2m_hpf
    assert "generator.hpf.filter missing: w_hpf 1 (the official value) assumed" in output
    assert "fresh: discriminator (not in this file" in output
    assert [line for line in output.splitlines() if "no FAN" in line] == [
        "note: no FAN: edits run without face masks (the generator's high-pass path is "
        "skipped); pass --wing wing.ckpt (StarGAN v2's FAN) to add it"]
    assert model.fan is None and not model.config.fan
    assert json.loads((bundle / "import.json").read_text())["fan"] is None
    assert model.config.w_hpf == 1.0 and model.config.generator_repeat_num == 4
    _check_l2mgan_parity(nets, model, 128, masks=True, label="128px w_hpf 1 masks")
    # The masks take part: the same edit without them is another image.
    x, m = _inputs(128, masks=True)
    with torch.no_grad():
        with_masks = ref.edit(nets, x, torch.tensor([0, 1]), torch.tensor([1, 0]), 1.0, m)
        without = ref.edit(nets, x, torch.tensor([0, 1]), torch.tensor([1, 0]), 1.0, None)
    assert float((with_masks - without).abs().max()) > 0.1
    # Without a FAN and without masks, the edit is the official one without masks.
    got = model.edit(_nhwc(x), np.array([0, 1]), np.array([1, 0]))
    assert _diff(without, got, nchw=True) <= IMAGE_TOL


@pytest.fixture(scope="module")
def torch_fan():
    """A seeded torch FAN whose BatchNorm statistics and heatmap scale are calibrated on one
    256 px image (as in test_fan.py), so the masks of such images are neither empty nor full."""
    torch.manual_seed(0)
    fan = ref_fan.FanReference()
    calibration = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(40))
    ref_fan.randomize(fan, seed=0, calibration=calibration)
    return fan, calibration * 2 - 1


@pytest.fixture(scope="module")
def l2m_256_fan(tmp_path_factory, torch_fan):
    """The official layout at 256 px, w_hpf 1, with reduced widths, as a *_nets_ema.ckpt with
    its 'fan' entry (batch counters included, as a state_dict has them)."""
    nets = ref.build(img_size=256, w_hpf=1.0, dim_in=8, max_conv_dim=32, seed=50)
    ckpt = _checkpoint(nets, ("generator", "style_encoder"))
    ckpt["fan"] = torch_fan[0].state_dict()
    tmp = tmp_path_factory.mktemp("l2m256")
    return (nets, *_import(tmp, ckpt, "--domains", ",".join(DOMAINS)))


def test_l2mgan_256px_parity_with_the_fan_masks(l2m_256_fan, torch_fan):
    """The official edit path: both sides compute the masks of x with their FAN, then edit."""
    import torch.nn.functional as F
    from keras import ops

    from keras_l2mgan.masks import heatmaps_to_masks

    nets, bundle, model, output = l2m_256_fan
    fan = torch_fan[0]
    assert model.config.fan and model.config.w_hpf == 1.0 and model.config.img_size == 256
    assert "fan (" in output.splitlines()[1] and "no FAN" not in output
    source = json.loads((bundle / "import.json").read_text())
    assert source["fan"] == {"from": "checkpoint", "file": "100000_nets.ckpt",
                             "ignored_keys": [], "tensors": len(model.fan.torch_variables())}
    assert source["imported"]["fan"] == source["fan"]["tensors"]

    # The recipe zeroes heatmap values below 0.1, a step: a value within float error of it
    # may land on either side, and a flipped pixel moves the edit by up to ~0.2. This input
    # (seed 46 of 300 tried) has no upsampled heatmap value of a kept landmark within 4e-5
    # of 0.1, far above the float error (~1e-5 at most, on the largest values).
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(46)) * 2 - 1
    source_labels, target_labels = torch.tensor([0]), torch.tensor([1])
    with torch.no_grad():
        heatmaps = fan.heatmaps(x)
        masks = ref_fan.heatmaps_to_masks(heatmaps)
        codes = nets["style_encoder"](x, source_labels, target_labels)
        edited = ref.edit(nets, x, source_labels, target_labels, 1.0, masks)
        unmasked = ref.edit(nets, x, source_labels, target_labels, 1.0, None)
    upsampled = F.interpolate(heatmaps, scale_factor=4, mode="bilinear", align_corners=True)
    kept = [c for c in range(98) if c not in ref_fan._ZEROED]
    margin = float((upsampled[:, kept] - 0.1).abs().min())
    for mask in masks:  # the masks are not trivial, and they change the edit
        assert 0.01 < float((mask > 0).float().mean()) < 0.9
    assert float((edited - unmasked).abs().max()) > 0.05

    got = model.style_encoder(_nhwc(x), source_labels.numpy(), target_labels.numpy())
    diffs = {name: _diff(c, k) for name, c, k in zip(("s", "s_un", "s_re", "s~_re"), codes, got,
                                                     strict=True)}
    keras_heatmaps = model.fan(_nhwc(x))
    diffs["heatmaps"] = _diff(heatmaps, keras_heatmaps, nchw=True)
    for name, mask, want in zip(("coarse", "fine"), heatmaps_to_masks(keras_heatmaps), masks,
                                strict=True):
        diffs[f"{name} mask"] = _diff(want, ops.convert_to_numpy(mask), nchw=True)
    diffs["edit"] = _diff(edited, model.edit(_nhwc(x), source_labels.numpy(),
                                             target_labels.numpy()), nchw=True)
    print("PARITY 256px w_hpf 1 FAN: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
          + f" (threshold margin {margin:.1e})")
    assert margin > 2 * diffs["heatmaps"], (margin, diffs)  # no pixel can change sides
    assert all(diffs[k] <= CODE_TOL for k in ("s", "s_un", "s_re", "s~_re")), diffs
    assert all(diffs[k] <= IMAGE_TOL for k in ("coarse mask", "fine mask", "edit")), diffs


def test_stargan_v2_parity_with_module_prefix(tmp_path):
    """A DataParallel-saved StarGAN v2 *_nets.ckpt: G (with hpf.filter), E trunk and heads, D;
    its mapping network is reported, the style transformer starts fresh."""
    nets = ref.build(img_size=64, w_hpf=1.0, dim_in=16, max_conv_dim=64, seed=20,
                     flavour="stargan-v2")
    ckpt = _checkpoint(nets, ("generator", "style_encoder", "discriminator", "mapping_network"),
                       prefix="module.")
    bundle, model, output = _import(tmp_path, ckpt)
    assert "'module.' prefixes (nn.DataParallel) removed" in output
    assert "mapping_network: StarGAN v2's latent-to-style MLP is not part of L2M-GAN" in output
    assert "fresh: style_encoder decomposer and domain transformers" in output
    assert json.loads((bundle / "import.json").read_text())["format"] == "stargan-v2"

    x, m = _inputs(64, seed=3, masks=True)
    source = torch.tensor([1, 0])
    with torch.no_grad():
        s = nets["style_encoder"](x, source)
        image = nets["generator"](x, s, m)
    got = model.style_encoder.encode(_nhwc(x), source.numpy())
    from keras import ops

    s_diff = _diff(s, got)
    image_diff = _diff(image, model.generator(_nhwc(x), ops.convert_to_tensor(s.numpy()),
                                              tuple(_nhwc(t) for t in m)), nchw=True)
    print(f"PARITY stargan-v2 64px w_hpf 1 masks: s {s_diff:.2e}, G(x, s) {image_diff:.2e}")
    assert s_diff <= CODE_TOL and image_diff <= IMAGE_TOL
    _check_discriminator(nets, model, 64, label="stargan-v2 64px")


# --- The official layout at the official sizes --------------------------------------------------

def _official_keys(flavour: str) -> dict[str, tuple[int, ...]]:
    """tests/data/official_keys.tsv: names and shapes of the official modules (256 px, w_hpf 1)."""
    keys = {}
    for line in (Path(__file__).parent / "data" / "official_keys.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            name, key, shape = line.split("\t")
            if name == flavour:
                keys[key] = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
    return keys


def _reference_keys(flavour: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no init
        nets = {"generator": ref.Generator(256, 64, 1.0, 64, 512, flavour),
                "style_encoder": ref.StyleEncoder(256, 64, 2, 64, 512, flavour),
                "discriminator": ref.Discriminator(256, 2, 64, 512)}
        if flavour == "stargan-v2":
            nets["mapping_network"] = ref.MappingNetwork(16, 64, 2, hidden=512)
    return {f"{e}.{k}": tuple(v.shape) for e, net in nets.items()
            for k, v in net.state_dict().items()}


@pytest.mark.backend_independent  # PyTorch reference modules only
@pytest.mark.parametrize("flavour", ["l2mgan", "stargan-v2"])
def test_reference_has_the_official_names_and_shapes(flavour):
    assert _reference_keys(flavour) == _official_keys(flavour)


@pytest.mark.backend_independent  # names and shapes only
def test_official_celeba_hq_layout_fits_the_preset():
    """The released 256 px checkpoint's names and shapes give the celeba_hq_256 model, and
    every official key finds its variable (weights are zeros: only the layout is tested)."""
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.importers.official import infer_config, match_weights
    from keras_l2mgan.model import L2MGAN

    nets: dict[str, dict[str, np.ndarray]] = {}
    for key, shape in _official_keys("l2mgan").items():
        entry, name = key.split(".", 1)
        nets.setdefault(entry, {})[name] = np.zeros(shape, "float32")
    config, notes = infer_config(nets)
    assert config == get_preset("celeba_hq_256") and config.dim_in is None
    assert "hpf.filter missing" in notes[0]
    assignments, extras, dead = match_weights(nets, L2MGAN(config), "l2mgan")
    assert len(assignments) == sum(len(v) for v in nets.values()) - 8
    assert extras == [] and len(dead) == 8


# --- Files that are not such checkpoints: one line, exit 2, nothing written ----------------------



@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory) -> tuple[dict, Path]:
    nets = ref.build(img_size=32, w_hpf=0.0, dim_in=16, max_conv_dim=64, seed=30)
    ckpt = _checkpoint(nets, ("generator", "style_encoder"))
    path = tmp_path_factory.mktemp("small") / "small_nets_ema.ckpt"
    torch.save(ckpt, path)
    return ckpt, path


def _refused(tmp_path: Path, path: Path, *args) -> str:
    out = tmp_path / "out"
    line = _error_line(_invoke("import", path, "-o", out, *args))
    assert not out.exists()
    return line


class Evil:  # pickled by reference: torch.load(weights_only=True) must refuse to build it
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.backend_independent  # refused before any model is built
def test_not_a_checkpoint_truncated_or_code(tmp_path, small_ckpt):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, not a checkpoint")
    assert "is not a readable PyTorch checkpoint" in _refused(tmp_path, text)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(small_ckpt[1].read_bytes()[: small_ckpt[1].stat().st_size // 2])
    assert "is not a readable PyTorch checkpoint" in _refused(tmp_path, truncated)
    evil = tmp_path / "evil.ckpt"
    torch.save({"generator": Evil()}, evil)
    assert "refusing to run code from it" in _refused(tmp_path, evil)
    assert "no such checkpoint file" in _refused(tmp_path, tmp_path / "missing.ckpt")


@pytest.mark.backend_independent  # refused before any model is built
def test_checkpoints_of_other_networks(tmp_path):
    wing = tmp_path / "wing.ckpt"
    torch.save({"state_dict": {"conv1.conv.weight": torch.zeros(64, 6, 7, 7)}}, wing)
    assert "no 'generator' and 'style_encoder' entries (it holds: state_dict)" in _refused(
        tmp_path, wing)
    bare = tmp_path / "resnet.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), bare)
    assert "one network's bare state_dict" in _refused(tmp_path, bare)
    optims = tmp_path / "100000_optims.ckpt"
    opt = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    torch.save({"generator": opt.state_dict(), "style_encoder": opt.state_dict()}, optims)
    assert "optimizer states (a *_optims.ckpt)" in _refused(tmp_path, optims)


@pytest.mark.backend_independent  # names and shapes only
def test_shape_misfits_name_key_expected_and_found(tmp_path, small_ckpt):
    ckpt, _ = small_ckpt
    bad = {e: dict(v) for e, v in ckpt.items()}
    bad["generator"]["decode.0.conv1.weight"] = torch.zeros(32, 32, 1, 1)
    path = tmp_path / "bad.ckpt"
    torch.save(bad, path)
    line = _refused(tmp_path, path)
    assert ("generator.decode.0.conv1.weight: expected (32, 32, 3, 3), found (32, 32, 1, 1)"
            in line), line
    # Three domain names for a two-domain file: the first misfit is the missing third head.
    line = _refused(tmp_path, small_ckpt[1], "--domains", "a,b,c")
    assert "style_encoder.unshared.2.weight: expected (64, 64), found missing" in line, line
    # A w_hpf 1 generator is one block deeper than this file's.
    line = _refused(tmp_path, small_ckpt[1], "--w-hpf", "1")
    assert "generator.encode.1.conv2.weight: expected (64, 32, 3, 3), found (32, 32, 3, 3)" in line


@pytest.mark.backend_independent  # NumPy and PyTorch only
def test_high_pass_filter_sets_w_hpf_or_is_refused():
    from keras_l2mgan.errors import CorruptFileError
    from keras_l2mgan.importers.official import infer_config

    nets = ref.build(img_size=32, w_hpf=2.0, dim_in=16, max_conv_dim=64, flavour="stargan-v2")
    state = {e: {k: v.numpy() for k, v in nets[e].state_dict().items()}
             for e in ("generator", "style_encoder")}
    config, notes = infer_config(state)
    assert config.w_hpf == 2.0 and config.img_size == 32 and notes == []
    state["generator"]["hpf.filter"] = np.eye(3, dtype="float32")
    with pytest.raises(CorruptFileError, match="hpf.filter is not the high-pass kernel"):
        infer_config(state)


@pytest.mark.backend_independent  # weights copied, compared exactly
def test_wing_and_landmark_mean_go_into_the_bundle(tmp_path, small_ckpt, torch_fan):
    """--wing (DataParallel names, a tensor of a larger FAN) wins over the file's own 'fan'
    entry; --landmarks-mean is kept as landmarks_mean.npy."""
    from keras import ops

    from keras_l2mgan.bundle import load_bundle, load_landmarks_mean

    state = {k: v.clone() for k, v in torch_fan[0].state_dict().items()}
    wing = tmp_path / "wing.ckpt"
    torch.save({"state_dict": {**{f"module.{k}": v for k, v in state.items()},
                               "module.m1.b1_4.bn1.weight": torch.ones(256)}}, wing)
    mean = tmp_path / "celeba_lm_mean.npz"
    points = np.random.default_rng(0).uniform(30, 220, (98, 2)).astype("float32")
    np.savez(mean, mean=points)
    ckpt = {**small_ckpt[0], "fan": {"conv1.conv.weight": torch.zeros(64, 6, 7, 7)}}
    path = tmp_path / "own_fan_nets_ema.ckpt"
    torch.save(ckpt, path)
    result = _invoke("import", path, "-o", tmp_path / "b", "--wing", wing,
                     "--landmarks-mean", mean)
    assert result.exit_code == 0, result.output + result.stderr
    count = sum(not k.endswith("num_batches_tracked") for k in state)
    assert f"fan from wing.ckpt ({count} tensors)" in result.output
    assert "FAN from wing.ckpt; the checkpoint's own 'fan' entry is not used" in result.output
    assert "ignored 1 FAN tensors that StarGAN v2's FAN does not have" in result.output
    assert "kept: landmark mean of celeba_lm_mean.npz (98 points)" in result.output

    model = load_bundle(tmp_path / "b")
    assert model.config.fan and model.fan is not None
    np.testing.assert_array_equal(ops.convert_to_numpy(model.fan.l0.bias), state["l0.bias"])
    np.testing.assert_array_equal(ops.convert_to_numpy(model.fan.conv1.kernel),
                                  state["conv1.conv.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(load_landmarks_mean(tmp_path / "b"), points)
    source = json.loads((tmp_path / "b" / "import.json").read_text())
    assert source["fan"]["from"] == "--wing" and source["fan"]["file"] == "wing.ckpt"
    assert source["fan"]["sha256"] == hashlib.sha256(wing.read_bytes()).hexdigest()
    assert source["fan"]["ignored_keys"] == ["m1.b1_4.bn1.weight"]
    assert source["landmarks_mean"]["points"] == 98
    # A bundle without one: None.
    assert load_landmarks_mean(tmp_path) is None


@pytest.mark.backend_independent  # refused before any model is built
def test_malformed_fan_inputs_are_one_line(tmp_path, small_ckpt, torch_fan):
    state = torch_fan[0].state_dict()
    mean = tmp_path / "celeba_lm_mean.npz"
    np.savez(mean, mean=np.zeros((68, 2), "float32"))
    line = _refused(tmp_path, small_ckpt[1], "--landmarks-mean", mean)
    assert line.startswith("Error: --landmarks-mean ") and line.endswith(
        "expected an array 'mean' of (98, 2) finite floats, found float32 (68, 2)"), line
    np.savez(mean, other=np.zeros(3))
    assert "expected an array 'mean'" in _refused(tmp_path, small_ckpt[1], "--landmarks-mean",
                                                  mean)
    assert "not a FAN checkpoint" in _refused(tmp_path, small_ckpt[1], "--wing", small_ckpt[1])
    wing = tmp_path / "wing.ckpt"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, wing)
    assert ("not StarGAN v2's FAN weights: conv1.conv.weight expected (64, 6, 7, 7), found "
            "missing") in _refused(tmp_path, small_ckpt[1], "--wing", wing)
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "bn_end0.running_var"}},
               wing)
    line = _refused(tmp_path, small_ckpt[1], "--wing", wing)
    assert line.endswith("wing.ckpt: FAN weights: bn_end0.running_var is missing (expected "
                         "shape (256,))"), line
    broken = {k: v.clone() for k, v in state.items()}
    broken["l0.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"state_dict": broken}, wing)
    assert "FAN weights: l0.weight holds NaN or infinite values" in _refused(
        tmp_path, small_ckpt[1], "--wing", wing)
    # The checkpoint's own entry is checked the same way.
    path = tmp_path / "partial_fan.ckpt"
    torch.save({**small_ckpt[0], "fan": {"conv1.conv.weight": torch.zeros(64, 6, 7, 7)}}, path)
    assert ("partial_fan.ckpt: entry 'fan': FAN weights: conv1.conv.bias is missing "
            "(expected shape (64,))") in _refused(tmp_path, path)


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
from cli.main import main
main(["import", sys.argv[1], "-o", sys.argv[2]])
"""


def _import_without_torch(ckpt: Path, out: Path) -> subprocess.Popen:
    """`l2m import CKPT -o OUT` in a process that cannot import torch (started, not awaited)."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-c", BLOCK_TORCH, str(ckpt), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO_ROOT)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.backend_independent  # file reading; the torch-less imports are TensorFlow subprocesses
def test_without_torch_zip_files_import_and_others_name_the_extra(tmp_path, small_ckpt):
    from keras_l2mgan.bundle import load_bundle

    legacy = tmp_path / "legacy.ckpt"  # torch < 1.6's format: no zip
    torch.save(small_ckpt[0], legacy, _use_new_zipfile_serialization=False)
    # Both torch-less processes and the import with torch run at the same time: each is
    # mostly a single-threaded TensorFlow import.
    zipped = _import_without_torch(small_ckpt[1], tmp_path / "b")
    refused = _import_without_torch(legacy, tmp_path / "out")
    try:
        with_torch = _invoke("import", small_ckpt[1], "-o", tmp_path / "b_torch")
        result, refusal = _finish(zipped), _finish(refused)
    finally:
        zipped.kill()
        refused.kill()
    assert result.returncode == 0, result.stderr[-2000:]
    assert with_torch.exit_code == 0
    for a, b in zip(load_bundle(tmp_path / "b").weights, load_bundle(tmp_path / "b_torch").weights,
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert refusal.returncode == 2, refusal.stderr[-2000:]
    assert "pip install 'keras-l2mgan[torch]'" in refusal.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.backend_independent  # file reading
def test_zip_reader_equals_torch_load(tmp_path):
    from keras_l2mgan.importers.checkpoint import _to_numpy
    from keras_l2mgan.importers.torch_zip import UnsupportedPickle, read_torch_zip

    ckpt = _checkpoint(ref.build(img_size=32, flavour="stargan-v2"),
                       ("generator", "style_encoder", "mapping_network"))
    ckpt["fan"] = {"bn.num_batches_tracked": torch.tensor(5),  # 0-d int64
                   "t": torch.arange(12.0).reshape(3, 4).t(),  # a strided view
                   "h": torch.ones(3, dtype=torch.float16), "e": torch.zeros(0, 3),
                   "bf": torch.tensor([1.5, -2.0], dtype=torch.bfloat16)}
    ckpt["epoch"], ckpt["meta"] = 3, {"name": "x", "values": [1, 2.0, None]}
    path = tmp_path / "x.ckpt"
    torch.save(ckpt, path)
    ours, theirs = read_torch_zip(path), _to_numpy(torch.load(path, weights_only=True), torch, 0)

    def same(a, b):
        assert type(a) is type(b) or isinstance(a, dict) and isinstance(b, dict)
        if isinstance(a, dict):
            assert list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        else:
            assert a == b
        return True

    assert same(ours, theirs)
    torch.save({"generator": Evil()}, path)
    with pytest.raises(UnsupportedPickle, match="posix.system|nt.system"):
        read_torch_zip(path)


# --- l2m train --init-from ----------------------------------------------------------------------

def _domain_folders(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for domain in DOMAINS:
            folder = root / split / domain
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.needs_tensorflow  # trains and resumes in this process
@pytest.mark.slow  # an import, then two trainings in this process, each tracing the step
def test_train_init_from_an_imported_bundle(tmp_path, small_ckpt, torch_fan):
    """A bundle with a FAN (--wing) starts a run whose model has the FAN too (the run takes
    the bundle's fan setting), frozen through training and kept when resuming."""
    from keras_l2mgan.bundle import load_bundle

    bundle, wing = tmp_path / "bundle", tmp_path / "wing.ckpt"
    torch.save({"state_dict": torch_fan[0].state_dict()}, wing)
    assert _invoke("import", small_ckpt[1], "-o", bundle, "--domains", ",".join(DOMAINS),
                   "--wing", wing).exit_code == 0
    data = _domain_folders(tmp_path / "faces")
    common = ("train", "--data", data, "--steps", "1", "--batch-size", "2", "--no-jit",
              "--sample-every", "1", "--checkpoint-every", "1", "--init-from", bundle)
    line = _error_line(_invoke(*common, "--preset", "mini_64", "--run-dir", tmp_path / "r0"))
    assert "the bundle's model has img_size 32, not 64" in line and "--preset tiny_32" in line

    result = _invoke(*common, "--preset", "tiny_32", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output + result.stderr
    start, trained = load_bundle(bundle), load_bundle(tmp_path / "run" / "model")
    moved = max(float(np.abs(a - b).max()) for a, b in
                zip(start.generator.get_weights(), trained.generator.get_weights(), strict=True))
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    fresh = L2MGAN(get_preset("tiny_32", domain_names=DOMAINS))
    apart = max(float(np.abs(a - b).max()) for a, b in
                zip(start.generator.get_weights(), fresh.generator.get_weights(), strict=True))
    # One step at lr 1e-4 moves a weight by ~1e-4 (Adam); a fresh start is ~1 away.
    assert moved < 1e-2 < apart, (moved, apart)
    assert trained.config.fan and trained.fan is not None
    for a, b in zip(start.fan.get_weights(), trained.fan.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # Resuming reads the run's checkpoint: the starting bundle is not needed any more.
    import shutil

    shutil.rmtree(bundle)
    result = _invoke("train", "--resume", tmp_path / "run", "--steps", "2")
    assert result.exit_code == 0, result.output + result.stderr
    assert load_bundle(tmp_path / "run" / "model").config.fan
