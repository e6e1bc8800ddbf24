"""Read NIfTI, MetaImage (.mha / .mhd + raw) and NRRD volumes through SimpleITK.

SimpleITK reports geometry in LPS (it converts NIfTI's RAS), so orientation is honoured by
carrying origin, spacing and direction into :class:`Geometry`. Arrays come back ``(z, y, x)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry, Volume

ITK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
AIR_HU = -1024.0


def is_itk_image(path: Path) -> bool:
    return path.name.lower().endswith(ITK_SUFFIXES)


def read_itk_volume(path: Path, max_voxels: int = 2048 * 2048 * 3000) -> Volume:
    """A float32 HU volume ``(z, y, x)`` from an ITK-readable file; values < -1024 become air."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ProcessingError(f"{path.name} is not a readable NIfTI / MetaImage / NRRD file.",
                              code="unreadable_image") from exc
    size = reader.GetSize()
    if len(size) != 3 or reader.GetNumberOfComponents() != 1:
        raise ProcessingError(f"{path.name} is a {len(size)}-D image with "
                              f"{reader.GetNumberOfComponents()} component(s); a 3-D scalar CT "
                              "volume is needed.", code="unsupported_image")
    if int(np.prod(size, dtype=np.int64)) > max_voxels:
        raise ProcessingError(f"{path.name} claims {size} voxels, over the limit.",
                              code="dimensions_too_large")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ProcessingError(f"The voxel data of {path.name} could not be read (truncated or "
                              f"missing data file): {str(exc).splitlines()[-1][:200]}",
                              code="truncated_file") from exc
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    np.maximum(array, AIR_HU, out=array)
    try:
        geometry = Geometry.from_sitk(image)
    except ValueError as exc:
        raise ProcessingError(f"{path.name} has invalid geometry: {exc}",
                              code="unsupported_image") from exc
    return Volume(array, geometry)
