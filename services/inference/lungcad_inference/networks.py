"""Network definitions: a CenterNet-style 3-D nodule detector and a 3-D malignancy classifier.

Both take ``(batch, channels, z, y, x)`` tensors of HU windowed by
:func:`lungcad_inference.intensity.normalise_hu` on a 1 mm isotropic grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 8), channels)


class ConvNormAct(nn.Sequential):
    """``Conv3d`` (no bias) -> ``GroupNorm`` -> ``LeakyReLU``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv3d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
                         _norm(out_ch), nn.LeakyReLU(0.1, inplace=True))


class ResidualBlock(nn.Module):
    """Two 3x3x3 ``ConvNormAct`` with an identity skip and ``Dropout3d`` between them."""

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.a = ConvNormAct(channels, channels)
        self.drop = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.b = nn.Sequential(nn.Conv3d(channels, channels, 3, 1, 1, bias=False),
                               _norm(channels))
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.b(self.drop(self.a(x))))


class NoduleDetector(nn.Module):
    """Fully convolutional encoder-decoder giving per-voxel outputs at stride ``STRIDE`` (4).

    Output channels: 0 centre-heatmap logit, 1 log diameter (mm), 2-4 sub-cell centre offset
    ``(z, y, x)`` in output cells. The input's spatial size must be a multiple of
    :attr:`MULTIPLE` (16); output voxel ``i`` is centred on input voxel ``STRIDE * i``.

    Args:
        spatial_dims: must be 3.
        in_channels: input channels (1: windowed HU).
        out_channels: output channels (5, see above).
        channels: widths at strides 2, 4, 8 and 16.
        dropout: ``Dropout3d`` probability inside the residual blocks.
    """

    STRIDE = 4
    MULTIPLE = 16

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 5,
                 channels: Sequence[int] = (16, 32, 64, 96), dropout: float = 0.1) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("NoduleDetector is 3-D only")
        c0, c1, c2, c3 = channels
        self.stem = nn.Sequential(ConvNormAct(in_channels, c0, stride=2), ConvNormAct(c0, c0))
        self.down4 = nn.Sequential(ConvNormAct(c0, c1, stride=2), ResidualBlock(c1, dropout))
        self.down8 = nn.Sequential(ConvNormAct(c1, c2, stride=2), ResidualBlock(c2, dropout))
        self.down16 = nn.Sequential(ConvNormAct(c2, c3, stride=2), ResidualBlock(c3, dropout))
        self.lat8 = nn.Conv3d(c3, c2, 1)
        self.fuse8 = ConvNormAct(c2, c2)
        self.lat4 = nn.Conv3d(c2, c1, 1)
        self.fuse4 = ConvNormAct(c1, c1)
        self.head = nn.Sequential(ConvNormAct(c1, c1), nn.Dropout3d(dropout),
                                  nn.Conv3d(c1, out_channels, 1))
        nn.init.constant_(self.head[-1].bias, 0.0)
        with torch.no_grad():
            self.head[-1].bias[0] = -4.6  # prior nodule probability ~1 %

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s4 = self.down4(self.stem(x))
        s8 = self.down8(s4)
        s16 = self.down16(s8)
        u8 = self.fuse8(s8 + F.interpolate(self.lat8(s16), size=s8.shape[2:], mode="nearest"))
        u4 = self.fuse4(s4 + F.interpolate(self.lat4(u8), size=s4.shape[2:], mode="nearest"))
        return self.head(u4)


class MalignancyNet(nn.Module):
    """3-D CNN on a nodule-centred 1 mm patch, with scalar features joined before the classifier.

    Args:
        spatial_dims: must be 3.
        in_channels: input channels (1: windowed HU).
        out_channels: logits (1: malignant vs benign).
        channels: widths of the three stages (each halves the size).
        n_features: scalar features concatenated to the pooled image features (e.g. the log
            diameter of the nodule's own segmentation); 0 for image only.
        dropout: ``Dropout3d`` in the stages and ``Dropout`` before each linear layer.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 1,
                 channels: Sequence[int] = (16, 32, 64), n_features: int = 1,
                 dropout: float = 0.3) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("MalignancyNet is 3-D only")
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):  # the full-resolution stage has a single conv
            layers += [ConvNormAct(prev, ch)] + ([ConvNormAct(ch, ch)] if i else [])
            if i < len(channels) - 1:
                layers += [nn.MaxPool3d(2), nn.Dropout3d(dropout / 2)]
            prev = ch
        self.features = nn.Sequential(*layers)
        self.n_features = n_features
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(prev + n_features, 32),
                                        nn.LeakyReLU(0.1), nn.Dropout(dropout),
                                        nn.Linear(32, out_channels))

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        pooled = F.adaptive_avg_pool3d(self.features(x), 1).flatten(1)
        if self.n_features:
            if features is None:
                raise ValueError("this MalignancyNet needs its scalar features")
            pooled = torch.cat([pooled, features], dim=1)
        return self.classifier(pooled)


class NoduleSegNet(nn.Module):
    """A small 3-D U-Net that outlines the one nodule marked by a seed channel.

    Input ``(batch, 2, z, y, x)`` on the 1 mm grid: channel 0 windowed HU, channel 1 a Gaussian
    seed (peak 1) at the nodule's presumed centre. Output ``(batch, 1, z, y, x)``: the logit
    of "voxel belongs to the seeded nodule". Sizes must be multiples of :attr:`MULTIPLE` (8).

    Args:
        spatial_dims: must be 3.
        in_channels: 2 (HU, seed).
        out_channels: 1.
        channels: widths at strides 1, 2, 4 and 8.
    """

    MULTIPLE = 8

    def __init__(self, spatial_dims: int = 3, in_channels: int = 2, out_channels: int = 1,
                 channels: Sequence[int] = (8, 16, 32, 64)) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("NoduleSegNet is 3-D only")
        c = list(channels)
        self.enc = nn.ModuleList()
        prev = in_channels
        for i, ch in enumerate(c):
            stride = 1 if i == 0 else 2
            self.enc.append(nn.Sequential(ConvNormAct(prev, ch, stride=stride),
                                          ConvNormAct(ch, ch)))
            prev = ch
        self.dec = nn.ModuleList()
        for i in range(len(c) - 1, 0, -1):
            self.dec.append(nn.Sequential(ConvNormAct(c[i] + c[i - 1], c[i - 1]),
                                          ConvNormAct(c[i - 1], c[i - 1])))
        self.out = nn.Conv3d(c[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.enc:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for stage in self.dec:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        return self.out(x)
