"""The ``lungcad`` console commands, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

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
    lines = {}
    for setting in ("true", "false"):
        port = free_port()
        env = {**os.environ, "LUNGCAD_DATA_DIR": str(tmp_path / setting),
               "LUNGCAD_ENV": "development", "LUNGCAD_ACCESS_LOG": setting}
        server = subprocess.Popen(LUNGCAD + ["serve", "--port", str(port), "--no-workers"],  # noqa: S603
                                  env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                        break
                except httpx.HTTPError:
                    pass
                assert server.poll() is None, "lungcad serve exited"
                time.sleep(0.1)
            assert httpx.get(f"http://127.0.0.1:{port}/v1/jobs/x").status_code == 401
        finally:
            server.terminate()
            output = server.communicate(timeout=30)[0]
        lines[setting] = [line for line in output.splitlines() if '"GET /v1/jobs/x' in line]
    assert len(lines["true"]) == 1 and "401" in lines["true"][0], lines
    assert lines["false"] == []
