"""Network shapes, the output grid convention and decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungcad_inference.decode import decode
from lungcad_inference.networks import MalignancyNet, NoduleDetector


def test_detector_output_stride_and_channels() -> None:
    net = NoduleDetector(3, 1, 5, channels=(4, 8, 8, 8)).eval()
    with torch.inference_mode():
        out = net(torch.zeros(1, 1, 32, 48, 64))
    assert out.shape == (1, 5, 8, 12, 16)


def test_detector_rejects_2d() -> None:
    with pytest.raises(ValueError):
        NoduleDetector(spatial_dims=2)


def test_malignancy_net_needs_its_features() -> None:
    net = MalignancyNet(3, 1, 1, channels=(4, 8, 8), n_features=1).eval()
    x = torch.zeros(2, 1, 32, 32, 32)
    with torch.inference_mode():
        assert net(x, torch.zeros(2, 1)).shape == (2, 1)
        with pytest.raises(ValueError):
            net(x)


def test_decode_peaks_offsets_and_lung_restriction() -> None:
    out = np.full((5, 10, 10, 10), -10.0, np.float32)
    out[1] = np.log(8.0)
    out[2:5] = 0.0
    out[0, 2, 3, 4] = 3.0  # inside the lungs
    out[2, 2, 3, 4] = 0.25
    out[0, 8, 8, 8] = 3.0  # far outside the lungs
    out[0, 2, 3, 5] = 2.0  # neighbour of the first peak: suppressed
    lungs = np.zeros((40, 40, 40), np.uint8)
    lungs[:20, :20, :20] = 1
    cands = decode(out, 4, lungs, threshold=0.5)
    assert len(cands) == 1
    c = cands[0]
    np.testing.assert_allclose(c.centre_zyx, [9.0, 12.0, 16.0])
    assert c.diameter_mm == pytest.approx(8.0, rel=1e-4)
    assert c.score == pytest.approx(1 / (1 + np.exp(-3.0)))
