"""Nodule type (solid, part-solid, ground-glass) from an outline and its HU: a learned head.

Features of a 1 mm outline (``(z, y, x)`` bool) on its HU: mean HU, the fractions of voxels
above -300 and -100 HU, the mean HU of the core (the outline eroded by 1 mm), the 90th
percentile HU and the log volume. Two class-balanced logistic models on standardised features
give P(not ground-glass) and P(solid); type = ground-glass when the first is below 0.5, else
solid when the second is at least 0.5, else part-solid. They are fitted on the readers'
``Texture_value`` of real VOIs (1-2 ground-glass, 3 part-solid, 4-5 solid) with the learned
outlines the segmentation network drew for them, and ship in the segmentation weights'
sidecar (``type_model``). Without a fitted model, the threshold rule of
:func:`lungcad_inference.clinical.measure.classify_type` applies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

TYPES = ("ground-glass", "part-solid", "solid")
FEATURES = ("mean_hu", "frac_above_-300", "frac_above_-100", "core_hu", "p90_hu",
            "log_volume_mm3")


def type_features(hu: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The :data:`FEATURES` of an outline on its 1 mm HU array (NaN-free; zeros when empty)."""
    if not mask.any():
        return np.zeros(len(FEATURES), np.float64)
    v = hu[mask].astype(np.float64)
    core = ndimage.binary_erosion(mask)
    c = hu[core].astype(np.float64) if core.any() else v
    return np.array([v.mean(), (v > -300).mean(), (v > -100).mean(), c.mean(),
                     np.percentile(v, 90), np.log(max(float(mask.sum()), 1.0))])


def _fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Class-balanced logistic regression (Newton); weights with the intercept first."""
    a = np.column_stack([np.ones(len(x)), x])
    pos = max(float(y.sum()), 1.0)
    neg = max(float(len(y) - y.sum()), 1.0)
    sw = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg))
    w = np.zeros(a.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -30, 30)))
        g = a.T @ (sw * (p - y)) + l2 * w
        h = (a * (sw * p * (1 - p))[:, None]).T @ a + l2 * np.eye(len(w))
        w -= np.linalg.solve(h, g)
    return w


@dataclass(frozen=True)
class TypeModel:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    not_ground_glass: tuple[float, ...]
    solid: tuple[float, ...]

    def _p(self, w: tuple[float, ...], f: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(f) - np.array(self.mean)) / np.array(self.std)
        return 1 / (1 + np.exp(-np.clip(np.column_stack([np.ones(len(z)), z]) @ np.array(w),
                                        -30, 30)))

    def predict(self, features: np.ndarray) -> list[str]:
        """Types for ``features`` ``(n, len(FEATURES))`` (or one row)."""
        not_gg = self._p(self.not_ground_glass, features)
        solid = self._p(self.solid, features)
        return [TYPES[0] if a < 0.5 else TYPES[2] if b >= 0.5 else TYPES[1]
                for a, b in zip(not_gg, solid, strict=True)]

    def to_dict(self) -> dict[str, object]:
        return {"features": list(FEATURES), **{k: list(v) for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TypeModel:
        if list(data.get("features", [])) != list(FEATURES):  # type: ignore[call-overload]
            raise ValueError("type model features do not match this version")
        return cls(*(tuple(float(v) for v in data[k])  # type: ignore[attr-defined]
                     for k in ("mean", "std", "not_ground_glass", "solid")))


def fit_type_model(features: np.ndarray, types: list[str]) -> TypeModel:
    """Fit on outlines' features and the readers' types (:data:`TYPES`)."""
    f = np.asarray(features, float)
    mean, std = f.mean(0), f.std(0) + 1e-6
    z = (f - mean) / std
    t = np.array([TYPES.index(x) for x in types])
    return TypeModel(tuple(mean), tuple(std), tuple(_fit(z, (t >= 1).astype(float))),
                     tuple(_fit(z, (t == 2).astype(float))))
