"""A job's original DICOM series as the viewer reads it: native pixels in HU, in PACS order.

The analysed series is the one preprocessing chose; its slices (SOPInstanceUID, frame,
ImagePositionPatient, orientation, pixel spacing, InstanceNumber) are the ``SliceTable`` in
``preprocess.json``. Their pixels are in the job's stored DICOM inputs (files, or members of a
zip; de-identified copies keep the UIDs the table holds, since de-identification runs before
preprocessing).

The stack is decoded once, on the first request, and kept as two internal artifacts under
``jobs/<job_id>/viewer/``: ``original_series.npz`` (one array ``hu``: int16 HU
``(n, rows, columns)``, images in InstanceNumber order) and ``original_series.json`` (the
per-image geometry, same order). Later opens read them back and decode no DICOM.

HU = stored * RescaleSlope + RescaleIntercept, rounded and clipped to int16; padding values are
kept as they rescale (the viewer's window hides them).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from lungcad.db.models import JobInput
from lungcad.errors import Conflict, NotFound
from lungcad.imaging.slices import SliceTable
from lungcad.storage import ObjectNotFound, ObjectStore
from lungcad.storage.ranged import open_ranged

STACK_ARTIFACT = "original_series"
META_ARTIFACT = "original_series.json"
ARRAY = "hu"
DICOM_INPUTS = ("dicom", "zip")


class OriginalInfo(BaseModel):
    """What the viewer case says about the original series (no decoding needed)."""

    url: str = Field(description="Its metadata: GET for rows, columns, geometry per image")
    pixels_url: str = Field(description="Its pixels: int16 HU (n, rows, columns), .npy, "
                                        "raw DEFLATE")
    outlines_url: str = Field(description="The findings' outlines (from the DICOM SEG) on its "
                                          "native images")
    series_instance_uid: str | None
    images: int = Field(description="Images of the series the analysis used")


class OriginalImage(BaseModel):
    instance_number: int | None
    sop_instance_uid: str
    frame_number: int | None = Field(None, description="1-based frame of a multi-frame object")
    image_position_patient: list[float] = Field(description="LPS mm of the first pixel's centre")


class OriginalSeries(BaseModel):
    notice: str = "Research use, not for clinical diagnosis."
    series_instance_uid: str | None
    rows: int
    columns: int
    pixel_spacing: list[float] = Field(description="DICOM order: between rows, between columns "
                                                   "(mm)")
    image_orientation_patient: list[float] = Field(description="Row then column direction "
                                                               "cosines (LPS)")
    slice_thickness_mm: float | None = None
    images: list[OriginalImage] = Field(description="In InstanceNumber order, as PACS shows "
                                                    "them; pixel stack index k is images[k]")
    pixels_url: str
    dtype: str = "int16"


@dataclass(frozen=True)
class Frame:
    """One image of the table: where it sits in the slice table and in the PACS order."""

    table_index: int
    sop_instance_uid: str
    frame_number: int | None
    instance_number: int | None


def slice_table(meta: dict[str, Any]) -> SliceTable | None:
    """The analysed series' slices, or None for a volume upload (NIfTI, MetaImage, NRRD)."""
    source = meta.get("source") or {}
    data = source.get("slices") if source.get("format") == "dicom" else None
    return SliceTable.from_dict(data) if data else None


def original_info(job_id: str, meta: dict[str, Any], inputs: Iterable[JobInput]
                  ) -> OriginalInfo | None:
    table = slice_table(meta)
    if table is None or not any(i.kind in DICOM_INPUTS for i in inputs):
        return None
    base = f"/v1/jobs/{job_id}/viewer/original"
    return OriginalInfo(url=base, pixels_url=f"{base}/pixels", outlines_url=f"{base}/outlines",
                        images=len(table),
                        series_instance_uid=(meta.get("source") or {}).get("series_instance_uid"))


def pacs_order(table: SliceTable) -> list[Frame]:
    """The table's images in InstanceNumber order (then frame, then position along the
    normal); images without an InstanceNumber follow in slice order."""
    frames = [Frame(k, table.sop_instance_uids[k], table.frame_numbers[k],
                    table.instance_number(k)) for k in range(len(table))]
    return sorted(frames, key=lambda f: (f.instance_number is None, f.instance_number or 0,
                                         f.frame_number or 0, f.table_index))


def _rescale(ds: Any, frame_number: int | None) -> tuple[float, float]:
    """(slope, intercept) of a frame: per-frame, shared or top-level Pixel Value
    Transformation (Enhanced CT), else the image's RescaleSlope / RescaleIntercept."""
    groups = []
    if frame_number is not None and "PerFrameFunctionalGroupsSequence" in ds:
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame_number - 1])
    if "SharedFunctionalGroupsSequence" in ds:
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        if "PixelValueTransformationSequence" in group:
            item = group.PixelValueTransformationSequence[0]
            return float(item.get("RescaleSlope", 1)), float(item.get("RescaleIntercept", 0))
    return float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)


def frame_hu(ds: Any, frame_number: int | None) -> np.ndarray:
    """int16 HU ``(rows, columns)`` of one frame of a dataset (the whole image when single)."""
    pixels = ds.pixel_array
    if frame_number is not None and pixels.ndim == 3:
        pixels = pixels[frame_number - 1]
    slope, intercept = _rescale(ds, frame_number)
    hu = np.rint(pixels.astype(np.float64) * slope + intercept)
    return np.clip(hu, -32768, 32767).astype(np.int16)


def build_stack(datasets: dict[str, Any], table: SliceTable
                ) -> tuple[np.ndarray, list[Frame]]:
    """The series' images in PACS order as int16 HU ``(n, rows, columns)``.

    ``datasets``: SOPInstanceUID -> pydicom dataset with pixels, for (at least) every image
    of ``table``. Raises 409 ``original_series_incomplete`` when one is missing and
    ``original_series_undecodable`` when pixels cannot be decoded.
    """
    order = pacs_order(table)
    missing = {f.sop_instance_uid for f in order} - datasets.keys()
    if missing:
        raise Conflict(f"The stored series lacks {len(missing)} of the {len(order)} images the "
                       "analysis used.", code="original_series_incomplete")
    images = []
    for f in order:
        try:
            images.append(frame_hu(datasets[f.sop_instance_uid], f.frame_number))
        except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
            raise Conflict(f"The pixels of image {f.instance_number} could not be decoded "
                           f"({type(exc).__name__}: {str(exc)[:200]}).",
                           code="original_series_undecodable") from exc
    shapes = {i.shape for i in images}
    if len(shapes) != 1:
        raise Conflict(f"The series' images differ in size ({sorted(shapes)}).",
                       code="original_series_undecodable")
    return np.stack(images), order


def series_document(table: SliceTable, order: list[Frame], shape: tuple[int, ...],
                    job_id: str, series_uid: str | None) -> OriginalSeries:
    _, rows, columns = shape
    return OriginalSeries(
        series_instance_uid=series_uid, rows=rows, columns=columns,
        pixel_spacing=list(table.pixel_spacing),
        image_orientation_patient=[*table.row_direction, *table.column_direction],
        slice_thickness_mm=table.slice_thickness_mm,
        images=[OriginalImage(instance_number=f.instance_number,
                              sop_instance_uid=f.sop_instance_uid,
                              frame_number=f.frame_number,
                              image_position_patient=list(table.positions[f.table_index]))
                for f in order],
        pixels_url=f"/v1/jobs/{job_id}/viewer/original/pixels")


# -- reading the stored inputs ----------------------------------------------------------------
def _dataset(data: bytes) -> tuple[str, Any]:
    """(SOPInstanceUID, dataset) of a stored file; ("", None) when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        return str(ds.get("SOPInstanceUID", "") or ""), ds
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError):
        return "", None


def _input_datasets(store: ObjectStore, item: JobInput) -> Iterator[tuple[str, Any]]:
    if item.kind != "zip":
        yield _dataset(store.get_bytes(item.object_key))
        return
    with open_ranged(store, item.object_key) as handle, zipfile.ZipFile(handle) as archive:
        named = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        for info in named.values():
            yield _dataset(archive.read(info))


def read_series(store: ObjectStore, inputs: Iterable[JobInput], wanted: set[str]
                ) -> dict[str, Any]:
    """SOPInstanceUID -> dataset (pixels not yet decoded) of the wanted instances among the
    job's stored DICOM inputs."""
    found: dict[str, Any] = {}
    for item in sorted(inputs, key=lambda i: i.ordinal):
        if item.kind not in DICOM_INPUTS:
            continue
        try:
            for uid, ds in _input_datasets(store, item):
                if uid in wanted:
                    found[uid] = ds
        except (ObjectNotFound, zipfile.BadZipFile) as exc:
            raise NotFound("The job's original DICOM files are no longer stored.",
                           code="original_series_not_found") from exc
    return found


def encode_stack(hu: np.ndarray) -> bytes:
    """A one-array ``.npz`` (member ``hu.npy``, deflate level 1)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(f"{ARRAY}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(hu), allow_pickle=False)
    return buf.getvalue()


def document_bytes(document: OriginalSeries) -> bytes:
    return json.dumps(document.model_dump(mode="json"), separators=(",", ":")).encode()
