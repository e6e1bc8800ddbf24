"""The learned nodule-type head: features of an outline, fitting, prediction, round trip."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad_inference.clinical.nodule_type import (
    FEATURES,
    TypeModel,
    fit_type_model,
    type_features,
)


def _nodule(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    zz, yy, xx = np.indices((24, 24, 24))
    r = np.sqrt((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2)
    radius = rng.uniform(4, 8)
    mask = r <= radius
    hu = np.full(mask.shape, -850.0) + rng.normal(0, 20, mask.shape)
    if kind == "solid":
        hu[mask] = rng.uniform(-50, 50)
    elif kind == "ground-glass":
        hu[mask] = rng.uniform(-700, -500)
    else:
        hu[mask] = rng.uniform(-650, -500)
        hu[r <= radius * rng.uniform(0.4, 0.6)] = rng.uniform(-50, 50)
    return hu + rng.normal(0, 15, mask.shape), mask


def test_features_and_an_empty_outline() -> None:
    hu, mask = _nodule(np.random.default_rng(0), "solid")
    f = type_features(hu, mask)
    assert f.shape == (len(FEATURES),) and f[1] > 0.9  # nearly all above -300 HU
    assert not type_features(hu, np.zeros_like(mask)).any()


def test_fitted_head_separates_the_three_types_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    kinds = ["solid"] * 60 + ["part-solid"] * 20 + ["ground-glass"] * 20
    feats = np.stack([type_features(*_nodule(rng, k)) for k in kinds])
    model = fit_type_model(feats, kinds)
    test_kinds = ["solid", "part-solid", "ground-glass"] * 5
    test = np.stack([type_features(*_nodule(rng, k)) for k in test_kinds])
    pred = model.predict(test)
    assert np.mean([a == b for a, b in zip(pred, test_kinds, strict=True)]) >= 0.8
    again = TypeModel.from_dict(model.to_dict())
    assert again.predict(test) == pred
    with pytest.raises(ValueError):
        TypeModel.from_dict({**model.to_dict(), "features": ["other"]})
