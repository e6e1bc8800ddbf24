"""A nodule's own segmentation and size from a 1 mm HU cube centred on it (``(z, y, x)``).

Used identically for training (real VOIs), evaluation and serving (detector candidates), so the
size feature of the malignancy model and the size-only baseline never drift.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

THRESHOLD_HU = -600.0
MAX_RADIUS_MM = 15.0


def segment_nodule(hu: np.ndarray, threshold_hu: float = THRESHOLD_HU,
                   max_radius_mm: float = MAX_RADIUS_MM) -> np.ndarray:
    """Boolean mask of the component above ``threshold_hu`` nearest the cube's centre, opened by
    one voxel to cut thin vessels, inside a sphere of ``max_radius_mm`` (1 mm voxels)."""
    shape = np.asarray(hu.shape)
    centre = (shape - 1) / 2.0
    zz, yy, xx = np.indices(hu.shape)
    r2 = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    solid = (hu > threshold_hu) & (r2 <= max_radius_mm**2)
    opened = ndimage.binary_opening(solid, ndimage.generate_binary_structure(3, 1))
    labels, n = ndimage.label(opened if opened.any() else solid)
    if n == 0:
        return np.zeros(hu.shape, bool)
    near = r2 <= 9.0  # within 3 mm of the centre
    counts = np.bincount(labels[near], minlength=n + 1)
    counts[0] = 0
    if counts.max() == 0:  # nothing at the centre: the component closest to it
        dist = ndimage.minimum(r2, labels, index=np.arange(1, n + 1))
        keep = int(np.argmin(dist)) + 1
    else:
        keep = int(np.argmax(counts))
    return labels == keep


def equivalent_diameter_mm(mask: np.ndarray, voxel_mm: float = 1.0) -> float:
    """Diameter of the sphere with the mask's volume."""
    return float((6.0 * mask.sum() * voxel_mm**3 / np.pi) ** (1 / 3))


def size_features(diameter_mm: float) -> np.ndarray:
    """The scalar features the malignancy network receives: ``[log(diameter / 8 mm)]``."""
    return np.array([np.log(max(diameter_mm, 1.0) / 8.0)], np.float32)
