"""Render a job's result files: findings JSON, key images, overview, DICOM SR and SEG.

Returns ``{name: (bytes, content_type)}``; the task stores them, ``lungcad analyze`` writes them
to a folder. SR and SEG need the original DICOM series (``source_folder``); volumes uploaded as
NIfTI, MetaImage or NRRD get the JSON and images only. Each part is its own function
(``bench/bench_reports.py`` times them one by one).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from lungcad.findings import ModelInfo
from lungcad.imaging import Geometry
from lungcad.imaging.slices import SliceTable
from lungcad_inference.analysis import AnalysisResult
from lungcad_inference.reports import keyimages
from lungcad_inference.reports.dicom_seg import nodule_segmentation, segment_references
from lungcad_inference.reports.dicom_sr import SrFinding, measurement_report
from lungcad_inference.reports.source import labels_on_slices, load_series_headers

log = logging.getLogger(__name__)
PNG, JSON, DICOM = "image/png", "application/json", "application/dicom"


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def seg_report(labels: np.ndarray, finding_ids: list[str], model: ModelInfo, geometry: Geometry,
               slices: SliceTable, headers: list[pydicom.Dataset]
               ) -> tuple[pydicom.Dataset | None, list[pydicom.Dataset]]:
    """The SEG of the findings' outlines (finding ``finding_ids[j]`` is label ``j + 1`` of
    ``labels``) and the source headers it references, or ``(None, [])`` when no finding has an
    outline on the source slices."""
    if not finding_ids:
        return None, []
    rows, cols = int(headers[0].Rows), int(headers[0].Columns)
    # Only the slices the nodules cross are referenced: encoding is then independent of
    # the series length (highdicom walks every source image it is given).
    used, label_map = labels_on_slices(labels, geometry, slices, rows, cols,
                                       range(1, len(finding_ids) + 1))
    if not used:
        return None, []
    segmented = [headers[k] for k in used]
    return nodule_segmentation(segmented, label_map, finding_ids, model.name,
                               model.version), segmented


def sr_report(result: AnalysisResult, headers: list[pydicom.Dataset],
              seg: pydicom.Dataset | None, segmented: list[pydicom.Dataset]) -> pydicom.Dataset:
    """The SR; its findings reference their SEG segment where ``seg`` really holds one."""
    segments = segment_references(seg) if seg is not None else {}
    items = []
    for number, (finding, hit) in enumerate(zip(result.document.findings, result.hits,
                                                strict=True), start=1):
        if hit is not None:
            items.append(SrFinding(finding, headers[hit.index], hit.row, hit.column,
                                   segments.get(number)))
    evidence = [headers[h.index] for h in result.hits if h is not None] or headers[:1]
    unique = {ds.SOPInstanceUID: ds for ds in evidence}
    if segments and seg is not None:  # the SEG and its source slices are referenced
        unique.update({ds.SOPInstanceUID: ds for ds in [*segmented, seg]})
    model = result.document.model
    return measurement_report(items, list(unique.values()), model.name, model.version)


def dicom_reports(result: AnalysisResult, geometry: Geometry, slices: SliceTable,
                  source_folder: Path) -> dict[str, tuple[bytes, str]]:
    """The SEG first (when any finding has an outline on the source slices), then the SR, whose
    findings reference their SEG segment where the SEG really holds one."""
    headers = load_series_headers(source_folder, slices)
    out: dict[str, tuple[bytes, str]] = {}
    seg, segmented = seg_report(result.labels, [f.id for f in result.document.findings],
                                result.document.model, geometry, slices, headers)
    if seg is not None:
        out["seg.dcm"] = (dicom_bytes(seg), DICOM)
    out["sr.dcm"] = (dicom_bytes(sr_report(result, headers, seg, segmented)), DICOM)
    return out


def key_images(hu: np.ndarray, result: AnalysisResult) -> dict[str, tuple[bytes, str]]:
    """Axial, coronal and sagittal key images of every finding."""
    out: dict[str, tuple[bytes, str]] = {}
    for k, finding in enumerate(result.document.findings):
        centre = result.measurements[k].center_zyx
        for plane, png in keyimages.finding_images(hu, result.labels, k + 1, centre,
                                                   finding.id).items():
            out[f"keyimages/{finding.id}_{plane}.png"] = (png, PNG)
    return out


def overview(hu: np.ndarray, lungs: np.ndarray, result: AnalysisResult) -> bytes:
    return keyimages.overview_image(
        hu, lungs, [(f.id, m.center_zyx, f.diameter_mm)
                    for f, m in zip(result.document.findings, result.measurements, strict=True)])


def render_outputs(hu: np.ndarray, lungs: np.ndarray, geometry: Geometry, meta: dict[str, Any],
                   result: AnalysisResult, source_folder: Path | None
                   ) -> dict[str, tuple[bytes, str]]:
    out = key_images(hu, result)
    out["overview.png"] = (overview(hu, lungs, result), PNG)
    source = meta.get("source", {})
    if source_folder is not None and source.get("slices"):
        out.update(dicom_reports(result, geometry, SliceTable.from_dict(source["slices"]),
                                 source_folder))
    out["findings.json"] = (result.document.model_dump_json(by_alias=True, indent=2).encode(),
                            JSON)
    return out
