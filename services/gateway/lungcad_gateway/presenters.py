"""ORM rows to API schemas."""

from __future__ import annotations

from lungcad.db.models import Artifact, Job
from lungcad.schemas import ArtifactPublic, DeliveryPublic, JobInputPublic, JobPublic


def job_public(job: Job) -> JobPublic:
    base = f"/v1/jobs/{job.id}"
    links = {"self": base, "result": f"{base}/result", "artifacts": f"{base}/artifacts"}
    return JobPublic(
        id=job.id, state=job.state, stage=job.stage, progress=job.progress,
        attempts=job.attempts, created_at=job.created_at, updated_at=job.updated_at,
        started_at=job.started_at, finished_at=job.finished_at, error_code=job.error_code,
        error_message=job.error_message, input_format=job.input_format,
        input_bytes=job.input_bytes, patient_id=job.patient_id,
        study_instance_uid=job.study_instance_uid, study_date=job.study_date,
        series_description=job.series_description,
        requested_series_uid=job.requested_series_uid, callback_url=job.callback_url,
        deleted=job.deleted_at is not None, timings_s=job.timings_s or {},
        inputs=[JobInputPublic.model_validate(i) for i in job.inputs],
        deliveries=[DeliveryPublic.model_validate(d) for d in job.deliveries], links=links,
    )


def artifact_public(job_id: str, artifact: Artifact) -> ArtifactPublic:
    return ArtifactPublic(name=artifact.name, content_type=artifact.content_type,
                          size=artifact.size, sha256=artifact.sha256,
                          url=f"/v1/jobs/{job_id}/artifacts/{artifact.name}")
