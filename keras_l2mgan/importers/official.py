"""The authors' checkpoints (L2M-GAN and StarGAN v2 ``*_nets_ema.ckpt`` / ``*_nets.ckpt``) as
an L2MGAN, weight for weight.

    result = import_checkpoint("100000_nets_ema.ckpt", domain_names=("not_smiling", "smiling"))
    save_imported(result, "models/smiling")

The model's shape (img_size, w_hpf, domains, style_dim, widths) is read from the tensors'
shapes; explicit arguments override it, and then every official key is checked against the
model: the first misfit is one ValueError naming the key, the expected and the found shape.
A StarGAN v2 file has no style transformer: the decomposer and the domain transformers start
fresh (seeded), so its bundle is a starting point for ``l2m train --init-from``. The FAN
(face masks for w_hpf > 0, landmarks for alignment) comes from the checkpoint's ``fan`` entry
or StarGAN v2's wing.ckpt; without one the model has ``fan=False``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from keras_l2mgan.config import L2MConfig
from keras_l2mgan.errors import CorruptFileError
from keras_l2mgan.importers.checkpoint import (
    FORMATS,
    is_state_dict,
    read_torch_checkpoint,
    strip_module_prefix,
)

NETWORKS = ("generator", "style_encoder", "discriminator")
# Entries of official checkpoints that hold no weights of this model, and why.
NOT_IMPORTED = {
    "mapping_network": "StarGAN v2's latent-to-style MLP is not part of L2M-GAN",
    "vgg": "the ResNet-18 trunk of the official code's unused identity loss",
}
# The official generator and style encoder each carry an MLP they never call.
DEAD_PREFIX = "attention."
# First key components that are layers of each network: a key there that the model does not
# expect means the file's depth, width or domain count differs from the model's.
_LAYERS = {
    "generator": {"from_rgb", "encode", "decode", "to_rgb", "hpf"},
    "style_encoder": {"shared", "unshared", "transform1", "transform2"},
    "discriminator": {"main"},
}
_TRANSFORMER = {"transform1", "transform2"}
_LAPLACIAN = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], "float32")


@dataclasses.dataclass
class ImportResult:
    """The imported model, what the bundle's import.json records, and lines for the user."""

    model: Any  # L2MGAN
    source: dict[str, Any]
    notes: list[str]
    landmarks_mean: np.ndarray | None = None  # (98, 2), saved as the bundle's landmarks_mean.npy


# --- The official layout of a Keras model: official key -> (variable, layout) ------------------

def _conv(prefix: str, layer) -> list[tuple[str, Any, str]]:
    params = [(f"{prefix}.weight", layer.kernel, "conv")]
    if layer.use_bias:
        params.append((f"{prefix}.bias", layer.bias, "vector"))
    return params


def _dense(prefix: str, layer) -> list[tuple[str, Any, str]]:
    return [(f"{prefix}.weight", layer.kernel, "dense"), (f"{prefix}.bias", layer.bias, "vector")]


def _norm(prefix: str, layer) -> list[tuple[str, Any, str]]:
    return [(f"{prefix}.weight", layer.gamma, "vector"), (f"{prefix}.bias", layer.beta, "vector")]


def _resblk(prefix: str, block) -> list[tuple[str, Any, str]]:
    params = _conv(f"{prefix}.conv1", block.conv1) + _conv(f"{prefix}.conv2", block.conv2)
    if block.normalize:
        params += _norm(f"{prefix}.norm1", block.norm1) + _norm(f"{prefix}.norm2", block.norm2)
    if block.learned_shortcut:
        params += _conv(f"{prefix}.conv1x1", block.conv1x1)
    return params


def _adain_resblk(prefix: str, block) -> list[tuple[str, Any, str]]:
    params = _conv(f"{prefix}.conv1", block.conv1) + _conv(f"{prefix}.conv2", block.conv2)
    params += _dense(f"{prefix}.norm1.fc", block.norm1.fc)
    params += _dense(f"{prefix}.norm2.fc", block.norm2.fc)
    if block.learned_shortcut:  # unused when w_hpf > 0, still in the official files
        params += _conv(f"{prefix}.conv1x1", block.conv1x1)
    return params


def _mlp(prefix: str, mlp) -> list[tuple[str, Any, str]]:
    # nn.Sequential(Linear, ReLU, Linear, ReLU, Linear): the Linears are items 0, 2 and 4.
    return [param for i, layer in enumerate(mlp.dense_layers)
            for param in _dense(f"{prefix}.{2 * i}", layer)]


def _trunk(prefix: str, net) -> list[tuple[str, Any, str]]:
    # nn.Sequential(conv, ResBlk x R, LeakyReLU, conv4x4, LeakyReLU[, conv1x1]).
    params = _conv(f"{prefix}.0", net.from_rgb)
    for i, block in enumerate(net.blocks):
        params += _resblk(f"{prefix}.{i + 1}", block)
    return params + _conv(f"{prefix}.{len(net.blocks) + 2}", net.last_conv)


def generator_layout(g) -> list[tuple[str, Any, str]]:
    params = _conv("from_rgb", g.from_rgb)
    for i, block in enumerate(g.encode):
        params += _resblk(f"encode.{i}", block)
    for i, block in enumerate(g.decode):
        params += _adain_resblk(f"decode.{i}", block)
    return params + _norm("to_rgb.0", g.to_rgb_norm) + _conv("to_rgb.2", g.to_rgb_conv)


def style_encoder_layout(e, transformer: bool = True) -> list[tuple[str, Any, str]]:
    params = _trunk("shared", e)
    for i, head in enumerate(e.heads):
        params += _dense(f"unshared.{i}", head)
    if transformer:
        params += _mlp("transform1", e.decomposer)
        for i, mlp in enumerate(e.transformers):
            params += _mlp(f"transform2.{i}", mlp)
    return params


def discriminator_layout(d) -> list[tuple[str, Any, str]]:
    return _trunk("main", d) + _conv(f"main.{len(d.blocks) + 4}", d.classifier)


def torch_shape(variable, layout: str) -> tuple[int, ...]:
    """The PyTorch shape of a Keras variable: conv HWIO -> OIHW, Dense (in, out) -> (out, in)."""
    shape = tuple(int(n) for n in variable.shape)
    if layout == "conv":
        return (shape[3], shape[2], shape[0], shape[1])
    return shape[::-1] if layout == "dense" else shape


def to_keras(array: np.ndarray, layout: str) -> np.ndarray:
    if layout == "conv":
        return array.transpose(2, 3, 1, 0)
    return array.T if layout == "dense" else array


# --- Reading and checking the file ----------------------------------------------------------------

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _networks(path: Path, data: Any) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """The state dicts of G, E (and D) of a checkpoint, ``module.`` prefixes removed."""
    name = path.name
    if not isinstance(data, Mapping):
        raise CorruptFileError(f"{name} is not an L2M-GAN or StarGAN v2 checkpoint: it holds a "
                               f"{type(data).__name__}, not a dict of networks")
    entries = sorted(str(k) for k in data)
    shown = ", ".join(entries[:6]) + (" ..." if len(entries) > 6 else "")
    for entry in NETWORKS:
        value = data.get(entry)
        if isinstance(value, Mapping) and {"state", "param_groups"} <= set(value):
            raise CorruptFileError(f"{name} holds optimizer states (a *_optims.ckpt), not "
                                   "weights: pass the *_nets_ema.ckpt or *_nets.ckpt file")
    if "generator" not in data or "style_encoder" not in data:
        hint = ("; it looks like one network's bare state_dict" if is_state_dict(data)
                else f" (it holds: {shown})")
        raise CorruptFileError(f"{name} is not an L2M-GAN or StarGAN v2 checkpoint: no "
                               f"'generator' and 'style_encoder' entries{hint}")
    nets, notes = {}, []
    for entry in NETWORKS:
        if entry not in data:
            continue
        if not is_state_dict(data[entry]):
            raise CorruptFileError(f"{name}: entry {entry!r} is not a state_dict of tensors")
        nets[entry], stripped = strip_module_prefix(data[entry])
        if stripped:
            notes.append(f"{entry}: 'module.' prefixes (nn.DataParallel) removed")
    return nets, notes


def _indices(state: Mapping[str, Any], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in state if (m := regex.fullmatch(key))})


def _shape_of(state: Mapping[str, Any], entry: str, key: str, ndim: int) -> tuple[int, ...]:
    value = state.get(key)
    if value is None or value.ndim != ndim:
        found = "missing" if value is None else str(tuple(value.shape))
        raise CorruptFileError(f"{entry}.{key}: expected a {ndim}-D tensor, found {found}")
    return tuple(value.shape)


def infer_config(nets: dict[str, dict[str, np.ndarray]], img_size: int | None = None,
                 domain_names: tuple[str, ...] | None = None, w_hpf: float | None = None
                 ) -> tuple[L2MConfig, list[str]]:
    """The L2MConfig the tensors' shapes describe; given arguments win over the file's."""
    enc, gen = nets["style_encoder"], nets["generator"]
    notes = []
    blocks = _indices(enc, r"shared\.(\d+)\.conv1\.weight")
    if not blocks:
        raise CorruptFileError("style_encoder.shared.1.conv1.weight: expected the first "
                               "down-sampling block of the style encoder, found missing")
    if img_size is None:
        img_size = 2 ** (len(blocks) + 2)
    heads = _indices(enc, r"unshared\.(\d+)\.weight")
    style_dim = _shape_of(enc, "style_encoder", "unshared.0.weight", 2)[0]
    num_domains = len(domain_names) if domain_names is not None else len(heads)
    dim_in = _shape_of(enc, "style_encoder", "shared.0.weight", 4)[0]
    max_conv_dim = max(v.shape[0] for k, v in enc.items()
                       if k.startswith("shared.") and v.ndim == 4)

    filt = gen.get("hpf.filter")
    if filt is not None:
        if (filt.shape != (3, 3) or not np.all(np.isfinite(filt)) or filt[1, 1] <= 0
                or not np.allclose(filt, _LAPLACIAN * filt[1, 1] / 8, rtol=1e-5, atol=0)):
            raise CorruptFileError("generator.hpf.filter is not the high-pass kernel "
                                   "[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] / w_hpf")
        found = float(8.0 / filt[1, 1])
        if w_hpf is not None and not math.isclose(w_hpf, found, rel_tol=1e-5):
            raise CorruptFileError(f"generator.hpf.filter says w_hpf {found:g}, not the "
                                   f"requested {w_hpf:g}")
        w_hpf = round(found, 6)
    elif w_hpf is None:
        # Depth tells whether the high-pass path exists, not its weight: the official 1.
        repeats = len(_indices(gen, r"encode\.(\d+)\.conv1\.weight")) - 2
        deep = repeats > int(math.log2(img_size)) - 4
        w_hpf = 1.0 if deep else 0.0
        if deep:
            notes.append("generator.hpf.filter missing: w_hpf 1 (the official value) assumed; "
                         "pass --w-hpf to change it")
    official_dim = 2**14 // img_size
    try:
        config = L2MConfig(img_size=img_size, num_domains=num_domains, style_dim=style_dim,
                           w_hpf=float(w_hpf), max_conv_dim=max_conv_dim,
                           dim_in=None if dim_in == official_dim else dim_in,
                           domain_names=domain_names)
    except ValueError as error:
        raise CorruptFileError(f"no valid model for this checkpoint: {error}") from None
    return config, notes


def describe(config: L2MConfig) -> str:
    return (f"{config.img_size} px, w_hpf {config.w_hpf:g}, {config.num_domains} domains, "
            f"style_dim {config.style_dim}, dim_in {config.base_dim}, "
            f"max_conv_dim {config.max_conv_dim}")


def match_weights(nets: dict[str, dict[str, np.ndarray]], model, fmt: str):
    """Pair every official key of the networks in ``nets`` with its Keras variable.

    Returns (assignments [(key, variable, Keras-layout array)], extra keys, dead keys); any
    missing, misshapen or unexpected layer key raises one CorruptFileError naming it.
    """
    config = model.config
    layouts = {"generator": generator_layout(model.generator),
               "style_encoder": style_encoder_layout(model.style_encoder, fmt == "l2mgan")}
    if "discriminator" in nets:
        layouts["discriminator"] = discriminator_layout(model.discriminator)
    misfits, assignments, extras, dead = [], [], [], []
    for entry, params in layouts.items():
        state, expected = nets[entry], {key for key, _, _ in params}
        for key, variable, layout in params:
            want, value = torch_shape(variable, layout), state.get(key)
            if value is None:
                misfits.append(f"{entry}.{key}: expected {want}, found missing")
            elif tuple(value.shape) != want:
                misfits.append(f"{entry}.{key}: expected {want}, found {tuple(value.shape)}")
            elif not np.issubdtype(value.dtype, np.floating):
                misfits.append(f"{entry}.{key}: expected float weights, found {value.dtype}")
            else:
                assignments.append((f"{entry}.{key}", variable, to_keras(value, layout)))
        layers = _LAYERS[entry] - (_TRANSFORMER if fmt == "stargan-v2" else set())
        for key, value in state.items():
            if key in expected or (entry == "generator" and key == "hpf.filter"
                                   and config.w_hpf > 0):
                continue
            if key.startswith(DEAD_PREFIX) and entry in ("generator", "style_encoder"):
                dead.append(f"{entry}.{key}")
            elif key.split(".")[0] in layers:
                misfits.append(f"{entry}.{key}: expected none, found {tuple(value.shape)}")
            else:
                extras.append(f"{entry}.{key}")
    if misfits:
        more = f" (and {len(misfits) - 1} more)" if len(misfits) > 1 else ""
        raise CorruptFileError(f"the checkpoint does not fit a model of {describe(config)}: "
                               f"{misfits[0]}{more}")
    for key, _, array in assignments:
        if not np.all(np.isfinite(array)):
            raise CorruptFileError(f"{key} holds NaN or infinite values")
    return assignments, extras, dead


def detect_format(nets: dict[str, dict[str, np.ndarray]]) -> str:
    """l2mgan when the style encoder has the style transformer, else stargan-v2."""
    has_transformer = any(k.split(".")[0] in _TRANSFORMER for k in nets["style_encoder"])
    return "l2mgan" if has_transformer else "stargan-v2"


def _fan_weights(data: Any, path: Path, wing: Path | None,
                 wing_state: dict[str, np.ndarray] | None):
    """The FAN state dict to import (--wing wins over the checkpoint's ``fan`` entry), where
    it comes from (for errors and import.json), and notes."""
    from keras_l2mgan.importers.fan_files import fan_state_dict

    if wing is not None:
        notes = ([f"FAN from {wing.name}; the checkpoint's own 'fan' entry is not used"]
                 if "fan" in data else [])
        source = {"from": "--wing", "file": wing.name, "sha256": sha256_of(wing)}
        return wing_state, f"--wing {wing}", source, notes
    if "fan" in data:
        origin = f"{path.name}: entry 'fan'"
        return (fan_state_dict(data["fan"], origin), origin,
                {"from": "checkpoint", "file": path.name}, [])
    return None, None, None, []


def _load_fan(fan, state: dict[str, np.ndarray], origin: str) -> list[str]:
    """Copy the FAN weights (checked first); return the keys StarGAN v2's FAN does not have."""
    from keras_l2mgan.networks.fan import load_fan_state_dict

    for key in fan.torch_variables():
        value = state.get(key)
        if value is None:
            continue  # load_fan_state_dict names it
        if not np.issubdtype(value.dtype, np.floating):
            raise CorruptFileError(f"{origin}: FAN weights: {key} holds {value.dtype}, not "
                                   "floats")
        if not np.all(np.isfinite(value)):
            raise CorruptFileError(f"{origin}: FAN weights: {key} holds NaN or infinite values")
    try:
        used = set(load_fan_state_dict(fan, state))
    except ValueError as error:
        raise CorruptFileError(f"{origin}: {error}") from None
    # wing.ckpt may hold modules of a larger FAN: the official loader skips them too.
    return sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))


def import_checkpoint(path: str | Path, fmt: str = "auto", img_size: int | None = None,
                      domain_names: tuple[str, ...] | None = None, w_hpf: float | None = None,
                      seed: int = 0, wing: str | Path | None = None,
                      landmarks_mean: str | Path | None = None) -> ImportResult:
    """Read an official checkpoint into a new L2MGAN (see the module docstring).

    The FAN comes from `wing` (StarGAN v2's wing.ckpt) or else the checkpoint's ``fan`` entry;
    with one, the model has ``fan=True``. `landmarks_mean` (celeba_lm_mean.npz) is kept for
    the bundle. Parts the file lacks (D in a ``*_nets_ema.ckpt``; decomposer and transformers
    of a StarGAN v2 file) keep a fresh initialisation drawn from ``seed`` (this sets Keras'
    global seed). Raises a ValueError (one line) for anything that is not such a checkpoint.
    """
    import keras

    from keras_l2mgan import __version__
    from keras_l2mgan.importers.fan_files import read_landmarks_mean, read_wing
    from keras_l2mgan.model import L2MGAN

    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    path = Path(path)
    # The small side files first: a bad one is reported before the big file is read.
    mean = read_landmarks_mean(landmarks_mean) if landmarks_mean is not None else None
    wing = Path(wing) if wing is not None else None
    wing_state = read_wing(wing) if wing is not None else None
    data = read_torch_checkpoint(path)
    nets, notes = _networks(path, data)
    fan_state, fan_origin, fan_source, fan_notes = _fan_weights(data, path, wing, wing_state)
    fmt = detect_format(nets) if fmt == "auto" else fmt
    config, config_notes = infer_config(nets, img_size, domain_names, w_hpf)
    config = config.replace(fan=fan_state is not None)
    notes += config_notes + fan_notes

    keras.utils.set_random_seed(seed)
    model = L2MGAN(config)
    assignments, extras, dead = match_weights(nets, model, fmt)
    if fan_state is not None:
        fan_source["ignored_keys"] = _load_fan(model.fan, fan_state, fan_origin)
        fan_source["tensors"] = len(model.fan.torch_variables())
        if fan_source["ignored_keys"]:
            notes.append(f"ignored {len(fan_source['ignored_keys'])} FAN tensors that "
                         "StarGAN v2's FAN does not have (as its own loader does)")
    elif config.w_hpf > 0:
        notes.append("no FAN: edits run without face masks (the generator's high-pass path is "
                     "skipped); pass --wing wing.ckpt (StarGAN v2's FAN) to add it")
    for _, variable, array in assignments:
        variable.assign(array.astype("float32", copy=False))

    fresh = []
    if fmt == "stargan-v2":
        fresh.append("style_encoder decomposer and domain transformers (StarGAN v2 has no "
                     "style transformer): train them with `l2m train --init-from`")
    if "discriminator" not in nets:
        fresh.append("discriminator (not in this file: *_nets_ema.ckpt holds G and E only; "
                     "*_nets.ckpt has it)")
    not_imported = {e: NOT_IMPORTED[e] for e in NOT_IMPORTED if e in data}
    extras += sorted(str(e) for e in data
                     if e not in NETWORKS and e not in NOT_IMPORTED and e != "fan")
    if dead:
        owners = sorted({key.split(".")[0] for key in dead})
        notes.append(f"ignored the unused attention MLPs of {' and '.join(owners)} "
                     f"({len(dead)} tensors; the official code never calls them)")
    imported = {e: sum(key.startswith(f"{e}.") for key, _, _ in assignments)
                for e in NETWORKS if e in nets}
    if fan_source is not None:
        imported["fan"] = fan_source["tensors"]
    source = {
        "format": fmt, "file": path.name, "sha256": sha256_of(path), "imported": imported,
        "fresh": fresh, "not_imported": not_imported, "ignored": dead, "extra_keys": extras,
        "fan": fan_source,
        "landmarks_mean": None if mean is None else {
            "file": Path(landmarks_mean).name, "sha256": sha256_of(Path(landmarks_mean)),
            "points": int(mean.shape[0])},
        "keras_l2mgan": __version__,
    }
    return ImportResult(model, source, notes, mean)


def save_imported(result: ImportResult, directory: str | Path) -> Path:
    """Write the bundle (config.json, model.weights.h5, import.json[, landmarks_mean.npy])
    atomically."""
    from keras_l2mgan.atomic import atomic_directory, write_file_atomic
    from keras_l2mgan.bundle import (
        BUNDLE_FILES,
        CONFIG_FILE,
        IMPORT_FILE,
        LANDMARKS_FILE,
        WEIGHTS_FILE,
    )

    with atomic_directory(directory, "model bundle", BUNDLE_FILES) as tmp:
        result.model.config.save(tmp / CONFIG_FILE)
        result.model.save_weights(str(tmp / WEIGHTS_FILE))
        write_file_atomic(tmp / IMPORT_FILE, json.dumps(result.source, indent=2) + "\n")
        if result.landmarks_mean is not None:
            np.save(tmp / LANDMARKS_FILE, result.landmarks_mean, allow_pickle=False)
    return Path(directory)
