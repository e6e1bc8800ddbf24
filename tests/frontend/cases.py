"""Processed cases for the dashboard tests: a job created through the API, then given what the
workers would have stored (preprocessing artifacts, a findings document, key images, finding
rows) and marked succeeded.

The preprocessing is the real pipeline (``lungcad_preprocess.pipeline.preprocess_path``); the
findings, key images and finding rows come from the inference stage's own analysis and storage
code, with candidates placed at known nodule positions instead of the detector's (model name
"reference-positions"), so the dashboard tests do not depend on the network's weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungcad.db.models import Artifact, Job, JobState
from lungcad.db.types import utcnow
from lungcad.findings import ModelInfo
from lungcad.imaging.geometry import Geometry
from lungcad_inference.analysis import PatientInfo, analyze_volume
from lungcad_inference.outputs import render_outputs
from lungcad_inference.runner import InferenceOutput
from lungcad_inference.tasks import store_results
from lungcad_preprocess.pipeline import Preprocessed
from lungcad_preprocess.store import store_preprocessed
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


@dataclass
class Placed:
    """A candidate at a known nodule position (what the detector would report)."""

    centre_zyx: tuple[float, float, float]
    diameter_mm: float
    nodule_probability: float = 0.9
    malignancy_probability: float = 0.5


def findings_document(result: Preprocessed, nodules: Sequence[tuple[Sequence[float], float]],
                      job_id: str, source_folder: Path | None = None) -> InferenceOutput:
    """The inference stage's real analysis and result files for candidates placed at known
    nodule positions (the synthetic phantom's nodules, or a real LIDC case's LUNA16 nodules):
    everything downstream of the detector is the product's own code. With the study's DICOM
    folder (``source_folder``) the files include the DICOM SR and SEG."""
    grid = Geometry.from_dict(result.meta["geometry"])
    candidates = [Placed(tuple(grid.world_to_index(np.asarray(c, float))), d,
                         nodule_probability=0.95 - 0.1 * i,
                         malignancy_probability=round(0.6 / (i + 1), 3))
                  for i, (c, d) in enumerate(nodules)]
    analysis = analyze_volume(result.hu, result.lungs, grid, result.meta, candidates,
                              PatientInfo(), ModelInfo(name="reference-positions", version="0"),
                              job_id=job_id)
    files = render_outputs(result.hu, result.lungs, grid, result.meta, analysis,
                           source_folder)
    return InferenceOutput(analysis, files, {})


def findings_for(result: Preprocessed, nodules: Sequence[tuple[Sequence[float], float]],
                 job_id: str, source_folder: Path | None = None) -> InferenceOutput:
    """The findings of a case (see :func:`findings_document`)."""
    return findings_document(result, nodules, job_id, source_folder)


def publish_case(gateway: Gateway, job_id: str, result: Preprocessed,
                 output: InferenceOutput | None) -> None:
    """Store what preprocessing (and, with an output, inference) stores, with the workers' own
    storage functions, and move the job on as they do."""
    store = gateway.runtime.store
    stored = store_preprocessed(store, job_id, result.hu, result.lungs, result.meta)
    with gateway.runtime.sessions() as session:
        for a in stored:
            session.add(Artifact(job_id=job_id, name=a.name, object_key=a.key,
                                 content_type=a.content_type, size=a.size, sha256=a.sha256,
                                 public=False))
        job = session.get(Job, job_id)
        assert job is not None
        if output is None:
            job.state, job.stage, job.progress = JobState.INFERRING, "inference:queued", 50
        else:
            store_results(session, store, job_id, output)
            job.state, job.stage, job.progress = JobState.SUCCEEDED, "done", 100
            job.finished_at = utcnow()
        session.commit()
