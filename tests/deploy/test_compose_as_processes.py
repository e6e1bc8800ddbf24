"""The compose file's LungCAD services, run as local processes with the compose environment
(no Docker engine here): Postgres, Redis and an S3-protocol server on loopback stand in for the
postgres, redis and minio containers. A real study goes through end to end, with two workers of
each kind consuming one queue, and no job is processed twice."""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml
from deploy_files import COMPOSE_FILE, interpolate

from lungcad import synthetic
from tests.conftest import S3Server, free_port

WEIGHTS = Path(__file__).resolve().parents[2] / "services/inference/lungcad_inference/weights"
LUNGCAD_SERVICES = ["migrate", "relay", "gateway", "preprocess", "inference-cpu"]
SCALE = {"preprocess": 2, "inference-cpu": 2}
JOBS = 4


def compose_environment(tmp_path: Path) -> dict[str, str]:
    """What an operator puts in .env (real, non-placeholder values)."""
    return {"POSTGRES_PASSWORD": secrets.token_hex(12), "REDIS_PASSWORD": secrets.token_hex(12),
            "LUNGCAD_SECRET_KEY": secrets.token_hex(20), "LUNGCAD_S3_ACCESS_KEY": "lungcad-app",
            "LUNGCAD_S3_SECRET_KEY": secrets.token_hex(20), "LUNGCAD_S3_BUCKET": "lungcad",
            "MINIO_ROOT_USER": "root", "MINIO_ROOT_PASSWORD": secrets.token_hex(12),
            "COMPOSE_PROFILES": "cpu", "FLOWER_BASIC_AUTH": "ops:" + secrets.token_hex(8),
            "LUNGCAD_PREPROCESS_CONCURRENCY": "1"}


def local_argv(command: list[str], port: int) -> list[str]:
    """The container command with this machine's interpreter and a free loopback port."""
    assert command[0] == "lungcad", command
    argv = [sys.executable, "-m", "lungcad.cli", *command[1:]]
    argv = ["127.0.0.1" if a == "0.0.0.0" else a for a in argv]  # noqa: S104
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    if argv[3] == "worker":
        argv += ["--pool", "solo"]  # one process per worker, as with concurrency 1
    return argv


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def study_zip(tmp_path: Path, seed: int) -> bytes:
    folder = tmp_path / f"study{seed}"
    case = synthetic.make_chest_ct(seed=seed)
    synthetic.write_dicom_series(case.hu, case.geometry, folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.glob("*.dcm")):
            zf.write(path, f"export/{path.name}")
    return buffer.getvalue()


@pytest.mark.skipif(not any(WEIGHTS.glob("detector*")), reason="no shipped detector weights")
def test_compose_services_as_processes_end_to_end(tmp_path: Path, pg_url: str, redis_url: str,
                                                  s3_server: S3Server) -> None:
    from lungcad.storage.s3 import S3Store

    model = yaml.safe_load(COMPOSE_FILE.read_text())
    values = compose_environment(tmp_path)
    services = interpolate(model["services"], values)
    local = {"LUNGCAD_DATABASE_URL": pg_url, "LUNGCAD_BROKER_URL": redis_url,
             "LUNGCAD_S3_ENDPOINT": s3_server.endpoint}
    bucket = values["LUNGCAD_S3_BUCKET"]
    S3Store(s3_server.endpoint, values["LUNGCAD_S3_ACCESS_KEY"], values["LUNGCAD_S3_SECRET_KEY"],
            bucket).ensure_bucket()  # what the minio-init job does
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGCAD_")}
    processes: dict[str, list[subprocess.Popen[bytes]]] = {}
    logs: dict[str, list[Path]] = {}
    port = free_port()

    def start(name: str, index: int = 0) -> subprocess.Popen[bytes]:
        service = services[name]
        env = dict(base_env)
        env.update({k: str(v) for k, v in service["environment"].items()})
        assert env["LUNGCAD_ENV"] == "production"
        env.update(local)
        env["LUNGCAD_DATA_DIR"] = str(tmp_path / f"{name}-{index}")
        log = tmp_path / f"{name}-{index}.log"
        logs.setdefault(name, []).append(log)
        process = subprocess.Popen(local_argv(service["command"], port), env=env,  # noqa: S603
                                   stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        processes.setdefault(name, []).append(process)
        return process

    try:
        migrate = start("migrate")
        assert migrate.wait(timeout=120) == 0, logs["migrate"][0].read_text()
        start("relay")
        start("gateway")
        for name, count in SCALE.items():
            for index in range(count):
                start(name, index)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url), 60, "the gateway's /readyz")
        env = {**base_env, **{k: str(v) for k, v in services["gateway"]["environment"].items()},
               **local, "LUNGCAD_DATA_DIR": str(tmp_path / "admin")}
        key = subprocess.run([sys.executable, "-m", "lungcad.cli", "admin", "create-key",  # noqa: S603
                              "--tenant", "radiology"], env=env, capture_output=True, text=True,
                             check=True, timeout=60).stdout.strip().splitlines()[-1]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as client:
            ids = []
            for seed in range(JOBS):
                response = client.post("/v1/jobs", files=[
                    ("files", (f"s{seed}.zip", study_zip(tmp_path, seed), "application/zip"))])
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])

            def all_done():  # type: ignore[no-untyped-def]
                jobs = [client.get(f"/v1/jobs/{i}").json() for i in ids]
                return jobs if all(j["state"] in ("succeeded", "failed") for j in jobs) else None

            jobs = wait_for(all_done, 600, "all jobs to finish")
            for job in jobs:
                assert job["state"] == "succeeded", job
                assert job["attempts"] == 1
                assert client.get(f"/v1/jobs/{job['id']}/result").status_code == 200
        for kind, name in (("preprocess", "preprocess"), ("inference", "inference-cpu")):
            text = "\n".join(p.read_text(errors="replace") for p in logs[name])
            for job_id in ids:
                runs = re.findall(rf"Task lungcad\.{kind}\[{job_id}[^\]]*\] received", text)
                assert len(runs) == 1, (kind, job_id, len(runs))
    finally:
        for group in processes.values():
            for process in group:
                if process.poll() is None:
                    process.terminate()
        for group in processes.values():
            for process in group:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
