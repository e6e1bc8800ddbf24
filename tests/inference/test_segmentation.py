"""The learned-outline serving functions: cube sizes, seed channel, crops, the component at
the seed, growing the cube for a large nodule, and the network's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungcad_inference.networks import NoduleSegNet
from lungcad_inference.segmentation import (
    MAX_CUBE_MM,
    crop_at,
    cube_size,
    nodule_from_probability,
    seed_channel,
    seg_input,
    segment_at,
    touches_border,
)


@pytest.mark.parametrize(("diameter", "size"), [(3, 32), (13, 32), (14, 40), (30, 56),
                                                 (60, 88), (200, MAX_CUBE_MM)])
def test_cube_size_grows_with_the_nodule(diameter: float, size: int) -> None:
    assert cube_size(diameter) == size
    assert cube_size(diameter) % NoduleSegNet.MULTIPLE == 0


def test_seed_channel_peaks_at_the_centre_voxel() -> None:
    seed = seed_channel(32)
    assert seed.shape == (32, 32, 32) and seed.dtype == np.float32
    assert np.unravel_index(int(seed.argmax()), seed.shape) == (16, 16, 16)
    assert seed.max() == pytest.approx(1.0) and seed[16, 16, 16 + 3] == pytest.approx(
        np.exp(-0.5), rel=1e-5)


def test_seg_input_windows_hu_and_adds_the_seed() -> None:
    cube = np.full((16, 16, 16), -1000.0, np.float32)
    cube[8, 8, 8] = 400.0
    x = seg_input(cube)
    assert x.shape == (2, 16, 16, 16)
    assert x[0, 0, 0, 0] == pytest.approx(-1.0) and x[0, 8, 8, 8] == pytest.approx(1.0)


def test_crop_at_places_the_seed_voxel_at_the_centre_and_fills_outside() -> None:
    vol = np.arange(20 * 20 * 20, dtype=np.float32).reshape(20, 20, 20)
    cube, start = crop_at(vol, (2.4, 10.0, 17.6), 8, -5.0)
    assert tuple(start) == (-2, 6, 14)
    assert cube[4, 4, 4] == vol[2, 10, 18]
    assert cube[0, 4, 4] == -5.0 and cube[4, 4, 6] == -5.0  # z < 0 and x >= 20
    assert cube[4, 4, 5] == vol[2, 10, 19]


def test_component_at_the_seed_is_kept_and_others_dropped() -> None:
    prob = np.zeros((20, 20, 20), np.float32)
    prob[8:13, 8:13, 8:13] = 0.9
    prob[9:12, 9:12, 10] = 0.2  # a hole inside: filled
    prob[1:4, 1:4, 1:4] = 0.95  # another object: not the seeded nodule
    mask = nodule_from_probability(prob, (10, 10, 10))
    assert mask.sum() == 125 and not mask[2, 2, 2]
    near = nodule_from_probability(prob, (10, 10, 14.6))  # seed 2 voxels off the object
    assert near.sum() == 125
    assert not nodule_from_probability(prob, (17, 17, 17)).any()


def test_touches_border() -> None:
    m = np.zeros((8, 8, 8), bool)
    m[3:5, 3:5, 3:5] = True
    assert not touches_border(m)
    m[3, 3, 7] = True
    assert touches_border(m)


class _Sphere(torch.nn.Module):
    """A stand-in network for the cube-growing logic: logit > 0 inside a ball of ``radius``
    around the cube's centre (whatever the cube size)."""

    def __init__(self, radius: float = 20.0) -> None:
        super().__init__()
        self.radius = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.shape[-1]
        r = torch.arange(s, dtype=torch.float32) - s // 2
        d2 = r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2
        return (self.radius**2 - d2)[None, None].expand(x.shape[0], 1, s, s, s)


def test_segment_at_grows_the_cube_until_the_nodule_fits() -> None:
    hu = np.full((120, 120, 120), -850, np.int16)
    [(mask, start)] = segment_at(_Sphere(), hu, [(60.0, 60.0, 60.0)], [5.0])
    # 32 (clipped: doubled) -> 64 (41 mm across: room for 1.25 x 41 mm wanted) -> 80
    assert mask.shape == (80, 80, 80) and tuple(start) == (20, 20, 20)
    assert not touches_border(mask)
    assert abs(mask.sum() - 4 / 3 * np.pi * 20**3) / (4 / 3 * np.pi * 20**3) < 0.05
    [(small, _)] = segment_at(_Sphere(3.0), hu, [(60.0, 60.0, 60.0)], [5.0])
    assert small.shape == (32, 32, 32)  # a 6 mm nodule fits the first cube: one pass


def test_network_shapes_and_gradient() -> None:
    net = NoduleSegNet(channels=(4, 8, 8, 16))
    x = torch.randn(2, 2, 40, 40, 40, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 1, 40, 40, 40)
    y.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError):
        NoduleSegNet(spatial_dims=2)
