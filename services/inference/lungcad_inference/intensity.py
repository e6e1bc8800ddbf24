"""The network input: 1 mm isotropic HU volumes windowed to [-1, 1].

Shared by training, evaluation and serving, so they cannot drift. Arrays are ``(z, y, x)``.
"""

from __future__ import annotations

import numpy as np

INPUT_SPACING_MM = 1.0
HU_WINDOW = (-1000.0, 400.0)  # lung parenchyma to bone edge; air -> -1, 400 HU -> +1


def normalise_hu(hu: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """HU ``(z, y, x)`` (any dtype) -> float32 clipped linearly to [-1, 1] over ``window``."""
    lo, hi = window
    out = np.asarray(hu, dtype=np.float32)
    out = (out - (lo + hi) / 2.0) * (2.0 / (hi - lo))
    return np.clip(out, -1.0, 1.0, out=out)
