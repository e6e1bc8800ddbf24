"""Fixtures for the real services this suite talks to.

- Postgres on 127.0.0.1:5432 (a fresh database per test session, dropped at the end);
- Redis on 127.0.0.1:6379 (database 11, flushed per test);
- an S3-protocol server (moto's standalone server, started here as a subprocess; MinIO's
  server cannot be installed on this machine);
- a real uvicorn server on a loopback port for the gateway.

Two configurations run the API tests: ``embedded`` (SQLite, local store, file broker) and
``production`` (Postgres, S3, Redis).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
import pytest
import redis
import uvicorn

from lungcad.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_DSN = os.environ.get("LUNGCAD_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres "
                              "dbname=postgres")
# A Redis database of its own per test session (two suites on one machine must not consume
# each other's messages).
REDIS_TEST_URL = os.environ.get("LUNGCAD_TEST_REDIS_URL",
                                f"redis://127.0.0.1:6379/{secrets.randbelow(15) + 1}")


STUDIES = ("LIDC-IDRI-0001", "LIDC-IDRI-0003", "QIN-LSC-0014", "QIN-LSC-0088")


def shared_data_dir() -> Path:
    return Path(os.environ.get("LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "ct").is_dir():
        pytest.skip(f"shared real data not found at {root} (set LUNGCAD_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def real_study_dirs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path
                    ) -> dict[str, Path]:
    """Each real study zip extracted once per session into a temporary folder (never the repo)."""
    import zipfile

    out = {}
    for name in STUDIES:
        archive = shared_data / "ct" / f"{name}.zip"
        if not archive.exists():
            pytest.skip(f"{archive} is missing")
        dest = tmp_path_factory.mktemp(name)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
        out[name] = dest
    return out


@pytest.fixture(scope="session")
def real_results(real_study_dirs: dict[str, Path]):  # type: ignore[no-untyped-def]
    """The preprocessed real studies, computed once per session."""
    from lungcad_preprocess.pipeline import preprocess_path

    return {name: preprocess_path(folder) for name, folder in real_study_dirs.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_http_ok(url: str, alive: Callable[[], bool], timeout_s: float = 60) -> bool:
    """Poll ``url`` until it answers 200 (True); False once ``alive()`` is False or the time is
    up (a server process that died or never came up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh Postgres database for this test session."""
    name = f"lungcad_test_{secrets.token_hex(4)}"
    admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=3)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture()
def pg_url(pg_server_url: str) -> Iterator[str]:
    """The session database, reset to an empty schema for each test."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_server_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public;"))
    engine.dispose()
    yield pg_server_url


@pytest.fixture()
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def start(self) -> None:
        self.process = _start_moto(self.port)


def _start_moto(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the S3 test server did not start")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    server = S3Server(f"127.0.0.1:{port}", _start_moto(port), port)
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture()
def s3_settings_fields(s3_server: S3Server) -> dict[str, object]:
    from lungcad.storage.s3 import S3Store

    bucket = f"lungcad-{secrets.token_hex(4)}"
    fields: dict[str, object] = {
        "storage_backend": "s3", "s3_endpoint": s3_server.endpoint, "s3_access_key": "testing",
        "s3_secret_key": "testing-secret-key", "s3_bucket": bucket, "s3_secure": False}
    S3Store(s3_server.endpoint, "testing", "testing-secret-key", bucket).ensure_bucket()
    return fields


def make_settings(mode: str, tmp_path: Path, request: pytest.FixtureRequest,
                  **overrides: object) -> Settings:
    fields: dict[str, object] = {"env": "development", "data_dir": tmp_path / "data",
                                 "sweep_interval_s": 0.5, "relay_interval_s": 0.1}
    if mode == "production":
        fields.update(request.getfixturevalue("s3_settings_fields"))
        fields["database_url"] = request.getfixturevalue("pg_url")
        fields["broker_url"] = request.getfixturevalue("redis_url")
    fields.update(overrides)
    return Settings(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["embedded", "production"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def settings(mode: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(mode, tmp_path, request)


class LiveServer:
    """The gateway app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,  # type: ignore[arg-type]
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Gateway:
    url: str
    settings: Settings
    app: object
    key: str
    tenant_id: str

    def client(self, key: str | None = "default", **kwargs: object) -> httpx.Client:
        headers = {}
        if key == "default":
            key = self.key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def new_key(self, tenant: str) -> str:
        return create_api_key(self.settings, tenant)

    @property
    def runtime(self):  # type: ignore[no-untyped-def]
        return self.app.state.runtime  # type: ignore[attr-defined]


def create_api_key(settings: Settings, tenant: str) -> str:
    from lungcad.db.session import make_engine, make_sessionmaker, session_scope
    from lungcad_gateway.auth import create_key

    engine = make_engine(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            _, key = create_key(session, tenant)
    finally:
        engine.dispose()
    return key


def start_gateway(settings: Settings, run_relay: bool = True) -> tuple[LiveServer, Gateway]:
    from lungcad_gateway.app import create_app
    from lungcad_gateway.migrate import upgrade

    upgrade(settings)
    key = create_api_key(settings, "hospital-a")
    app = create_app(settings, run_relay=run_relay)
    server = LiveServer(app)
    server.__enter__()
    with app.state.runtime.sessions() as session:
        from lungcad.db.models import Tenant

        tenant_id = session.query(Tenant).filter_by(name="hospital-a").one().id
    return server, Gateway(server.url, settings, app, key, tenant_id)


@pytest.fixture()
def gateway(settings: Settings) -> Iterator[Gateway]:
    server, gw = start_gateway(settings)
    try:
        yield gw
    finally:
        server.__exit__()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process (a worker, ``lungcad serve``) these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGCAD_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, list | dict):
            import json

            value = json.dumps(value)
        env[f"LUNGCAD_{name.upper()}"] = str(value)
    return env


class ChildProcess:
    """``python -m <argv>`` in its own process with ``settings`` (a worker, a relay, a gateway),
    its output in a log file under the data folder."""

    def __init__(self, settings: Settings, argv: list[str], name: str,
                 extra_env: dict[str, str] | None = None) -> None:
        env = settings_env(settings)
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env.update(extra_env or {})
        self.log = settings.data_dir / f"{name}-{time.monotonic_ns()}.log"
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", *argv], env=env, cwd=ROOT, stdout=open(self.log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class WorkerProcess(ChildProcess):
    """A real Celery worker (``lungcad worker``) in its own process."""

    def __init__(self, settings: Settings, queues: str = "preprocess,inference",
                 pool: str = "solo") -> None:
        super().__init__(settings, ["lungcad.cli", "worker", "--queues", queues, "--pool", pool],
                         "worker")
