"""Model configuration: one dataclass that fixes every shape, plus named presets.

The config is plain data (no keras import), so the CLI can read and list presets before the
Keras backend is chosen.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

# Upper bounds of the config fields: well above every official model (256 px, widths up to
# 512, style_dim 64, 3 domains), far below sizes that would exhaust memory when built.
MAX_IMG_SIZE = 1024
MAX_DOMAINS = 64
MAX_STYLE_DIM = 1024
MAX_WIDTH = 2048
MAX_W_HPF = 10.0
# keras_l2mgan.blend's thresholds (grey levels of 255) unless a model says otherwise.
DEFAULT_BLEND_GREY_LEVELS = (6.0, 16.0)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int, high: int, note: str = "") -> None:
    if not _is_int(value) or not low <= value <= high:
        note = f" {note}" if note else ""
        raise ValueError(f"{name} must be an integer from {low} to {high}{note}, got {value!r}")


def check_blend_grey_levels(value: Any) -> tuple[float, float]:
    """(low, high) as floats with 0 <= low < high <= 255, or one ValueError saying so."""
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        low, high = float(value[0]), float(value[1])
        if 0 <= low < high <= 255:
            return low, high
    raise ValueError("blend_grey_levels must be two numbers [low, high] with "
                     f"0 <= low < high <= 255 (grey levels), got {value!r}")


@dataclasses.dataclass(frozen=True)
class L2MConfig:
    """Every hyper-parameter that fixes the networks' shapes.

    ``dim_in=None`` means the official width ``2**14 // img_size`` (capped at ``max_conv_dim``);
    the CPU presets set it smaller. ``fan=True`` adds StarGAN v2's face-landmark network, whose
    heatmaps give the generator its face masks when w_hpf > 0 (as the official model does).
    ``blend_changes=True`` keeps the input wherever an edit does not change the generator's
    reconstruction (keras_l2mgan.blend; off in the official models, on in what `l2m train` makes);
    ``blend_grey_levels`` = (low, high) are its thresholds: a change below `low` grey levels
    keeps the input, above `high` takes the edit (a longer-trained model, whose reconstruction
    is closer to its input, can afford higher ones: `tools/blend_sweep.py` picks them).
    """

    img_size: int = 256
    num_domains: int = 2
    style_dim: int = 64
    w_hpf: float = 1.0
    dim_in: int | None = None
    max_conv_dim: int = 512
    domain_names: tuple[str, ...] | None = None
    fan: bool = False
    blend_changes: bool = False
    blend_grey_levels: tuple[float, float] = DEFAULT_BLEND_GREY_LEVELS

    def __post_init__(self) -> None:
        # A config.json is read from disk, so every field is checked for type and range: a
        # string "64" or a width of a million must be one clear error, not a traceback or an
        # allocation the size of the machine's memory.
        size = self.img_size
        if not _is_int(size) or not 32 <= size <= MAX_IMG_SIZE or size & (size - 1):
            raise ValueError(f"img_size must be a power of two from 32 to {MAX_IMG_SIZE} "
                             f"(32, 64, 128, 256, 512, 1024), got {size!r}")
        _check_int("num_domains", self.num_domains, 2, MAX_DOMAINS)
        _check_int("style_dim", self.style_dim, 1, MAX_STYLE_DIM)
        if (isinstance(self.w_hpf, bool) or not isinstance(self.w_hpf, (int, float))
                or not 0 <= self.w_hpf <= MAX_W_HPF):
            raise ValueError(f"w_hpf must be a number from 0 (high-pass off) to {MAX_W_HPF}, "
                             f"got {self.w_hpf!r}")
        if self.dim_in is not None:
            _check_int("dim_in", self.dim_in, 1, MAX_WIDTH, "(or null: the official width)")
        _check_int("max_conv_dim", self.max_conv_dim, 1, MAX_WIDTH)
        if self.domain_names is not None:
            if isinstance(self.domain_names, str) or not all(
                    isinstance(n, str) and 0 < len(n) <= 100 for n in self.domain_names):
                raise ValueError(f"domain_names must be a list of names (1 to 100 characters), "
                                 f"got {self.domain_names!r}")
            names = tuple(self.domain_names)
            if len(names) != self.num_domains or len(set(names)) != len(names):
                raise ValueError(
                    f"domain_names must be {self.num_domains} distinct names, got {list(names)}"
                )
            object.__setattr__(self, "domain_names", names)
        for flag in ("fan", "blend_changes"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        object.__setattr__(self, "blend_grey_levels",
                           check_blend_grey_levels(self.blend_grey_levels))

    # Derived widths and depths (the official formulas).

    @property
    def base_dim(self) -> int:
        """Channels after from_rgb."""
        official = 2**14 // self.img_size
        return min(self.dim_in if self.dim_in is not None else official, self.max_conv_dim)

    @property
    def generator_repeat_num(self) -> int:
        """Down/up-sampling blocks of the generator: one more when the high-pass path is on."""
        return int(math.log2(self.img_size)) - 4 + (1 if self.w_hpf > 0 else 0)

    @property
    def trunk_repeat_num(self) -> int:
        """Down-sampling blocks of the style encoder and discriminator trunks (down to 4x4)."""
        return int(math.log2(self.img_size)) - 2

    @property
    def names(self) -> tuple[str, ...]:
        """Domain names, defaulting to domain_0, domain_1, ..."""
        return self.domain_names or tuple(f"domain_{i}" for i in range(self.num_domains))

    def replace(self, **changes: Any) -> L2MConfig:
        return dataclasses.replace(self, **changes)

    # JSON round trip.

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["domain_names"] is not None:
            data["domain_names"] = list(data["domain_names"])
        data["blend_grey_levels"] = list(data["blend_grey_levels"])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> L2MConfig:
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; allowed keys: {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("domain_names"), list):
            data["domain_names"] = tuple(data["domain_names"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> L2MConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write the config as JSON atomically (temp file, then rename)."""
        from keras_l2mgan.atomic import write_file_atomic

        write_file_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> L2MConfig:
        """Read a config.json; any damage is one CorruptFileError naming the file."""
        from keras_l2mgan.errors import CorruptFileError

        try:
            return cls.from_json(Path(path).read_text())
        except (ValueError, TypeError, UnicodeDecodeError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CorruptFileError(f"{path} is not a valid model config: {reason}") from None


# Named presets. The official ones reproduce the released code; the small ones are sized so a
# batch-8 train step takes well under a second on 2 CPU cores.
PRESETS: dict[str, L2MConfig] = {
    "celeba_hq_256": L2MConfig(img_size=256, num_domains=2, w_hpf=1.0),
    "afhq_256": L2MConfig(img_size=256, num_domains=3, w_hpf=0.0),
    "official_64": L2MConfig(img_size=64, num_domains=2, w_hpf=0.0),
    "small_64": L2MConfig(img_size=64, num_domains=2, w_hpf=0.0, dim_in=32, max_conv_dim=128),
    "mini_64": L2MConfig(img_size=64, num_domains=2, w_hpf=0.0, dim_in=16, max_conv_dim=64),
    "tiny_32": L2MConfig(img_size=32, num_domains=2, w_hpf=0.0, dim_in=16, max_conv_dim=64),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "celeba_hq_256": "official CelebA-HQ model (256 px, high-pass path on)",
    "afhq_256": "official AFHQ layout (256 px, cat/dog/wild, no high-pass path)",
    "official_64": "official widths at 64 px (benchmarks; slow on CPU)",
    "small_64": "CPU preset: 64 px, reduced widths (wider CPU runs)",
    "mini_64": "CPU preset: 64 px, a quarter of small_64's widths (the `l2m train` default, "
                "the shipped demo models)",
    "tiny_32": "CPU preset: 32 px, minimal widths (tests, smoke runs)",
}


def get_preset(name: str, **overrides: Any) -> L2MConfig:
    """Return a preset by name, optionally with fields replaced (e.g. ``num_domains=4``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
