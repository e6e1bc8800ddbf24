"""Processed cases for the dashboard tests: a job created through the API, then given what the
workers would have stored (preprocessing artifacts, a findings document, key images, finding
rows) and marked succeeded.

The preprocessing is the real pipeline (``lungcad_preprocess.pipeline.preprocess_path``). The
findings document is a FIXTURE: inference does not exist yet, so :func:`findings_document` writes
one that follows ``lungcad.findings.FindingsDocument`` at known nodule positions (the synthetic
phantom's nodules, or the LUNA16 consensus nodules of a real LIDC case); its model name says
"FIXTURE". Artifact names follow the inference worker's (``findings.json``,
``keyimages/<finding>_axial.png``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lungcad.db.models import Artifact, FindingRow, Job, JobState
from lungcad.db.types import utcnow
from lungcad.findings import (
    CaseSummary,
    Finding,
    FindingsDocument,
    Location,
    LungRads,
    LungsInfo,
    Margin,
    ModelInfo,
    SeriesInfo,
)
from lungcad.imaging.geometry import Geometry
from lungcad.imaging.slices import SliceTable
from lungcad_preprocess.pipeline import Preprocessed
from lungcad_preprocess.store import store_preprocessed
from PIL import Image

from tests.conftest import Gateway

# LUNA16 consensus nodules of the real cases (shared/data/README.md): centre LPS mm, diameter.
LUNA16 = {
    "LIDC-IDRI-0001": [((56.2, 86.3, -115.9), 23.4)],
    "LIDC-IDRI-0003": [((72.3, 76.9, -190.5), 21.5), ((23.5, -47.6, -172.3), 8.8),
                       ((-47.4, -30.2, -169.6), 12.8)],
}
XSS = "<script>window.__xss=1</script>"


def upload(gateway: Gateway, path: Path) -> dict[str, Any]:
    """Submit a study (a zip, or a folder of DICOM files) through the API; the job (queued)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    handles = [open(p, "rb") for p in files]  # noqa: SIM115
    try:
        with gateway.client() as client:
            response = client.post("/v1/jobs", files=[("files", (p.name, h, "application/zip"
                                                                  if p.suffix == ".zip" else
                                                                  "application/dicom"))
                                                      for p, h in zip(files, handles,
                                                                      strict=True)])
    finally:
        for h in handles:
            h.close()
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def findings_document(result: Preprocessed, nodules: Sequence[tuple[Sequence[float], float]],
                      job_id: str) -> FindingsDocument:
    """A FIXTURE findings document (not model output) with one finding per known nodule."""
    grid = Geometry.from_dict(result.meta["geometry"])
    table = SliceTable.from_dict(result.meta["source"]["slices"]) \
        if result.meta["source"].get("slices") else None
    centre_x = grid.index_to_world(np.asarray(grid.shape, float) / 2)[0]
    categories = ["4B", "3", "2", "4A"]
    findings = []
    for i, (center, diameter) in enumerate(nodules):
        hit = table.locate(center) if table else None
        z_index = grid.world_to_index(center)[0] / max(1, grid.shape[0] - 1)
        findings.append(Finding(
            id=f"F{i + 1}", center_mm=[float(v) for v in center],
            center_voxel=[round(hit.column), round(hit.row), hit.index] if hit else [0, 0, 0],
            sop_instance_uid=hit.sop_instance_uid if hit else None,
            diameter_mm=diameter, short_axis_mm=round(diameter * 0.8, 1),
            volume_mm3=round(np.pi / 6 * diameter**3, 0), mean_hu=-20.0 - 10 * i,
            type=["solid", "part-solid", "ground-glass"][i % 3],
            location=Location(side="left" if center[0] > centre_x else "right",
                              zone="upper" if z_index > 0.66 else
                              "middle" if z_index > 0.33 else "lower",
                              juxtapleural=False),
            margin=Margin(category="smooth", score=0.1), nodule_probability=0.95 - 0.1 * i,
            malignancy_probability=round(0.6 / (i + 1), 3), brock_probability=round(0.4 / (i + 1),
                                                                                    3),
            lung_rads=LungRads(category=categories[i % 4], rule="fixture: not a real rule")))
    volumes = result.meta["lung_volumes_ml"]
    source = result.meta["source"]
    return FindingsDocument(
        job_id=job_id, model=ModelInfo(name="FIXTURE (no inference yet)", version="0"),
        series=SeriesInfo(series_instance_uid=source.get("series_instance_uid"),
                          original_spacing_mm=[1.0, 1.0, 1.0]),
        lungs=LungsInfo(left_ml=volumes["left_ml"], right_ml=volumes["right_ml"]),
        findings=findings,
        case=CaseSummary(cancer_probability=0.3,
                         lung_rads=LungRads(category=findings[0].lung_rads.category if findings
                                            else "1", rule="fixture"),
                         case_class="suspicious for malignancy" if findings else "normal"))


def findings_for(result: Preprocessed, nodules: Sequence[tuple[Sequence[float], float]],
                 job_id: str) -> FindingsDocument:
    """The findings of a case: the FIXTURE document for now.

    The one place to switch to real inference once it is stable (lungcad_inference.runner
    ``run_inference`` on ``result.hu, result.lungs, result.meta``), so the dashboard tests then
    show model output with the same assertions.
    """
    return findings_document(result, nodules, job_id)


def key_image(result: Preprocessed, finding: Finding, half: int = 40) -> bytes:
    """A PNG of the axial slice through a finding, lung window, with a box around it."""
    grid = Geometry.from_dict(result.meta["geometry"])
    z, y, x = (int(v) for v in grid.world_to_voxel(finding.center_mm))
    z = int(np.clip(z, 0, grid.shape[0] - 1))
    plane = result.hu[z].astype(np.float32)
    grey = np.clip((plane + 1350) / 1500 * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    y0, y1 = max(0, y - half), min(grid.shape[1], y + half)
    x0, x1 = max(0, x - half), min(grid.shape[2], x + half)
    crop = rgb[y0:y1, x0:x1].copy()
    r = int(finding.diameter_mm / 2) + 2
    cy, cx = y - y0, x - x0
    for yy in (cy - r, cy + r):
        if 0 <= yy < crop.shape[0]:
            crop[yy, max(0, cx - r):cx + r] = (255, 140, 26)
    for xx in (cx - r, cx + r):
        if 0 <= xx < crop.shape[1]:
            crop[max(0, cy - r):cy + r, xx] = (255, 140, 26)
    out = io.BytesIO()
    Image.fromarray(crop).resize((crop.shape[1] * 2, crop.shape[0] * 2)).save(out, "PNG")
    return out.getvalue()


def publish_case(gateway: Gateway, job_id: str, result: Preprocessed,
                 document: FindingsDocument | None) -> None:
    """Store what preprocessing (and, with a document, inference) would have stored."""
    store = gateway.runtime.store
    stored = store_preprocessed(store, job_id, result.hu, result.lungs, result.meta)
    with gateway.runtime.sessions() as session:
        for a in stored:
            session.add(Artifact(job_id=job_id, name=a.name, object_key=a.key,
                                 content_type=a.content_type, size=a.size, sha256=a.sha256,
                                 public=False))
        job = session.get(Job, job_id)
        assert job is not None
        if document is None:
            job.state, job.stage, job.progress = JobState.INFERRING, "inference:queued", 50
        else:
            files = {"findings.json": (document.model_dump_json(by_alias=True).encode(),
                                       "application/json")}
            for f in document.findings:
                files[f"keyimages/{f.id}_axial.png"] = (key_image(result, f), "image/png")
                session.add(FindingRow(
                    job_id=job_id, finding_id=f.id, model_version=document.model.version,
                    center_mm=f.center_mm, center_voxel=f.center_voxel,  # type: ignore[arg-type]
                    sop_instance_uid=f.sop_instance_uid, diameter_mm=f.diameter_mm,
                    short_axis_mm=f.short_axis_mm, volume_mm3=f.volume_mm3, mean_hu=f.mean_hu,
                    nodule_type=f.type, location=f.location.model_dump(),
                    margin=f.margin.model_dump(by_alias=True),
                    nodule_probability=f.nodule_probability,
                    malignancy_probability=f.malignancy_probability,
                    brock_probability=f.brock_probability, lung_rads=f.lung_rads.category))
            for name, (data, content_type) in files.items():
                key = f"jobs/{job_id}/result/{name}"
                obj = store.put_bytes(key, data, content_type)
                session.add(Artifact(job_id=job_id, name=name, object_key=obj.key,
                                     content_type=content_type, size=obj.size,
                                     sha256=obj.sha256, public=True))
            job.state, job.stage, job.progress = JobState.SUCCEEDED, "done", 100
            job.finished_at = utcnow()
        session.commit()
