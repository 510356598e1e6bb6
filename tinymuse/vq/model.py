"""The convolutional encoder and decoder of the VQ tokenizer (after VQGAN,
Esser et al., 2021, slimmed down: no attention, no middle block).

The encoder shrinks a (B, 3, H, W) image, level by level, into a grid of
vectors (B, code_dim, H/f, W/f); the decoder mirrors it back up. Each level
holds ``num_res_blocks`` residual blocks at that level's width. Between
levels the encoder halves the image with a stride-2 convolution and the
decoder doubles it with a nearest-neighbour upsample followed by a
convolution (which avoids the checkerboard patterns of transposed
convolutions); these convolutions also change the width, so the costly
full-resolution layers stay as narrow as the first level.
"""
from __future__ import annotations

from .. import functional as F
from ..nn import Conv2d, GroupNorm, Module, Sequential
from .config import VQConfig


class ResBlock(Module):
    """x + F(x) with F = conv ∘ silu ∘ norm ∘ conv ∘ silu ∘ norm (3×3 convs)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm1 = GroupNorm(groups, channels)
        self.conv1 = Conv2d(channels, channels, 3, padding=1)
        self.norm2 = GroupNorm(groups, channels)
        self.conv2 = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Downsample(Module):
    """Halve height and width: a 3×3 convolution with stride 2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(Module):
    """Double height and width: repeat every pixel 2×2, then a 3×3 convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.upsample_nearest2d(x, 2))


class Encoder(Module):
    """(B, in_channels, H, W) images → (B, code_dim, H/f, W/f) vectors."""

    def __init__(self, config: VQConfig):
        super().__init__()
        widths, groups = config.widths, config.norm_groups
        self.conv_in = Conv2d(config.in_channels, widths[0], 3, padding=1)
        layers = []
        for level, width in enumerate(widths):
            layers += [ResBlock(width, groups) for _ in range(config.num_res_blocks)]
            if level < len(widths) - 1:
                layers.append(Downsample(width, widths[level + 1]))
        self.body = Sequential(*layers)
        self.norm_out = GroupNorm(groups, widths[-1])
        self.conv_out = Conv2d(widths[-1], config.code_dim, 1)

    def forward(self, images):
        h = self.body(self.conv_in(images))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(Module):
    """(B, code_dim, h, w) code vectors → (B, in_channels, h·f, w·f) images."""

    def __init__(self, config: VQConfig):
        super().__init__()
        widths, groups = config.widths, config.norm_groups
        self.conv_in = Conv2d(config.code_dim, widths[-1], 3, padding=1)
        layers = []
        for level in reversed(range(len(widths))):
            layers += [ResBlock(widths[level], groups) for _ in range(config.num_res_blocks)]
            if level > 0:
                layers.append(Upsample(widths[level], widths[level - 1]))
        self.body = Sequential(*layers)
        self.norm_out = GroupNorm(groups, widths[0])
        self.conv_out = Conv2d(widths[0], config.in_channels, 3, padding=1)

    def forward(self, codes):
        h = self.body(self.conv_in(codes))
        return self.conv_out(F.silu(self.norm_out(h)))
