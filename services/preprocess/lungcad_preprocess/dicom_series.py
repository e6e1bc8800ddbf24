"""Find the DICOM series in an upload and choose the one to analyse, by explicit rules.

Selection rules (documented in docs/preprocessing.md; applied in this order):

1. A series named by the caller (``requested_uid``) is used if present and acceptable, else the
   job fails (``series_not_found`` or the reason it is unacceptable).
2. Only CT image storage (CT, enhanced CT, legacy-converted enhanced CT) with Modality CT is
   eligible: SEG, SR, dose reports, secondary captures and other modalities are skipped.
3. Localizers / scouts (ImageType LOCALIZER or SCOUT) are skipped.
4. Non-axial stacks (slice normal more than ~37 degrees from the patient z axis) are skipped.
5. Stacks with fewer than ``min_slices`` slices are skipped.
6. Among the rest, ranked by: ORIGINAL before DERIVED, most coverage along the slice normal
   (in 20 mm bins), thinnest slice spacing (0.25 mm bins), lung / soft-tissue kernel before an
   unknown one before a bone kernel, most slices, then SeriesInstanceUID (deterministic).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungcad.errors import ProcessingError

log = logging.getLogger(__name__)

CT_IMAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
AXIAL_MIN_NORMAL_Z = 0.8
_BONE = re.compile(r"BONE|EDGE|\bB[6-9]\d|\bH[6-9]\d|\bYC\b|\bD\b|FC3\d|SHARP", re.I)
_SOFT_LUNG = re.compile(r"LUNG|SOFT|STANDARD|STND|BODY|\bB[1-5]\d|\bI[2-5]\d|\bBr[3-5]\d|"
                        r"\bFC[01]\d|\bFC5\d|\b[BCL]\b|DETAIL", re.I)


@dataclass(frozen=True)
class SliceRef:
    """One 2-D image: a file (and 0-based frame for multi-frame objects) with its geometry."""

    path: Path
    frame: int | None
    sop_uid: str
    position: tuple[float, float, float]  # ImagePositionPatient, LPS mm
    orientation: tuple[float, ...]  # ImageOrientationPatient (row cosines, column cosines)
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) = (dy, dx) mm
    rows: int
    columns: int
    slope: float
    intercept: float
    instance_number: int | None = None  # InstanceNumber: the image number PACS shows


@dataclass
class SeriesInfo:
    """A series found in an upload (headers only; no pixels read)."""

    uid: str
    modality: str
    sop_class_uid: str
    description: str = ""
    kernel: str = ""
    image_type: tuple[str, ...] = ()
    thickness_mm: float | None = None
    slices: list[SliceRef] = field(default_factory=list)
    instances: int = 0
    manufacturer: str = ""
    transfer_syntaxes: set[str] = field(default_factory=set)
    headers: dict[str, Any] = field(default_factory=dict)  # a few non-identifying fields

    @property
    def is_ct_image(self) -> bool:
        return self.modality == "CT" and self.sop_class_uid in CT_IMAGE_CLASSES

    @property
    def is_localizer(self) -> bool:
        return any(t.upper() in {"LOCALIZER", "SCOUT", "TOPOGRAM"} for t in self.image_type)

    @property
    def is_original(self) -> bool:
        return bool(self.image_type) and self.image_type[0].upper() == "ORIGINAL"

    @property
    def normal(self) -> np.ndarray | None:
        if not self.slices:
            return None
        o = np.asarray(self.slices[0].orientation, float)
        n = np.cross(o[:3], o[3:])
        norm = np.linalg.norm(n)
        return n / norm if norm > 0 else None

    @property
    def is_axial(self) -> bool:
        n = self.normal
        return n is not None and abs(float(n[2])) >= AXIAL_MIN_NORMAL_Z

    def positions(self) -> np.ndarray:
        n = self.normal
        if n is None:
            return np.zeros(0)
        return np.asarray([np.dot(s.position, n) for s in self.slices], float)

    @property
    def coverage_mm(self) -> float:
        p = self.positions()
        return float(p.max() - p.min()) if p.size else 0.0

    @property
    def spacing_mm(self) -> float:
        p = np.unique(np.round(self.positions(), 3))
        if p.size < 2:
            return float(self.thickness_mm or 0.0)
        return float(np.median(np.diff(p)))

    @property
    def kernel_score(self) -> int:
        """2: lung or soft-tissue kernel, 1: unknown, 0: bone / sharp kernel."""
        text = f"{self.kernel} {self.description}"
        if _BONE.search(text) and not re.search(r"LUNG|SOFT", text, re.I):
            return 0
        return 2 if _SOFT_LUNG.search(text) else 1

    def summary(self) -> dict[str, Any]:
        return {"series_instance_uid": self.uid, "modality": self.modality,
                "sop_class": CT_IMAGE_CLASSES.get(self.sop_class_uid, self.sop_class_uid),
                "slices": len(self.slices), "instances": self.instances,
                "image_type": list(self.image_type), "kernel": self.kernel,
                "slice_spacing_mm": round(self.spacing_mm, 3),
                "coverage_mm": round(self.coverage_mm, 1)}


@dataclass(frozen=True)
class SeriesChoice:
    series: SeriesInfo
    reason: str
    candidates: list[dict[str, Any]]  # every series seen, with why it was or was not chosen


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _slices_of(ds: Any, path: Path) -> list[SliceRef]:
    """The 2-D images in a header (one for classic CT, one per frame for enhanced CT)."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    sop = str(ds.get("SOPInstanceUID", ""))
    number = _instance_number(ds)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
        out = []
        for i, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
            def item(name: str, fg: Any = fg) -> Any:
                for src in (fg, shared):
                    if src is not None and name in src:
                        return src[name][0]
                return None

            pos, ori, pix, rescale = (item("PlanePositionSequence"),
                                      item("PlaneOrientationSequence"),
                                      item("PixelMeasuresSequence"),
                                      item("PixelValueTransformationSequence"))
            ipp = _floats(getattr(pos, "ImagePositionPatient", None), 3)
            iop = _floats(getattr(ori, "ImageOrientationPatient", None), 6)
            ps = _floats(getattr(pix, "PixelSpacing", None), 2)
            if ipp is None or iop is None or ps is None:
                continue
            out.append(SliceRef(path, i, sop, ipp, iop, ps, rows, cols,
                                float(getattr(rescale, "RescaleSlope", 1) or 1),
                                float(getattr(rescale, "RescaleIntercept", 0) or 0),
                                number))
        return out
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    ps = _floats(ds.get("PixelSpacing"), 2)
    if ipp is None or iop is None or ps is None or nframes != 1:
        return []
    return [SliceRef(path, None, sop, ipp, iop, ps, rows, cols,
                     float(ds.get("RescaleSlope", 1) or 1),
                     float(ds.get("RescaleIntercept", 0) or 0), number)]


def _instance_number(ds: Any) -> int | None:
    """InstanceNumber as an int, or None when absent or not a number."""
    try:
        value = ds.get("InstanceNumber")
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def read_header(path: Path) -> Any | None:
    """The DICOM header without pixels, or None when the file is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.info("unreadable DICOM header", extra={"file": path.name, "error": str(exc)})
        return None


def scan_dicom(paths: Iterable[Path]) -> tuple[list[SeriesInfo], list[Path]]:
    """Group DICOM files by SeriesInstanceUID. Returns (series, files that were not DICOM)."""
    series: dict[str, SeriesInfo] = {}
    skipped: list[Path] = []
    seen_sops: set[tuple[str, str]] = set()
    for path in paths:
        ds = read_header(path)
        if ds is None or "SeriesInstanceUID" not in ds:
            skipped.append(path)
            continue
        uid = str(ds.SeriesInstanceUID)
        info = series.get(uid)
        if info is None:
            info = series[uid] = SeriesInfo(
                uid=uid, modality=str(ds.get("Modality", "")),
                sop_class_uid=str(ds.get("SOPClassUID", "")),
                description=str(ds.get("SeriesDescription", "")),
                kernel="/".join(str(v) for v in np.atleast_1d(ds.get("ConvolutionKernel", ""))
                                if v) if "ConvolutionKernel" in ds else "",
                image_type=tuple(str(v) for v in ds.get("ImageType", []) or []),
                thickness_mm=float(ds.SliceThickness) if ds.get("SliceThickness") else None,
                manufacturer=str(ds.get("Manufacturer", "")),
                headers={"manufacturer_model": str(ds.get("ManufacturerModelName", "")),
                         "kvp": str(ds.get("KVP", ""))})
        sop = str(ds.get("SOPInstanceUID", ""))
        if (uid, sop) in seen_sops:  # the same instance uploaded twice
            continue
        seen_sops.add((uid, sop))
        info.instances += 1
        info.transfer_syntaxes.add(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if info.is_ct_image:
            info.slices.extend(_slices_of(ds, path))
    return list(series.values()), skipped


def _rejection(info: SeriesInfo, min_slices: int) -> tuple[str, str] | None:
    """(code, reason) when a series is not eligible, else None."""
    if not info.is_ct_image:
        what = {"SEG": "a segmentation object", "SR": "a structured report"}.get(
            info.modality, f"modality {info.modality or 'unknown'}")
        return "no_ct_series", f"not a CT image series ({what})"
    if info.is_localizer:
        return "localizer_only", "a localizer / scout"
    if not info.slices:
        return "no_ct_series", "no image position or orientation in its headers"
    if not info.is_axial:
        return "no_axial_series", "not an axial stack (a reformat)"
    if len({round(p, 2) for p in info.positions()}) < min_slices:
        return "too_few_slices", f"{len(info.slices)} slice(s), fewer than {min_slices}"
    return None


def _rank(info: SeriesInfo) -> tuple[Any, ...]:
    return (info.is_original, int(info.coverage_mm // 20), -round(info.spacing_mm * 4),
            info.kernel_score, len(info.slices), info.uid)


_PRIORITY = ["localizer_only", "too_few_slices", "no_axial_series", "no_ct_series"]


def choose_series(series: Sequence[SeriesInfo], requested_uid: str | None = None,
                  min_slices: int = 10) -> SeriesChoice:
    """Pick the series to analyse (rules in the module docstring); raise ProcessingError."""
    if not series:
        raise ProcessingError("The upload holds no readable DICOM file.", code="no_dicom_images")
    verdicts = {s.uid: _rejection(s, min_slices) for s in series}
    candidates = [dict(s.summary(), rejected=(v[1] if v else None))
                  for s, v in zip(series, verdicts.values(), strict=True)]
    if requested_uid:
        match = [s for s in series if s.uid == requested_uid]
        if not match:
            raise ProcessingError(f"The requested series {requested_uid} is not in the upload "
                                  f"({len(series)} series found).", code="series_not_found")
        verdict = verdicts[requested_uid]
        if verdict:
            raise ProcessingError(f"The requested series is {verdict[1]}.", code=verdict[0])
        return SeriesChoice(match[0], "requested by the caller", candidates)
    eligible = [s for s in series if verdicts[s.uid] is None]
    if not eligible:
        codes = [v[0] for v in verdicts.values() if v]
        code = next(c for c in _PRIORITY if c in codes)
        messages = {
            "localizer_only": "The upload holds only localizer (scout) images, no axial CT.",
            "too_few_slices": f"No CT series has at least {min_slices} slices; a chest CT volume "
                              "is needed.",
            "no_axial_series": "No axial CT series was found (only reformats).",
            "no_ct_series": "The upload holds no CT image series ("
                            + ", ".join(sorted({s.modality or "?" for s in series})) + ").",
        }
        raise ProcessingError(messages[code], code=code)
    ranked = sorted(eligible, key=_rank, reverse=True)
    best = ranked[0]
    reason = (f"CT {'original' if best.is_original else 'derived'} axial series with "
              f"{len(best.slices)} slices, {best.spacing_mm:.2f} mm spacing, "
              f"{best.coverage_mm:.0f} mm coverage, kernel {best.kernel or 'unknown'}")
    if len(ranked) > 1:
        reason += (f"; ranked first of {len(ranked)} eligible series by original, coverage, "
                   "thinnest slices, kernel")
    for c in candidates:
        if c["series_instance_uid"] == best.uid:
            c["chosen"] = True
    return SeriesChoice(best, reason, candidates)
