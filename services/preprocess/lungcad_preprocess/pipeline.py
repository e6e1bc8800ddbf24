"""Preprocessing entry point shared by the Celery task, ``lungcad analyze`` and training.

``preprocess_path(path, options)`` turns an upload (a DICOM folder or file, or a NIfTI /
MetaImage / NRRD file) into the canonical volume: int16 HU ``(z, y, x)`` on a 1 mm isotropic,
identity-direction grid (z inferior->superior, y anterior->posterior, x right->left, LPS),
cropped to the lungs with a margin, plus the lung labels (1 right, 2 left) on the same grid and a
JSON-ready metadata dict that maps every voxel back to the original series.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry, Volume
from lungcad.imaging.slices import SliceTable
from lungcad_preprocess import lung_net
from lungcad_preprocess import resample as rs
from lungcad_preprocess.crop import lung_crop_box
from lungcad_preprocess.dicom_read import ReadLimits, read_series
from lungcad_preprocess.dicom_series import choose_series, scan_dicom
from lungcad_preprocess.itk_read import ITK_SUFFIXES, is_itk_image, read_itk_volume
from lungcad_preprocess.lung_mask import (
    LungMaskParams,
    body_mask,
    lung_volumes_ml,
    segment_lungs,
)

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
LABELS = {"0": "background", "1": "right_lung", "2": "left_lung"}


@dataclass(frozen=True)
class PreprocessOptions:
    spacing_mm: float = 1.0
    segmentation_spacing_mm: float = 2.0
    crop_margin_mm: float = 10.0
    min_slices: int = 10
    requested_series_uid: str | None = None
    threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    limits: ReadLimits = field(default_factory=ReadLimits)
    lung: LungMaskParams = field(default_factory=LungMaskParams)
    learned_lung_mask: bool = True  # add masses the classical mask cuts out (lung_net)

    @classmethod
    def from_settings(cls, settings: Any, requested_series_uid: str | None = None
                      ) -> PreprocessOptions:
        """Options from the typed settings; fields not (yet) in Settings keep their defaults."""
        defaults = cls()
        return cls(
            spacing_mm=getattr(settings, "preprocess_spacing_mm", defaults.spacing_mm),
            crop_margin_mm=getattr(settings, "preprocess_crop_margin_mm",
                                   defaults.crop_margin_mm),
            min_slices=getattr(settings, "preprocess_min_slices", defaults.min_slices),
            requested_series_uid=requested_series_uid,
            threads=getattr(settings, "preprocess_threads", 0) or defaults.threads,
            learned_lung_mask=getattr(settings, "preprocess_learned_lung_mask",
                                      defaults.learned_lung_mask),
        )


@dataclass
class Preprocessed:
    """``hu`` int16 and ``lungs`` uint8, both ``(z, y, x)`` on ``geometry``; JSON ``meta``."""

    hu: np.ndarray
    lungs: np.ndarray
    geometry: Geometry
    meta: dict[str, Any]
    timings_s: dict[str, float]

    @property
    def slices(self) -> SliceTable | None:
        data = self.meta["source"].get("slices")
        return SliceTable.from_dict(data) if data else None


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith((".", "__MACOSX")) for part in p.parts[-3:]))


def read_input(path: Path, options: PreprocessOptions) -> tuple[Volume, dict[str, Any]]:
    """Read any supported upload into a float32 HU volume and its source description."""
    files = _files_under(path) if path.is_dir() else [path]
    images = [f for f in files if is_itk_image(f)]
    others = [f for f in files if f not in images and not f.name.lower().endswith(
        (".raw", ".zraw", ".img", ".txt", ".xml", ".json", ".csv", ".md"))]
    if others:
        series, skipped = scan_dicom(others)
        if series or not images:
            choice = choose_series(series, options.requested_series_uid, options.min_slices)
            dv = read_series(choice.series, _limits(options))
            source = {"format": "dicom", "series_instance_uid": choice.series.uid,
                      "selection_reason": choice.reason, "candidates": choice.candidates,
                      "manufacturer": choice.series.manufacturer,
                      "kernel": choice.series.kernel,
                      "slice_thickness_mm": choice.series.thickness_mm,
                      "transfer_syntaxes": sorted(choice.series.transfer_syntaxes),
                      "ignored_files": len(skipped), "notes": dv.notes,
                      "slices": dv.slices.to_dict()}
            return dv.volume, source
    if not images:
        raise ProcessingError("The upload holds no DICOM file and no NIfTI, MetaImage or NRRD "
                              f"volume ({len(files)} file(s)).", code="no_dicom_images")
    if len(images) > 1:
        raise ProcessingError(f"The upload holds {len(images)} image volumes; send one.",
                              code="multiple_volumes")
    volume = read_itk_volume(images[0])
    suffix = next(s for s in ITK_SUFFIXES if images[0].name.lower().endswith(s))
    if volume.geometry.shape[0] < options.min_slices:
        raise ProcessingError(f"The volume has {volume.geometry.shape[0]} slices, fewer than "
                              f"{options.min_slices}.", code="too_few_slices")
    return volume, {"format": suffix.lstrip("."), "slices": None, "notes": {}}


def _limits(options: PreprocessOptions) -> ReadLimits:
    lim = options.limits
    return ReadLimits(lim.max_matrix, lim.max_slices, lim.max_gap_ratio, lim.max_tilt_deg,
                      threads=options.threads)


def preprocess_volume(volume: Volume, source: dict[str, Any],
                      options: PreprocessOptions) -> Preprocessed:
    """Resample, segment and crop an HU volume (any orientation) read by :func:`read_input`."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    seg_grid = rs.canonical_grid(volume.geometry, options.segmentation_spacing_mm)
    image = volume.to_sitk()
    low = rs.resample(image, seg_grid, threads=options.threads)
    timings["resample"] = time.perf_counter() - t

    t = time.perf_counter()
    body = body_mask(low, options.lung, options.segmentation_spacing_mm)
    labels_low = segment_lungs(low, options.segmentation_spacing_mm, params=options.lung,
                               body=body)
    lung_net_info: dict[str, Any] = {"used": False, "reason": "disabled"}
    if options.learned_lung_mask:
        labels_low, lung_net_info = lung_net.refine(
            low, labels_low, options.segmentation_spacing_mm, options.lung, options.threads,
            body=body)
    del body
    timings["segment"] = time.perf_counter() - t

    t = time.perf_counter()
    full = rs.canonical_grid(volume.geometry, options.spacing_mm)
    start, stop = lung_crop_box(labels_low, seg_grid, full, options.crop_margin_mm)
    grid = full.crop(start, stop)
    hu = rs.to_int16_hu(rs.resample(image, grid, threads=options.threads))
    del image
    lungs = rs.resample(Volume(labels_low, seg_grid), grid, nearest=True, default=0,
                        threads=options.threads)
    timings["resample"] += time.perf_counter() - t

    volumes = lung_volumes_ml(lungs, grid.voxel_volume_ml)
    meta = {
        "format_version": FORMAT_VERSION,
        "axis_order": "zyx",
        "hu_dtype": "int16",
        "labels": LABELS,
        "geometry": grid.to_dict(),
        "resampled_geometry": full.to_dict(),
        "crop_box_zyx": {"start": list(start), "stop": list(stop)},
        "source": {**source, "geometry": volume.geometry.to_dict()},
        "lung_volumes_ml": volumes,
        "learned_lung_mask": lung_net_info,
    }
    log.info("preprocessed", extra={"shape": grid.shape, **volumes})
    return Preprocessed(hu, lungs, grid, meta, timings)


def preprocess_path(path: str | Path, options: PreprocessOptions | None = None) -> Preprocessed:
    """Read, resample to isotropic, segment the lungs and crop; see the module docstring.

    Raises ProcessingError (with a stable ``code``) for every input it cannot handle.
    """
    options = options or PreprocessOptions()
    t = time.perf_counter()
    with _unpacked(Path(path)) as folder:
        volume, source = read_input(folder, options)
    read_s = time.perf_counter() - t
    result = preprocess_volume(volume, source, options)
    result.timings_s = {"read": read_s, **result.timings_s}
    return result


@contextmanager
def _unpacked(path: Path) -> Iterator[Path]:
    """A zip is extracted (safely) into a temporary folder; anything else is used as is."""
    if not path.exists():
        raise ProcessingError(f"{path} does not exist.", code="no_dicom_images")
    if not (path.is_file() and path.suffix.lower() == ".zip"):
        yield path
        return
    import tempfile

    from lungcad.ingest.archive import safe_extract  # written by the gateway owner
    from lungcad.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="lungcad-zip-") as tmp:
        safe_extract(path, Path(tmp), get_settings())
        yield Path(tmp)
