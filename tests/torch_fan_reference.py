"""A PyTorch reference of StarGAN v2's FAN and its heatmap -> mask recipe, for parity tests.

Written from /work/shared/docs/fan-masks-and-alignment.md (NCHW, as the official code). Module
names reproduce the official state dict, so ``FanReference().state_dict()`` has the names and
shapes of the ``fan.`` rows of l2mgan_official_keys.tsv (checked in tests/test_fan.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def coordinate_channels(size: int) -> torch.Tensor:
    """(1, 3, size, size): row coordinate, column coordinate, normalised radius."""
    line = torch.arange(size, dtype=torch.float32) / (size - 1) * 2 - 1
    rows = line[:, None].expand(size, size)
    cols = line[None, :].expand(size, size)
    radius = torch.sqrt(rows**2 + cols**2)
    return torch.stack([rows, cols, radius / radius.max()])[None]


class CoordConv(nn.Module):
    def __init__(self, size: int, channels_in: int, channels_out: int, kernel: int,
                 stride: int = 1, padding: int = 0):
        super().__init__()
        self.register_buffer("coords", coordinate_channels(size), persistent=False)
        self.conv = nn.Conv2d(channels_in + 3, channels_out, kernel, stride, padding)

    def forward(self, x):
        coords = self.coords.expand(x.shape[0], -1, -1, -1)
        return self.conv(torch.cat([x, coords], dim=1))


class ConvBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        widths = [dim_in, dim_out // 2, dim_out // 4, dim_out // 4]
        for i in range(3):
            self.add_module(f"bn{i + 1}", nn.BatchNorm2d(widths[i]))
            self.add_module(f"conv{i + 1}",
                            nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1, bias=False))
        self.downsample = None
        if dim_in != dim_out:
            self.downsample = nn.Sequential(nn.BatchNorm2d(dim_in), nn.ReLU(),
                                            nn.Conv2d(dim_in, dim_out, 1, bias=False))

    def forward(self, x):
        outputs, h = [], x
        for i in range(1, 4):
            h = getattr(self, f"conv{i}")(F.relu(getattr(self, f"bn{i}")(h)))
            outputs.append(h)
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat(outputs, dim=1) + shortcut


class Hourglass(nn.Module):
    def __init__(self, depth: int = 4, width: int = 256):
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(64, width, width, 1)
        for level in range(depth, 0, -1):
            names = ["b1", "b2", "b3"] + (["b2_plus"] if level == 1 else [])
            for name in names:
                self.add_module(f"{name}_{level}", ConvBlock(width, width))

    def level(self, n: int, x):
        upper = getattr(self, f"b1_{n}")(x)
        lower = getattr(self, f"b2_{n}")(F.avg_pool2d(x, 2))
        lower = self.level(n - 1, lower) if n > 1 else self.b2_plus_1(lower)
        lower = getattr(self, f"b3_{n}")(lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x):
        return self.level(self.depth, self.coordconv(x))


class FanReference(nn.Module):
    """forward(x01): [0, 1] images (N, 3, 256, 256) -> 99 raw heatmaps (N, 99, 64, 64)."""

    def __init__(self):
        super().__init__()
        self.conv1 = CoordConv(256, 3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        self.m0 = Hourglass()
        self.top_m_0 = ConvBlock(256, 256)
        self.conv_last0 = nn.Conv2d(256, 256, 1)
        self.bn_end0 = nn.BatchNorm2d(256)
        self.l0 = nn.Conv2d(256, 99, 1)

    def forward(self, x01):
        h = F.relu(self.bn1(self.conv1(x01)))
        h = F.avg_pool2d(self.conv2(h), 2)
        h = self.conv4(self.conv3(h))
        h = self.top_m_0(self.m0(h))
        return self.l0(F.relu(self.bn_end0(self.conv_last0(h))))

    @torch.no_grad()
    def heatmaps(self, images):
        """[-1, 1] images (N, 3, S, S) -> the 98 raw heatmaps, as the official get_heatmap
        with b_preprocess=False."""
        x = F.interpolate(images, size=256, mode="bilinear", align_corners=False)
        return self(x * 0.5 + 0.5)[:, :-1]


def randomize(model: nn.Module, seed: int, calibration) -> None:
    """Seeded random weights with BatchNorm statistics near those of `calibration` images.

    Running statistics taken from a calibration batch (then perturbed) keep activations of
    order one through the 40-odd blocks, so absolute tolerances stay meaningful, and the
    heatmaps are sparse enough that the masks are neither empty nor saturated.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
                module.momentum = 1.0  # the calibration pass sets the running statistics
        model.train()
        model(calibration)
        model.eval()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                std = module.running_var.sqrt()
                module.running_mean.add_(0.1 * std * torch.randn(std.shape, generator=generator))
                module.running_var.mul_(0.5 + torch.rand(std.shape, generator=generator))
        # Like a trained FAN's, the heatmaps are mostly below the recipe's 0.1 truncation with
        # sparse peaks: standardise l0's outputs on the calibration batch, then centre at -2.5.
        heatmaps = model(calibration)
        mean, std = heatmaps.mean(dim=(0, 2, 3)), heatmaps.std(dim=(0, 2, 3))
        model.l0.weight.div_(std[:, None, None, None])
        model.l0.bias.sub_(mean).div_(std).sub_(2.5)


# The mask recipe, literally as the shared facts state it (channel ranges half-open).
_GROUPS = {  # name: (start, end, shift, power)
    "chin": (8, 25, 0, 3), "eyebrows": (33, 51, -7, 2), "nostrils": (55, 60, 8, 4),
    "upper_lip": (77, 82, -8, 4), "lower_lip": (83, 88, 8, 4), "inner_lip": (88, 96, -2, 3),
}
_ZEROED = [*range(0, 8), *range(25, 33), 33, 46, 76, 82]


def shift(h, n: int):
    """Roll (N, C, H, W) maps by n rows: n > 0 moves content up (row i takes row i + n)."""
    return torch.roll(h, -n, dims=2)


@torch.no_grad()
def heatmaps_to_masks(heatmaps):
    """(N, 98, 64, 64) raw heatmaps -> (coarse, fine), each (N, 1, 256, 256)."""
    h = F.interpolate(heatmaps, scale_factor=4, mode="bilinear", align_corners=True)
    h = torch.where(h < 0.1, torch.zeros_like(h), h)
    flat = h.flatten(2)
    low = flat.min(dim=2).values[..., None, None]
    high = flat.max(dim=2).values[..., None, None]
    h = (h - low) / (high - low + 1e-6)
    for start, end, rows, power in _GROUPS.values():
        h[:, start:end] = shift(h[:, start:end], rows) ** power
    h[:, _ZEROED] = 0
    h[:, 52:55] = shift(h[:, 52:55], 4)
    eyes = h[:, 60:76].clone()
    h[:, 60:76] = shift(eyes, -8) ** 3 + shift(eyes, -24)
    second = h.clone()
    second[:, 8:25] = 0
    second[:, 76:96] = 0
    second[:, 33:51] = 0
    masks = []
    for maps in (h, second):
        total = maps.sum(dim=1, keepdim=True)
        masks.append(torch.nan_to_num(total, nan=0.0).clamp(0, 1))
    return tuple(masks)
