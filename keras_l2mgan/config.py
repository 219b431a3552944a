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


@dataclasses.dataclass(frozen=True)
class L2MConfig:
    """Every hyper-parameter that fixes the networks' shapes.

    ``dim_in=None`` means the official width ``2**14 // img_size`` (capped at ``max_conv_dim``);
    the CPU presets set it smaller.
    """

    img_size: int = 256
    num_domains: int = 2
    style_dim: int = 64
    w_hpf: float = 1.0
    dim_in: int | None = None
    max_conv_dim: int = 512
    domain_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        size = self.img_size
        if not isinstance(size, int) or size < 32 or size & (size - 1):
            raise ValueError(
                f"img_size must be a power of two >= 32 (32, 64, 128, 256, 512, ...), got {size!r}"
            )
        if not isinstance(self.num_domains, int) or self.num_domains < 2:
            raise ValueError(f"num_domains must be an integer >= 2, got {self.num_domains!r}")
        if self.style_dim < 1:
            raise ValueError(f"style_dim must be >= 1, got {self.style_dim!r}")
        if self.w_hpf < 0:
            raise ValueError(f"w_hpf must be >= 0 (0 disables high-pass), got {self.w_hpf}")
        if self.dim_in is not None and self.dim_in < 1:
            raise ValueError(f"dim_in must be >= 1 (or None: official width), got {self.dim_in}")
        if self.max_conv_dim < 1:
            raise ValueError(f"max_conv_dim must be >= 1, got {self.max_conv_dim}")
        if self.domain_names is not None:
            names = tuple(str(n) for n in self.domain_names)
            if len(names) != self.num_domains or len(set(names)) != len(names):
                raise ValueError(
                    f"domain_names must be {self.num_domains} distinct names, got {list(names)}"
                )
            object.__setattr__(self, "domain_names", names)

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
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> L2MConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; allowed keys: {sorted(known)}")
        data = dict(data)
        if data.get("domain_names") is not None:
            data["domain_names"] = tuple(data["domain_names"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> L2MConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write the config as JSON atomically (temp file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> L2MConfig:
        return cls.from_json(Path(path).read_text())


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
    "small_64": "CPU preset: 64 px, reduced widths (the `l2m train` default)",
    "mini_64": "CPU preset: 64 px, a quarter of small_64's widths (the shipped demo models)",
    "tiny_32": "CPU preset: 32 px, minimal widths (tests, smoke runs)",
}


def get_preset(name: str, **overrides: Any) -> L2MConfig:
    """Return a preset by name, optionally with fields replaced (e.g. ``num_domains=4``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
