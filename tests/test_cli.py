"""The ``lungcad`` console commands, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

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


def test_analyze_refuses_what_the_gateway_refuses_with_its_code_and_sentence(
        tmp_path: Path) -> None:
    import pydicom

    from lungcad.errors import InvalidInput
    from lungcad.ingest.inspect import UploadPart, inspect_upload
    from lungcad.settings import Settings
    from tests.factories import ct_series, metaimage

    study = tmp_path / "study"
    paths = ct_series(study, n=3)
    headless = pydicom.dcmread(paths[1])
    del headless.PixelData
    headless.save_as(paths[1])
    (study / "notes.txt").write_text("a stray file in the folder is skipped, as in a zip")
    _, raw = metaimage(tmp_path / "volume")
    settings = Settings(env="development", data_dir=tmp_path / "data")
    for given, parts in ((study, [paths[1]]), (raw, [raw])):
        with pytest.raises(InvalidInput) as refused:
            inspect_upload([UploadPart(p, p.name, p.stat().st_size) for p in parts], settings)
        gateway = f"{refused.value.code}: {refused.value.message}"
        result = run(["analyze", str(given), "--out", str(tmp_path / "out")], tmp_path)
        assert result.returncode == 1, result.stderr
        assert " ".join(result.stderr.split()).endswith(gateway), (result.stderr, gateway)
