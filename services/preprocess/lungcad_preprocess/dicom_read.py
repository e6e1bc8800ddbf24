"""Read a chosen DICOM series into a float32 HU volume ``(z, y, x)`` with its geometry.

Slices are sorted by ImagePositionPatient projected on the ImageOrientationPatient normal.
HU = stored * RescaleSlope + RescaleIntercept in float32 (never cast back to the stored type).
PixelPaddingValue (read with the image's signedness, so LIDC's 63536 in a signed image is -2000)
and out-of-field values below -1024 HU become air (-1024). MONOCHROME1 only changes display:
the Modality LUT (rescale) already gives HU, so pixels are not inverted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry, Volume
from lungcad.imaging.slices import SliceTable
from lungcad_preprocess.dicom_series import SeriesInfo, SliceRef

log = logging.getLogger(__name__)
AIR_HU = -1024.0


@dataclass(frozen=True)
class ReadLimits:
    max_matrix: int = 2048  # Rows and Columns
    max_slices: int = 3000
    max_gap_ratio: float = 1.5  # a gap larger than this x the median spacing is a missing slice
    max_tilt_deg: float = 30.0
    threads: int = 4


@dataclass
class DicomVolume:
    volume: Volume  # float32 HU, regular grid (possibly sheared for gantry tilt)
    slices: SliceTable
    notes: dict[str, Any] = field(default_factory=dict)


def _check_consistent(slices: Sequence[SliceRef], limits: ReadLimits) -> None:
    first = slices[0]
    if first.rows > limits.max_matrix or first.columns > limits.max_matrix or (
            len(slices) > limits.max_slices):
        raise ProcessingError(f"The series claims {len(slices)} slices of {first.rows} x "
                              f"{first.columns} pixels, over the limit of {limits.max_slices} "
                              f"slices of {limits.max_matrix} x {limits.max_matrix}.",
                              code="dimensions_too_large")
    iop = np.asarray([s.orientation for s in slices])
    if np.abs(iop - iop[0]).max() > 1e-3:
        raise ProcessingError("Image orientation changes between slices of the series.",
                              code="inconsistent_orientation")
    ps = np.asarray([s.pixel_spacing for s in slices])
    if np.abs(ps - ps[0]).max() > 1e-3 * ps[0].max():
        raise ProcessingError("Pixel spacing changes between slices of the series.",
                              code="inconsistent_pixel_spacing")
    if len({(s.rows, s.columns) for s in slices}) != 1:
        raise ProcessingError("Image size (rows x columns) changes between slices.",
                              code="inconsistent_pixel_spacing")


def stack_geometry(slices: Sequence[SliceRef], limits: ReadLimits
                   ) -> tuple[list[SliceRef], np.ndarray, np.ndarray, dict[str, Any]]:
    """Sort slices along the normal and check the stack.

    Returns (sorted slices, offsets along the normal in mm, the stack vector w (LPS mm moved
    per mm along the normal; w = normal unless the gantry is tilted), notes).
    """
    _check_consistent(slices, limits)
    o = np.asarray(slices[0].orientation, float)
    normal = np.cross(o[:3], o[3:])
    normal /= np.linalg.norm(normal)
    ipp = np.asarray([s.position for s in slices], float)
    offsets = ipp @ normal
    order = np.argsort(offsets, kind="stable")
    slices = [slices[i] for i in order]
    ipp, offsets = ipp[order], offsets[order]
    gaps = np.diff(offsets)
    if np.any(gaps < 1e-3):
        raise ProcessingError(f"{int(np.sum(gaps < 1e-3)) + 1} slices share a position; the "
                              "series mixes acquisitions.", code="duplicate_slices")
    spacing = float(np.median(gaps))
    notes: dict[str, Any] = {"slice_spacing_mm": round(spacing, 4)}
    big = np.nonzero(gaps > limits.max_gap_ratio * spacing)[0]
    if big.size:
        missing = int(np.sum(np.rint(gaps[big] / spacing) - 1))
        raise ProcessingError(
            f"About {max(missing, 1)} slice(s) are missing: gaps of "
            f"{', '.join(f'{g:.1f}' for g in gaps[big][:5])} mm where the spacing is "
            f"{spacing:.2f} mm (first after slice {int(big[0]) + 1} of {len(slices)}).",
            code="missing_slices")
    rel = offsets - offsets[0]
    d = ipp - ipp[0]
    w = (d * rel[:, None]).sum(axis=0) / max(float((rel**2).sum()), 1e-9)
    residual = np.abs(d - rel[:, None] * w[None, :]).max()
    if residual > 0.5 * min(slices[0].pixel_spacing):
        raise ProcessingError("Slice positions do not lie on a straight line.",
                              code="irregular_slice_positions")
    tilt = float(np.degrees(np.arccos(min(1.0, 1.0 / np.linalg.norm(w)))))
    if tilt > limits.max_tilt_deg:
        raise ProcessingError(f"Gantry tilt of {tilt:.1f} degrees exceeds "
                              f"{limits.max_tilt_deg:.0f} degrees.", code="gantry_tilt")
    if tilt > 0.05:
        notes["gantry_tilt_deg"] = round(tilt, 2)
    else:
        w = normal
    uneven = float(np.abs(gaps - spacing).max())
    if uneven > 0.01 * spacing + 0.01:
        notes["uneven_spacing_mm"] = round(uneven, 3)
    return slices, offsets, w, notes


def _padding(ds: Any) -> tuple[float, float] | None:
    if "PixelPaddingValue" not in ds:
        return None
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    bits = int(ds.get("BitsStored", 16) or 16)

    def as_stored(v: Any) -> float:
        v = int(v)
        if signed and v >= 2 ** (bits - 1):  # an unsigned encoding of a negative value
            v -= 2**bits if v < 2**bits else 2**16
        return float(v)

    lo = as_stored(ds.PixelPaddingValue)
    hi = as_stored(ds.PixelPaddingRangeLimit) if "PixelPaddingRangeLimit" in ds else lo
    return min(lo, hi), max(lo, hi)


def _decode(path: Path) -> tuple[Any, np.ndarray]:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        ts = ds.file_meta.get("TransferSyntaxUID")
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        raise ProcessingError(f"Pixel data of {path.name} use an unsupported transfer syntax "
                              f"({ts!s}): {exc}", code="unsupported_transfer_syntax") from exc
    except (EOFError, ValueError, OSError, AttributeError, KeyError) as exc:
        truncated = any(w in str(exc).lower() for w in ("length", "truncat", "eof", "shorter"))
        raise ProcessingError(f"Could not read the pixels of {path.name}: {exc}",
                              code="truncated_file" if truncated else "unreadable_pixels"
                              ) from exc
    return ds, pixels


def _to_hu(raw: np.ndarray, ds: Any, ref: SliceRef) -> tuple[np.ndarray, int]:
    """HU of one frame in float32 and the count of padding / out-of-field pixels."""
    if raw.shape != (ref.rows, ref.columns):
        raise ProcessingError(f"A slice has {raw.shape} pixels, expected "
                              f"{(ref.rows, ref.columns)}.", code="unreadable_pixels")
    hu = raw.astype(np.float32) * np.float32(ref.slope) + np.float32(ref.intercept)
    pad = _padding(ds)
    outside = hu < AIR_HU
    if pad is not None:
        outside |= (raw >= pad[0]) & (raw <= pad[1])
    hu[outside] = AIR_HU
    return hu, int(outside.sum())


def read_pixels(slices: Sequence[SliceRef], threads: int = 4) -> tuple[np.ndarray, int]:
    """Decode the frames of sorted ``slices`` into a ``(z, y, x)`` float32 HU array."""
    out = np.empty((len(slices), slices[0].rows, slices[0].columns), dtype=np.float32)
    by_path: dict[Path, list[int]] = {}
    for k, s in enumerate(slices):
        by_path.setdefault(s.path, []).append(k)

    def work(path: Path) -> int:
        ds, pixels = _decode(path)
        padded = 0
        for k in by_path[path]:
            ref = slices[k]
            raw = pixels[ref.frame] if ref.frame is not None else pixels
            out[k], n = _to_hu(raw, ds, ref)
            padded += n
        return padded

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        padded = sum(pool.map(work, list(by_path)))
    return out, padded


def regularise(hu: np.ndarray, offsets: np.ndarray, spacing: float) -> tuple[np.ndarray, int]:
    """Linearly resample unevenly spaced slices onto a regular grid (from the first slice)."""
    rel = offsets - offsets[0]
    n = int(np.floor(rel[-1] / spacing + 1e-6)) + 1
    target = np.arange(n) * spacing
    out = np.empty((n,) + hu.shape[1:], dtype=np.float32)
    idx = np.clip(np.searchsorted(rel, target, side="right") - 1, 0, len(rel) - 2)
    for t, (k, pos) in enumerate(zip(idx, target, strict=True)):
        f = np.float32((pos - rel[k]) / (rel[k + 1] - rel[k]))
        out[t] = hu[k] * (1 - f) + hu[k + 1] * f
    return out, n


def read_series(series: SeriesInfo, limits: ReadLimits | None = None) -> DicomVolume:
    """Read a series chosen by :func:`choose_series` into HU on a regular grid."""
    limits = limits or ReadLimits()
    slices, offsets, w, notes = stack_geometry(series.slices, limits)
    hu, padded = read_pixels(slices, limits.threads)
    spacing = notes["slice_spacing_mm"]
    if "uneven_spacing_mm" in notes:
        hu, _ = regularise(hu, offsets, spacing)
    notes["padding_or_out_of_field_pixels"] = padded
    first = slices[0]
    o = np.asarray(first.orientation, float)
    step = w * spacing  # LPS mm between consecutive regular slices
    direction = np.column_stack([o[:3], o[3:], step / np.linalg.norm(step)])
    geometry = Geometry(hu.shape, (float(np.linalg.norm(step)), first.pixel_spacing[0],
                                   first.pixel_spacing[1]), first.position, direction.ravel())
    table = SliceTable(tuple(s.sop_uid for s in slices),
                       tuple(None if s.frame is None else s.frame + 1 for s in slices),
                       tuple(tuple(s.position) for s in slices), tuple(o[:3]), tuple(o[3:]),
                       first.pixel_spacing, series.thickness_mm,
                       tuple(s.instance_number for s in slices))
    return DicomVolume(Volume(hu, geometry), table, notes)
