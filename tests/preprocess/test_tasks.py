"""The Celery task as a thin adapter: claim, preprocess, store artifacts, advance or fail."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from lungcad.celery_app import TASK_INFERENCE
from lungcad.db.models import Artifact, Base, Job, JobInput, JobState, OutboxMessage, Tenant
from lungcad.db.session import make_engine, make_sessionmaker
from lungcad.settings import Settings
from lungcad.storage.local import LocalStore
from lungcad.synthetic import default_geometry, make_chest_ct, write_dicom_series
from lungcad_preprocess import tasks
from lungcad_preprocess.store import load_preprocessed


@pytest.fixture()
def env(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "var", env="development")
    engine = make_engine(settings)
    Base.metadata.create_all(engine)  # tests only; the gateway owns the migrations
    factory = make_sessionmaker(engine)
    store = LocalStore(tmp_path / "objects")
    monkeypatch.setattr(tasks, "sessions", lambda: factory)
    monkeypatch.setattr(tasks, "store", lambda: store)
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    with factory() as s:
        tenant = Tenant(name="t", webhook_secret="x" * 32)
        s.add(tenant)
        s.commit()
        tenant_id = tenant.id
    return factory, store, tenant_id


def make_job(env, files, **job_fields) -> str:
    factory, store, tenant_id = env
    with factory() as s:
        job = Job(tenant_id=tenant_id, input_format="dicom", **job_fields)
        s.add(job)
        s.flush()
        for i, path in enumerate(files):
            key = f"jobs/{job.id}/input/{i:04d}.dcm"
            obj = store.put_bytes(key, path.read_bytes())
            s.add(JobInput(job_id=job.id, ordinal=i, object_key=key, kind="dicom",
                           size=obj.size, sha256=obj.sha256, original_name=path.name))
        s.commit()
        return job.id


def test_success_stores_artifacts_and_enqueues_inference(env, tmp_path):
    g = default_geometry((40, 128, 128), (5.0, 2.7, 2.7))
    ct = make_chest_ct(g, seed=2)
    files = write_dicom_series(ct.hu, g, tmp_path / "series")
    job_id = make_job(env, files)
    tasks.preprocess(job_id, 0)
    factory, store, _ = env
    with factory() as s:
        job = s.get(Job, job_id)
        assert job.state == JobState.INFERRING, (job.error_code, job.error_message)
        assert job.progress == 50
        assert {"preprocess_read", "preprocess_segment", "preprocess_store"} <= set(job.timings_s)
        assert job.details["preprocess"]["lung_volumes_ml"]["left_ml"] > 300
        arts = {a.name: a for a in s.scalars(select(Artifact).where(Artifact.job_id == job_id))}
        assert set(arts) == {"volume", "lung_mask", "preprocess.json"}
        assert not any(a.public for a in arts.values())
        msgs = s.scalars(select(OutboxMessage).where(OutboxMessage.job_id == job_id)).all()
        assert [m.payload["task"] for m in msgs] == [TASK_INFERENCE]
    hu, labels, meta = load_preprocessed(store, job_id)
    assert hu.dtype == np.int16 and labels.max() == 2
    assert len(meta["source"]["slices"]["sop_instance_uids"]) == 40
    tasks.preprocess(job_id, 0)  # a duplicate message is dropped: the job is no longer queued
    with factory() as s:
        assert s.get(Job, job_id).state == JobState.INFERRING


def test_localizer_only_fails_with_code(env, tmp_path):
    g = default_geometry((2, 64, 64), (5.0, 5.0, 5.0))
    files = write_dicom_series(np.zeros(g.shape, np.int16), g, tmp_path / "loc",
                               image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    job_id = make_job(env, files)
    tasks.preprocess(job_id, 0)
    with env[0]() as s:
        job = s.get(Job, job_id)
        assert job.state == JobState.FAILED
        assert job.error_code == "localizer_only"
        assert "localizer" in job.error_message


def test_stale_attempt_is_ignored(env, tmp_path):
    g = default_geometry((2, 64, 64), (5.0, 5.0, 5.0))
    files = write_dicom_series(np.zeros(g.shape, np.int16), g, tmp_path / "x")
    job_id = make_job(env, files, attempts=2)
    tasks.preprocess(job_id, 1)
    with env[0]() as s:
        assert s.get(Job, job_id).state == JobState.QUEUED
