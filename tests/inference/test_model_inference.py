"""``load_models`` / ``detect`` end to end with freshly initialised weights on a synthetic
volume (the API contract, not accuracy: accuracy is tested on real data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lungcad.imaging import Geometry
from lungcad_inference.inference import (
    Candidate,
    crop_cube,
    detect,
    load_models,
    malignancy_input,
    outline_cube,
)
from lungcad_inference.networks import MalignancyNet, NoduleDetector, NoduleSegNet
from lungcad_inference.weights import save_weights


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("weights")
    det_kw = {"spatial_dims": 3, "in_channels": 1, "out_channels": 5, "channels": [4, 8, 8, 8]}
    det = NoduleDetector(**det_kw)
    with __import__("torch").no_grad():
        det.head[-1].bias[0] = 5.0  # every cell a peak: exercises decoding and scoring
    save_weights(det, det_kw, d / "detector.pt", {"operating_threshold": 0.5})
    mal_kw = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8, 8],
              "n_features": 1}
    save_weights(MalignancyNet(**mal_kw), mal_kw, d / "malignancy.pt", {})
    seg_kw = {"spatial_dims": 3, "in_channels": 2, "out_channels": 1, "channels": [2, 4, 4, 4]}
    save_weights(NoduleSegNet(**seg_kw), seg_kw, d / "segmentation.pt", {})
    return load_models("cpu", 1, weights_dir=Path(d))


def test_detect_returns_candidates_in_lungs(tiny_models) -> None:  # type: ignore[no-untyped-def]
    hu = np.full((40, 50, 60), -850, np.int16)
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[5:35, 5:45, 5:30] = 1
    geometry = Geometry(hu.shape, (1.0, 1.0, 1.0), (-30.0, -20.0, -100.0))
    cands = detect(tiny_models, hu, lungs, geometry)
    assert 0 < len(cands) <= tiny_models.max_candidates
    for c in cands:
        assert isinstance(c, Candidate)
        assert 0 <= c.nodule_probability <= 1 and 0 <= c.malignancy_probability <= 1
        np.testing.assert_allclose(c.centre_mm, geometry.index_to_world(c.centre_zyx))
        assert c.centre_zyx[2] < 30 + 8 + 4  # within the lung margin
        mask, start = c.outline  # the learned outline, cut at the candidate's voxel
        assert mask.dtype == bool and mask.ndim == 3 and len(start) == 3
    assert tiny_models.segmentation is not None


def test_detect_rejects_wrong_spacing(tiny_models) -> None:  # type: ignore[no-untyped-def]
    hu = np.zeros((16, 16, 16), np.int16)
    with pytest.raises(ValueError):
        detect(tiny_models, hu, hu.astype(np.uint8), Geometry(hu.shape, (2.0, 1, 1), (0, 0, 0)))


def test_malignancy_input_segments_the_central_nodule() -> None:
    zz, yy, xx = np.indices((32, 32, 32))
    r2 = (zz - 15.5) ** 2 + (yy - 15.5) ** 2 + (xx - 15.5) ** 2
    cube = np.where(r2 <= 25, 40.0, -850.0).astype(np.float32)
    cube[:, 2, :] = 60.0  # a distant structure outside the nodule's box
    image, diameter = malignancy_input(cube)
    assert diameter == pytest.approx(10.0, abs=1.0)
    assert image[16, 2, 16] == -1.0  # set to air: outside the segmentation box
    assert image[16, 16, 16] > 0


def test_malignancy_input_takes_the_learned_outline_and_its_full_diameter() -> None:
    zz, yy, xx = np.indices((32, 32, 32))
    r2 = (zz - 16) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2
    cube = np.where(r2 <= 25, 40.0, -850.0).astype(np.float32)
    outline = r2 <= 9  # the network says 6 mm, not the threshold's 10 mm
    image, diameter = malignancy_input(cube, None, outline)
    assert diameter == pytest.approx(6.0, abs=0.8)
    assert image[16, 16, 16 + 8] == -1.0  # beyond the outline's box + 4 mm: air
    _, given = malignancy_input(cube, None, outline, 41.0)
    assert given == 41.0  # an outline larger than the cube keeps its own diameter


def test_outline_cube_aligns_with_crop_cube() -> None:
    vol = np.zeros((60, 60, 60), np.float32)
    mask = np.zeros((40, 40, 40), bool)
    mask[20, 20, 20] = True  # volume voxel (30, 31, 32) when the mask starts at (10, 11, 12)
    vol[30, 31, 32] = 1.0
    centre = (29.6, 33.2, 30.9)
    cube = crop_cube(vol, centre, 32, 0.0)
    on = outline_cube((mask, np.array([10, 11, 12])), centre, 32)
    assert on.sum() == 1 and cube[on][0] == 1.0


def test_candidate_dict_leaves_the_outline_out() -> None:
    from lungcad_inference.inference import Candidate

    c = Candidate((1.0, 2.0, 3.0), (4.0, 5.0, 6.0), 8.0, 0.9, 0.2, 7.5,
                  (np.ones((2, 2, 2), bool), np.zeros(3, int)))
    d = c.to_dict()
    assert "outline" not in d and d["segmented_diameter_mm"] == 7.5
    json.dumps(d)
