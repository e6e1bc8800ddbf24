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


def _children(pid: int) -> set[int]:
    """The live (non-zombie) processes whose parent is ``pid``, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent_and_state(int(entry.name))[0] == pid:
            found.add(int(entry.name))
    return found


def _parent_and_state(pid: int) -> tuple[int | None, str | None]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0]


def _alive(pid: int) -> bool:
    state = _parent_and_state(pid)[1]
    return state is not None and state != "Z"


def test_sigterm_to_serve_stops_its_workers(tmp_path: Path) -> None:
    """Compose and systemd stop ``lungcad serve`` with SIGTERM: its Celery workers must stop
    with it (they were left running under PID 1), and it exits 0 after a clean shutdown."""
    import signal
    import time

    from tests.conftest import free_port

    port = free_port()
    log = tmp_path / "serve.log"
    environment = {**os.environ, "LUNGCAD_DATA_DIR": str(tmp_path / "data"),
                   "LUNGCAD_ENV": "development"}
    with open(log, "wb") as out:
        serve = subprocess.Popen(LUNGCAD + ["serve", "--port", str(port), "--workers"],  # noqa: S603
                                 env=environment, cwd=tmp_path, stdout=out,
                                 stderr=subprocess.STDOUT)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while len(workers) < 2 or log.read_text(errors="replace").count(" ready.") < 2:
            assert serve.poll() is None and time.monotonic() < deadline, \
                log.read_text(errors="replace")[-3000:]
            workers |= _children(serve.pid)
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=120) == 0, log.read_text(errors="replace")[-3000:]
        survivors = {pid for pid in workers if _alive(pid)}
        assert survivors == set(), log.read_text(errors="replace")[-3000:]
    finally:
        for pid in [serve.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        serve.wait(timeout=30)


def test_webhook_secret_is_printed_and_rotated_with_an_overlap(tmp_path: Path) -> None:
    """``admin webhook-secret`` prints the secret that signs the tenant's webhooks (it could
    only be read from the database); ``--rotate`` makes a new one and keeps the old one
    signing for the overlap (none with ``--overlap-s 0``)."""
    from lungcad.db.models import Tenant
    from lungcad.db.session import make_engine, make_sessionmaker
    from lungcad.db.types import utcnow
    from lungcad.settings import Settings

    def secret_rows() -> Tenant:
        engine = make_engine(Settings(env="development", data_dir=tmp_path / "data"))
        try:
            with make_sessionmaker(engine)() as session:
                return session.query(Tenant).filter_by(name="radiology").one()
        finally:
            engine.dispose()

    def webhook_secret(*args: str) -> subprocess.CompletedProcess[str]:
        return run(["admin", "webhook-secret", "--tenant", "radiology", *args], tmp_path,
                   LUNGCAD_ENV="development")

    assert run(["migrate"], tmp_path, LUNGCAD_ENV="development").returncode == 0
    assert run(["admin", "create-key", "--tenant", "radiology"], tmp_path,
               LUNGCAD_ENV="development").returncode == 0
    shown = webhook_secret()
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.strip().splitlines()[-1]
    assert first == secret_rows().webhook_secret and len(first) == 64

    rotated = webhook_secret("--rotate")
    assert rotated.returncode == 0, rotated.stderr
    second = rotated.stdout.strip().splitlines()[-1]
    tenant = secret_rows()
    assert second != first and tenant.webhook_secret == second
    assert tenant.previous_webhook_secret == first
    overlap = (tenant.previous_webhook_secret_until - utcnow()).total_seconds()
    assert 6 * 24 * 3600 < overlap <= 7 * 24 * 3600, overlap
    assert "until" in rotated.stdout
    assert webhook_secret().stdout.strip().splitlines()[-1] == second

    third = webhook_secret("--rotate", "--overlap-s", "0").stdout.strip().splitlines()[-1]
    tenant = secret_rows()
    assert (tenant.webhook_secret, tenant.previous_webhook_secret) == (third, None)

    missing = run(["admin", "webhook-secret", "--tenant", "nobody"], tmp_path,
                  LUNGCAD_ENV="development")
    assert missing.returncode == 1 and "No tenant 'nobody'" in missing.stderr


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
