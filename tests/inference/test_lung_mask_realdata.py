"""The preprocessing lung mask on the six real studies: total lung volume within 10 % of what
was measured when this test was written (growing or shrinking the mask by 20 % fails), and
every reference lesion inside the mask (a mask that carves a tumour out hides it from the
detector). QIN-LSC-0064's tumour, against the posterior pleura, was 60 % outside the classical
mask; with the learned additions (lungcad_preprocess.lung_net) 22 % is still outside: a known
failure, marked as such so that fixing it shows."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.inference.conftest import CACHE

pytestmark = pytest.mark.realdata

LUNG_ML = {"LIDC-IDRI-0001": 3932, "LIDC-IDRI-0003": 6108, "QIN-LSC-0014": 4645,
           "QIN-LSC-0049": 5205, "QIN-LSC-0064": 4905, "QIN-LSC-0088": 4067}
KNOWN_OUTSIDE = {"QIN-LSC-0064": "the tumour against the posterior pleura indents the lung; "
                                 "the classical mask leaves 60 % of it out, the learned "
                                 "additions bring it to 78 % inside (issue 18)"}


def _lesion_masks(study):  # type: ignore[no-untyped-def]
    if study.lesion_mask is not None:
        return [study.lesion_mask == i + 1 for i in range(len(study.lesions))]
    zz, yy, xx = np.indices(study.hu.shape, sparse=True)
    return [((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= (les.diameter_mm / 2) ** 2
            for c, les in zip(study.lesion_centres_zyx(), study.lesions, strict=True)]


@pytest.mark.parametrize("name", sorted(LUNG_ML))
def test_lung_volume_within_ten_percent_of_measured(name, study_loader) -> None:  # type: ignore[no-untyped-def]
    study = study_loader(name)
    ml = float((study.lungs > 0).sum()) * float(np.prod(study.geometry.spacing)) / 1000
    assert abs(ml - LUNG_ML[name]) <= 0.10 * LUNG_ML[name], ml
    right, left = (study.lungs == 1).sum(), (study.lungs == 2).sum()
    assert 0.5 < right / left < 2.0


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    reason=KNOWN_OUTSIDE[n], strict=True)) if n in KNOWN_OUTSIDE else n for n in sorted(LUNG_ML)])
def test_every_reference_lesion_inside_the_lung_mask(name, study_loader) -> None:  # type: ignore[no-untyped-def]
    study = study_loader(name)
    lungs = study.lungs > 0
    for i, mask in enumerate(_lesion_masks(study)):
        inside = float((mask & lungs).sum()) / max(float(mask.sum()), 1.0)
        assert inside >= 0.95, (name, i, round(inside, 3))


def test_the_fold_model_that_never_saw_qin_lsc_0064_takes_in_its_tumour(shared_data) -> None:  # type: ignore[no-untyped-def]
    """Held out: the learned lung mask's fold model trained without QIN-LSC-0064 (and
    LIDC-IDRI-0003) brings most of the tumour the classical mask cuts out into the mask, and
    adds little lung volume elsewhere (measured 2026-12-07 on the 2 mm grid: 40 % -> 88 %
    inside, 84 mL added, 1.7 % of the lungs, part of it the heart's border)."""
    from lungcad_inference.training.lung_mask_data import load_low_study
    from lungcad_inference.training.train_lung_mask import score_study
    from lungcad_preprocess import lung_net

    path = lung_net.WEIGHTS.with_name("lung_mask_fold1.pt")
    loaded = lung_net.load(str(path))
    assert loaded is not None, f"{path.name} is missing from the package"
    model, sidecar = loaded
    held = hashlib.sha1(b"QIN-LSC-0064").hexdigest()[:10]
    assert held not in sidecar["training_studies_sha1"]
    study = load_low_study(shared_data / "ct" / "QIN-LSC-0064.zip", CACHE)
    scored = score_study(model, study)
    (tumour,) = scored["lesions"]
    assert tumour["inside_classical"] < 0.5  # the failure this model is for
    assert tumour["inside_refined"] >= 0.85, tumour
    assert scored["added_percent"] <= 3.0, scored
