"""/healthz, /readyz (each dependency checked) and /metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.conftest import Gateway, S3Server, start_gateway
from tests.factories import ct_series


def test_health_ready_and_metrics(gateway: Gateway, tmp_path: Path) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    paths = ct_series(tmp_path / "s", n=2)
    with gateway.client() as client:
        client.post("/v1/jobs", files=[("files", (p.name, p.read_bytes())) for p in paths])
        client.get("/v1/jobs")
    text = httpx.get(f"{gateway.url}/metrics").text
    assert 'lungcad_jobs{state="queued"} 1.0' in text
    assert 'lungcad_http_requests_total{method="POST",route="/v1/jobs",status="202"} 1.0' in text
    assert "lungcad_http_request_seconds_bucket" in text
    assert 'lungcad_queue_depth{queue="preprocess"}' in text


def test_readyz_reports_a_down_dependency(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    server, gw = start_gateway(broken, run_relay=False)
    try:
        ready = httpx.get(f"{gw.url}/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        checks = ready.json()["checks"]
        assert checks["database"] == "ok" and checks["broker"].startswith("error")
    finally:
        server.__exit__()


def _take_storage_down(settings, s3_server: S3Server) -> None:  # type: ignore[no-untyped-def]
    """S3: stop the server. Local directory: replace the store's folder with a file (the tests
    run as root, for whom a chmod'ed folder stays writable)."""
    if settings.storage_backend == "s3":
        s3_server.stop()
        return
    shutil.rmtree(settings.objects_dir)
    settings.objects_dir.write_text("not a folder: the storage volume is gone")


def test_storage_down_gives_503_and_keeps_nothing(settings, s3_server: S3Server,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path) -> None:
    server, gw = start_gateway(settings)
    try:
        _take_storage_down(settings, s3_server)
        paths = ct_series(tmp_path / "s", n=2)
        with gw.client() as client:
            response = client.post("/v1/jobs", files=[("files", (p.name, p.read_bytes()))
                                                      for p in paths])
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "storage_unavailable"
        assert response.headers["retry-after"]
        assert httpx.get(f"{gw.url}/readyz").json()["checks"]["storage"].startswith("error")
        from sqlalchemy import func, select

        from lungcad.db.models import Job

        with gw.runtime.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 0
    finally:
        if s3_server.process.poll() is not None:
            s3_server.start()
        server.__exit__()
