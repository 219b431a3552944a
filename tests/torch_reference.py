"""A PyTorch model of the official L2M-GAN and StarGAN v2 modules, for the import parity tests.

Written from the shared facts (docs/l2mgan-reference.md), not from the official files: its
state_dict names and shapes equal the official ones (reference/*_keys.tsv) for any widths, so
tests can build small models. ``flavour="l2mgan"`` adds the style transformer (transform1,
transform2) and the unused attention MLPs; ``"stargan-v2"`` has the hpf.filter buffer and a
mapping network instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.2


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE)


class ResBlk(nn.Module):
    def __init__(self, c_in: int, c_out: int, normalize: bool = False, down: bool = False):
        super().__init__()
        self.normalize, self.down = normalize, down
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(c_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(c_in, affine=True)
        self.conv1x1 = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None

    def forward(self, x):
        skip = x if self.conv1x1 is None else self.conv1x1(x)
        h = self.norm1(x) if self.normalize else x
        h = self.conv1(lrelu(h))
        if self.down:
            skip, h = F.avg_pool2d(skip, 2), F.avg_pool2d(h, 2)
        h = self.norm2(h) if self.normalize else h
        return (skip + self.conv2(lrelu(h))) / math.sqrt(2)


class AdaIN(nn.Module):
    def __init__(self, style_dim: int, channels: int):
        super().__init__()
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x, s):
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * F.instance_norm(x, eps=1e-5) + beta


class AdainResBlk(nn.Module):
    def __init__(self, c_in: int, c_out: int, style_dim: int, w_hpf: float, up: bool):
        super().__init__()
        self.w_hpf, self.up = w_hpf, up
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1 = AdaIN(style_dim, c_in)
        self.norm2 = AdaIN(style_dim, c_out)
        self.conv1x1 = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None

    def forward(self, x, s):
        h = lrelu(self.norm1(x, s))
        if self.up:
            h, x = F.interpolate(h, scale_factor=2.0), F.interpolate(x, scale_factor=2.0)
        h = self.conv2(lrelu(self.norm2(self.conv1(h), s)))
        if self.w_hpf > 0:
            return h
        return (h + (x if self.conv1x1 is None else self.conv1x1(x))) / math.sqrt(2)


def mlp(width: int, layers: int = 3, out: int | None = None) -> nn.Sequential:
    """Linear/ReLU alternation; Linears at items 0, 2, 4, ..."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules.append(nn.Linear(width, out if (out and i == layers - 1) else width))
        if i < layers - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


class Attention(nn.Module):  # carried, never called, by the official L2M-GAN networks
    def __init__(self, style_dim: int):
        super().__init__()
        self.layers = mlp(style_dim, 2)


class Generator(nn.Module):
    def __init__(self, img_size: int, style_dim: int, w_hpf: float, dim_in: int,
                 max_conv_dim: int, flavour: str):
        super().__init__()
        self.w_hpf = w_hpf
        self.from_rgb = nn.Conv2d(3, dim_in, 3, padding=1)
        self.encode, decode = nn.ModuleList(), []
        repeats = int(math.log2(img_size)) - 4 + (1 if w_hpf > 0 else 0)
        width = dim_in
        for _ in range(repeats):
            wider = min(width * 2, max_conv_dim)
            self.encode.append(ResBlk(width, wider, normalize=True, down=True))
            decode.append(AdainResBlk(wider, width, style_dim, w_hpf, up=True))
            width = wider
        for _ in range(2):
            self.encode.append(ResBlk(width, width, normalize=True))
            decode.append(AdainResBlk(width, width, style_dim, w_hpf, up=False))
        self.decode = nn.ModuleList(decode[::-1])
        self.to_rgb = nn.Sequential(nn.InstanceNorm2d(dim_in, affine=True), nn.LeakyReLU(SLOPE),
                                    nn.Conv2d(dim_in, 3, 1))
        laplacian = torch.tensor([[-1.0, -1, -1], [-1, 8, -1], [-1, -1, -1]])
        kernel = laplacian / w_hpf if w_hpf else None
        # L2M-GAN keeps the kernel as a plain attribute (not in its state_dict); StarGAN v2
        # registers it as the buffer hpf.filter.
        self.kernel = kernel if flavour == "l2mgan" else None
        if flavour == "l2mgan":
            self.attention = Attention(style_dim)
        elif kernel is not None:
            self.hpf = nn.Module()
            self.hpf.register_buffer("filter", kernel)

    def high_pass(self, x):
        kernel = self.kernel if self.kernel is not None else self.hpf.filter
        weight = kernel[None, None].repeat(x.shape[1], 1, 1, 1)
        return F.conv2d(x, weight, padding=1, groups=x.shape[1])

    def forward(self, x, s, masks=None):
        h, cache = self.from_rgb(x), {}
        for block in self.encode:
            if masks is not None and h.shape[2] in (32, 64, 128):
                cache[h.shape[2]] = h
            h = block(h)
        for block in self.decode:
            h = block(h, s)
            size = h.shape[2]
            if masks is not None and size in (32, 64, 128):
                mask = F.interpolate(masks[0] if size == 32 else masks[1], size=size,
                                     mode="bilinear", align_corners=False)
                h = h + self.high_pass(mask * cache[size])
        return self.to_rgb(h)


def trunk(img_size: int, dim_in: int, max_conv_dim: int) -> tuple[list[nn.Module], int]:
    modules: list[nn.Module] = [nn.Conv2d(3, dim_in, 3, padding=1)]
    width = dim_in
    for _ in range(int(math.log2(img_size)) - 2):
        wider = min(width * 2, max_conv_dim)
        modules.append(ResBlk(width, wider, down=True))
        width = wider
    modules += [nn.LeakyReLU(SLOPE), nn.Conv2d(width, width, 4), nn.LeakyReLU(SLOPE)]
    return modules, width


def pick(stacked: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return stacked[torch.arange(labels.shape[0]), labels]


class StyleEncoder(nn.Module):
    def __init__(self, img_size: int, style_dim: int, num_domains: int, dim_in: int,
                 max_conv_dim: int, flavour: str):
        super().__init__()
        modules, width = trunk(img_size, dim_in, max_conv_dim)
        self.shared = nn.Sequential(*modules)
        self.unshared = nn.ModuleList([nn.Linear(width, style_dim) for _ in range(num_domains)])
        self.l2m = flavour == "l2mgan"
        if self.l2m:
            self.transform1 = mlp(style_dim)
            self.transform2 = nn.ModuleList([mlp(style_dim) for _ in range(num_domains)])
            self.attention = Attention(style_dim)

    def forward(self, x, y, y_target=None):
        h = self.shared(x).flatten(1)
        s = pick(torch.stack([head(h) for head in self.unshared], 1), y)
        if not self.l2m:
            return s
        s_un = self.transform1(s)
        s_re = s - s_un
        moved = torch.stack([branch(s_re) for branch in self.transform2], 1)
        return s, s_un, s_re, pick(moved, y if y_target is None else y_target)


class Discriminator(nn.Module):
    def __init__(self, img_size: int, num_domains: int, dim_in: int, max_conv_dim: int):
        super().__init__()
        modules, width = trunk(img_size, dim_in, max_conv_dim)
        self.main = nn.Sequential(*modules, nn.Conv2d(width, num_domains, 1))

    def forward(self, x, y):
        return pick(self.main(x).flatten(1), y)


class MappingNetwork(nn.Module):  # StarGAN v2 only; never imported
    def __init__(self, latent_dim: int, style_dim: int, num_domains: int, hidden: int):
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                    *list(mlp(hidden, 3)), nn.ReLU())
        self.unshared = nn.ModuleList([mlp(hidden, 4, out=style_dim)
                                       for _ in range(num_domains)])


def randomize(module: nn.Module, seed: int) -> None:
    """He-normal weights as the official init, and non-trivial biases and norm affines, so a
    swapped or mis-transposed tensor cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim > 1:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator)
                            * math.sqrt(2.0 / fan_in))
            elif "norm" in name or name.startswith("to_rgb.0"):
                base = 1.0 if name.endswith("weight") else 0.0
                param.copy_(base + 0.2 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def build(img_size: int = 64, num_domains: int = 2, style_dim: int = 64, w_hpf: float = 0.0,
          dim_in: int = 16, max_conv_dim: int = 64, flavour: str = "l2mgan", seed: int = 0
          ) -> dict[str, nn.Module]:
    """The networks of one official checkpoint, seeded, in eval mode."""
    nets = {
        "generator": Generator(img_size, style_dim, w_hpf, dim_in, max_conv_dim, flavour),
        "style_encoder": StyleEncoder(img_size, style_dim, num_domains, dim_in, max_conv_dim,
                                      flavour),
        "discriminator": Discriminator(img_size, num_domains, dim_in, max_conv_dim),
    }
    if flavour == "stargan-v2":
        nets["mapping_network"] = MappingNetwork(16, style_dim, num_domains, hidden=32)
    for i, net in enumerate(nets.values()):
        randomize(net, seed + i)
        net.eval()
    return nets


def edit(nets: dict[str, nn.Module], x, source, target, alpha: float, masks=None):
    """The official edit: G(x, s_un + s_re + alpha * (s~_re - s_re))."""
    _, s_un, s_re, s_tilde = nets["style_encoder"](x, source, target)
    return nets["generator"](x, s_un + s_re + alpha * (s_tilde - s_re), masks)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _cosine_ortho(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dot = (a * b).sum(-1)
    return (dot.abs() / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1) + 1e-12)).mean()


class OfficialTrainer:
    """One training iteration as the official PyTorch code runs it (StarGAN v2's solver with
    L2M-GAN's losses), for benchmarks: float32, eager, the official optimizers.

    D step: BCE(D(x, y), 1) + BCE(D(G(x, s~), y~), 0) + R1 (autograd.grad with create_graph,
    fakes under no_grad). G step: BCE(D(x~, y~), 1) + |E(x~, y~) - s~| + |G(x~, s) - x| +
    cosine orthogonality of (s_un, s_re) and (s_un, s~_re). One Adam(lr 1e-4, betas (0, 0.99),
    weight_decay 1e-4) per network, and the EMA (0.999) of G and E after each iteration. As in
    the official solver, every parameter keeps requires_grad, so the G step also computes D's
    parameter gradients (then zeroed): that is the cost of the official code.
    """

    def __init__(self, nets: dict[str, nn.Module], lr: float = 1e-4, weight_decay: float = 1e-4,
                 ema_beta: float = 0.999):
        import copy

        self.nets = {k: nets[k] for k in ("generator", "style_encoder", "discriminator")}
        for net in self.nets.values():
            net.train()
        self.optims = {k: torch.optim.Adam(net.parameters(), lr=lr, betas=(0.0, 0.99),
                                           weight_decay=weight_decay)
                       for k, net in self.nets.items()}
        self.ema = {k: copy.deepcopy(self.nets[k]) for k in ("generator", "style_encoder")}
        self.ema_beta = ema_beta

    def _zero_grad(self) -> None:
        for optim in self.optims.values():
            optim.zero_grad()

    def step(self, x: torch.Tensor, y_org: torch.Tensor, y_trg: torch.Tensor
             ) -> dict[str, float]:
        """One D step then one G step on NCHW float32 images x in [-1, 1]; the loss values."""
        G, E, D = (self.nets[k] for k in ("generator", "style_encoder", "discriminator"))
        x_in = x.detach().requires_grad_()
        out = D(x_in, y_org)
        loss_real = _bce(out, 1.0)
        grad = torch.autograd.grad(out.sum(), x_in, create_graph=True)[0]
        r1 = 0.5 * grad.pow(2).flatten(1).sum(1).mean()
        with torch.no_grad():
            _, s_un, _, s_tilde_re = E(x, y_org, y_trg)
            x_fake = G(x, s_un + s_tilde_re)
        loss_fake = _bce(D(x_fake, y_trg), 0.0)
        d_loss = loss_real + loss_fake + r1
        self._zero_grad()
        d_loss.backward()
        self.optims["discriminator"].step()

        s, s_un, s_re, s_tilde_re = E(x, y_org, y_trg)
        s_tilde = s_un + s_tilde_re
        x_fake = G(x, s_tilde)
        loss_adv = _bce(D(x_fake, y_trg), 1.0)
        loss_style = (E(x_fake, y_trg)[0] - s_tilde.detach()).abs().mean()
        loss_cycle = (G(x_fake, s) - x).abs().mean()
        loss_ortho = _cosine_ortho(s_un, s_re) + _cosine_ortho(s_un, s_tilde_re)
        g_loss = loss_adv + loss_style + loss_cycle + loss_ortho
        self._zero_grad()
        g_loss.backward()
        self.optims["generator"].step()
        self.optims["style_encoder"].step()
        with torch.no_grad():
            for k, average in self.ema.items():
                for avg, param in zip(average.parameters(), self.nets[k].parameters(),
                                      strict=True):
                    avg.lerp_(param, 1.0 - self.ema_beta)
        return {"d_loss": float(d_loss), "g_loss": float(g_loss)}
