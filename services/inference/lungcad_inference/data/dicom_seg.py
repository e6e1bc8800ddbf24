"""DICOM Segmentation objects (binary or fractional), as in the QIN LUNG CT cases.

:func:`read_seg` returns each segment as a :class:`lungcad.imaging.Volume` on the SEG's own
frame grid (frames sorted by ImagePositionPatient projected on the slice normal, array
``(z, y, x)``); :func:`seg_lesion` turns one into a reference :class:`Lesion` and
:func:`mask_on_grid` samples it onto another grid (e.g. the preprocessed 1 mm grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.imaging import Geometry, Volume
from lungcad_inference.data.lesions import Lesion


@dataclass(frozen=True)
class Segment:
    label: str
    algorithm: str
    mask: Volume  # uint8 0/1, (z, y, x)
    referenced_series_uid: str | None


def is_seg(path: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a SEG
        return False
    return getattr(ds, "Modality", None) == "SEG"


def read_seg(path: str | Path) -> list[Segment]:
    """Every segment of one SEG file, each on a regular grid spanning its frames."""
    import pydicom

    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    orient = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    pix = shared.PixelMeasuresSequence[0]
    dy, dx = (float(v) for v in pix.PixelSpacing)  # row spacing, column spacing
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    if getattr(ds, "SegmentationType", "BINARY") == "FRACTIONAL":
        frames = (frames >= int(ds.MaximumFractionalValue) / 2).astype(np.uint8)
    per_frame = ds.PerFrameFunctionalGroupsSequence
    positions = np.array([np.asarray(f.PlanePositionSequence[0].ImagePositionPatient, float)
                          for f in per_frame])
    segment_of = np.array([int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
                           if "SegmentIdentificationSequence" in f else 1 for f in per_frame])
    ref_uid = (ds.ReferencedSeriesSequence[0].SeriesInstanceUID
               if "ReferencedSeriesSequence" in ds else None)
    algorithm = str(getattr(ds, "SeriesDescription", "")) or Path(path).parent.name
    out = []
    for seg in ds.SegmentSequence:
        number = int(seg.SegmentNumber)
        sel = np.nonzero(segment_of == number)[0]
        if sel.size == 0:
            continue
        depth = positions[sel] @ normal
        order = sel[np.argsort(depth)]
        depth = np.sort(depth)
        steps = np.diff(depth)
        dz = float(np.min(steps[steps > 1e-3])) if np.any(steps > 1e-3) else float(
            getattr(pix, "SliceThickness", 1.0) or 1.0)
        k = np.rint((depth - depth[0]) / dz).astype(int)
        array = np.zeros((k.max() + 1, ds.Rows, ds.Columns), np.uint8)
        array[k] = frames[order] > 0
        direction = np.column_stack([row_dir, col_dir, normal]).ravel()
        geometry = Geometry(array.shape, (dz, dy, dx), tuple(positions[order[0]]),
                            tuple(direction))
        out.append(Segment(str(getattr(seg, "SegmentLabel", number)), algorithm,
                           Volume(array, geometry), ref_uid))
    return out


def seg_lesion(segment: Segment) -> Lesion:
    """Centroid (LPS) and volume-equivalent sphere diameter of a segment."""
    mask = segment.mask
    idx = np.argwhere(mask.array > 0)
    centre = mask.geometry.index_to_world(idx.mean(axis=0))
    volume_mm3 = idx.shape[0] * mask.geometry.voxel_volume_ml * 1000.0
    diameter = float((6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0))
    return Lesion(tuple(float(v) for v in centre), diameter, "dicom_seg", None,
                  {"algorithm": segment.algorithm, "volume_ml": volume_mm3 / 1000.0})


def mask_on_grid(segment: Segment, target: Geometry) -> np.ndarray:
    """The segment sampled (nearest neighbour) on ``target``; uint8 ``(z, y, x)``."""
    from lungcad_preprocess.resample import resample

    return resample(segment.mask, target, nearest=True, default=0)


def merge_lesions(lesions: list[Lesion]) -> Lesion:
    """One reference lesion from several algorithms' segmentations of the same tumour."""
    centre = np.mean([les.centre_mm for les in lesions], axis=0)
    diameter = float(np.mean([les.diameter_mm for les in lesions]))
    return Lesion(tuple(float(v) for v in centre), diameter, "dicom_seg", None,
                  {"algorithms": [les.extra.get("algorithm") for les in lesions],
                   "volumes_ml": [les.extra.get("volume_ml") for les in lesions]})
