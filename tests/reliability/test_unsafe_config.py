"""Unsafe configurations refuse to start: placeholder secrets outside development, and
development mode (which accepts them) on a non-loopback bind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lungcad.settings import Settings, UnsafeConfigurationError
from tests.conftest import ROOT, free_port
from tests.reliability.conftest import report


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "lungcad.example.org"])
def test_development_mode_refuses_a_public_bind(tmp_path: Path, host: str) -> None:
    settings = Settings(env="development", data_dir=tmp_path)
    with pytest.raises(UnsafeConfigurationError, match="loopback"):
        settings.check_safe(bind_host=host)
    for loopback in ("127.0.0.1", "::1", "localhost", "[::1]"):
        settings.check_safe(bind_host=loopback)


def test_deidentification_needs_a_real_salt(tmp_path: Path) -> None:
    base = {"env": "production", "data_dir": tmp_path, "secret_key": "x" * 32,
            "deidentify_originals": True}
    for salt in ("", "changeme", "short"):
        with pytest.raises(UnsafeConfigurationError, match="DEID_UID_SALT"):
            Settings(**base, deid_uid_salt=salt).check_safe()
    Settings(**base, deid_uid_salt="s" * 32).check_safe()


@pytest.mark.parametrize(("env", "host", "refused"), [
    ({"LUNGCAD_ENV": "production"}, "127.0.0.1", "LUNGCAD_SECRET_KEY"),
    ({"LUNGCAD_ENV": "development"}, "0.0.0.0", "loopback"),
])
def test_lungcad_serve_refuses_to_start(tmp_path: Path, env: dict[str, str], host: str,
                                        refused: str) -> None:
    environ = {"PATH": "/usr/bin:/bin", "LUNGCAD_DATA_DIR": str(tmp_path), **env}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "lungcad.cli", "serve", "--host", host, "--port",
         str(free_port()), "--no-workers"], env=environ, cwd=tmp_path, capture_output=True,
        text=True, timeout=120)
    assert result.returncode != 0 and refused in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "lungcad.db").exists()  # refused before touching anything
    report(f"unsafe_config[{env['LUNGCAD_ENV']}@{host}]", exit_code=result.returncode,
           refused=refused, root=str(ROOT.name))
