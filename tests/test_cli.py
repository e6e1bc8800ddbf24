"""The ``lungcad`` console commands, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

LUNGCAD = [sys.executable, "-m", "lungcad.cli"]


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LUNGCAD_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(LUNGCAD + args, capture_output=True, text=True, timeout=120,  # noqa: S603
                          env=environment, cwd=tmp_path)


def test_create_key_prints_the_key_last_and_it_authenticates(tmp_path: Path) -> None:
    assert run(["migrate"], tmp_path, LUNGCAD_ENV="development").returncode == 0
    result = run(["admin", "create-key", "--tenant", "radiology"], tmp_path,
                 LUNGCAD_ENV="development")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("lc_") and len(key) > 30
    from lungcad.db.session import make_engine, make_sessionmaker
    from lungcad.settings import Settings
    from lungcad_gateway.auth import tenant_for_key

    settings = Settings(env="development", data_dir=tmp_path / "data")
    engine = make_engine(settings)
    with make_sessionmaker(engine)() as session:
        tenant = tenant_for_key(session, key)
        assert tenant is not None and tenant.name == "radiology"
    engine.dispose()
    second = run(["admin", "create-key", "--tenant", "radiology"], tmp_path,
                 LUNGCAD_ENV="development")
    assert second.stdout.strip().splitlines()[-1] != key
    revoked = run(["admin", "revoke-key", key], tmp_path, LUNGCAD_ENV="development")
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout


def test_serve_refuses_placeholder_secrets_outside_development(tmp_path: Path) -> None:
    result = run(["serve", "--port", "1"], tmp_path, LUNGCAD_ENV="production",
                 LUNGCAD_SECRET_KEY="changeme")
    assert result.returncode == 2
    assert "Refusing to start" in result.stderr and "LUNGCAD_SECRET_KEY" in result.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    for command in ("serve", "migrate", "relay", "worker", "demo", "admin"):
        assert command in result.stdout


def test_serve_writes_an_access_line_per_request_unless_turned_off(tmp_path: Path) -> None:
    from lungcad.settings import Settings
    from tests.reliability.conftest import GatewayProcess

    lines = {}
    for setting in (True, False):
        gateway = GatewayProcess(Settings(env="development", data_dir=tmp_path / str(setting),
                                          access_log=setting))
        try:
            assert httpx.get(f"{gateway.url}/v1/jobs/x").status_code == 401
        finally:
            gateway.stop()
        lines[setting] = [line for line in gateway.output().splitlines()
                          if '"GET /v1/jobs/x' in line]
    assert len(lines[True]) == 1 and "401" in lines[True][0], lines
    assert lines[False] == []


NOISE = {"Celery banner": " -------------- ", "Alembic": "alembic", "request log": '"GET /v1/',
         "superuser warning": "superuser privileges"}


def test_demo_tells_its_story_and_logs_the_rest_to_a_file(tmp_path: Path) -> None:
    """The terminal (stdout) shows what starts, the stages' progress, a findings summary, the
    dashboard URL and the API key; the server, migration and worker log goes to
    <data dir>/demo.log, and ``--verbose`` shows it live on stderr."""
    from tests.conftest import free_port

    port = free_port()
    result = subprocess.run(LUNGCAD + ["demo", "--once", "--verbose", "--port", str(port)],  # noqa: S603
                            capture_output=True, text=True, timeout=900, cwd=tmp_path,
                            env={**{k: v for k, v in os.environ.items()
                                    if not k.startswith("LUNGCAD_")},
                                 "LUNGCAD_ENV": "development",
                                 "LUNGCAD_DATA_DIR": str(tmp_path / "data")})
    story, live = result.stdout, result.stderr
    log = (tmp_path / "data" / "demo.log").read_text()
    for line in ("LungCAD demo", "Starting the API", "Submitted job", "Full log: ",
                 f"Dashboard: http://127.0.0.1:{port}/", "API key:   lc_",
                 "Research use, not for clinical diagnosis."):
        assert line in story, (line, story[-3000:])
    assert str(tmp_path / "data" / "demo.log") in story
    expected = dict(NOISE)
    if os.geteuid() != 0:  # Celery warns about root only
        expected.pop("superuser warning")
    for name, text in expected.items():
        assert text not in story, (name, story[-3000:])
        assert text in log, (name, log[-3000:])
        assert text in live, (name, live[-3000:])  # --verbose
    weights = Path(__file__).parents[1] / "services/inference/lungcad_inference/weights"
    if any(weights.glob("detector*")):
        assert result.returncode == 0, story[-3000:]
        assert "100%" in story and "Findings (job" in story and "finding(s); case:" in story
    else:
        assert "The job ended failed" in story  # no model to run without shipped weights
