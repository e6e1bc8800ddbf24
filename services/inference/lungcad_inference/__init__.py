"""LungCAD nodule detection and malignancy inference (research use, not for clinical diagnosis).

Public API (see :mod:`lungcad_inference.inference` for details)::

    from lungcad_inference import load_models, detect

    models = load_models(device=None, threads=None)   # once per worker process
    candidates = detect(models, hu_zyx, lungs_zyx, geometry)

``hu_zyx`` (int16 HU) and ``lungs_zyx`` (uint8 labels, 0 = outside) are ``(z, y, x)`` arrays on
the 1 mm isotropic, identity-direction grid that ``lungcad_preprocess.pipeline.preprocess_path``
produces; ``geometry`` is its :class:`lungcad.imaging.Geometry`. Each
:class:`~lungcad_inference.inference.Candidate` carries ``centre_zyx`` (voxel, preprocessed
grid), ``centre_mm`` (LPS x, y, z), ``diameter_mm``, ``nodule_probability`` and
``malignancy_probability``.

Importing this package is cheap: torch is imported only when a function that needs it runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Candidate", "Models", "detect", "load_models"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lungcad_inference import inference

        return getattr(inference, name)
    raise AttributeError(name)
