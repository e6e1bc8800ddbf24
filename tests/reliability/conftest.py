"""Shared helpers of the reliability suite (issue 7): faults and hostile input against the real
Postgres, Redis and S3 server of this machine.

Each test prints its figures (``FIGURES <name>: ...``) and appends them to
``test-artifacts/reliability/figures.jsonl``. Tests marked ``soak`` are the long versions: they
run only when the marker expression names them (``pytest -m soak tests/reliability``); the
default run has a short version of each.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy import func, select

from lungcad import synthetic
from lungcad.db.models import Artifact, FindingRow
from lungcad.settings import Settings
from tests.conftest import (
    ROOT,
    ChildProcess,
    create_api_key,
    free_port,
    make_settings,
    start_gateway,
    wait_until_http_ok,
)

FIGURES = ROOT / "test-artifacts" / "reliability" / "figures.jsonl"
TERMINAL = {"succeeded", "failed", "canceled"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="long version: run with -m soak")
    here = Path(__file__).parent
    for item in items:
        if "soak" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


def report(name: str, **figures: Any) -> None:
    """Print a test's figures and keep them for docs/reliability.md."""
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nFIGURES {name}: {line}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as fh:
        fh.write(json.dumps({"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             **figures}, default=str) + "\n")


def prod_settings(tmp_path: Path, request: pytest.FixtureRequest, **overrides: Any) -> Settings:
    """Postgres + Redis + S3 (the session's servers) with fast relay/sweeper loops."""
    return make_settings("production", tmp_path, request, **overrides)


@pytest.fixture()
def prod_gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    server, gw = start_gateway(prod_settings(tmp_path, request))
    try:
        yield gw
    finally:
        server.__exit__()


def tiny_ct_zip(seed: int = 0, n: int = 24, size: int = 64) -> bytes:
    """A small synthetic chest CT as a zip of DICOM files (made here, no patient data)."""
    import tempfile

    geometry = synthetic.default_geometry(shape=(n, size, size),
                                          spacing=(96 * 2.5 / n, 192 * 1.8 / size,
                                                   192 * 1.8 / size))
    case = synthetic.make_chest_ct(geometry=geometry, seed=seed)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        synthetic.write_dicom_series(case.hu, case.geometry, Path(tmp), patient_age="060Y",
                                     patient_sex="F")
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).glob("*.dcm")):
                zf.write(path, f"ct/{path.name}")
    return buffer.getvalue()


def submit(client: httpx.Client, payload: bytes, name: str = "study.zip",
           **headers: str) -> httpx.Response:
    return client.post("/v1/jobs", files=[("files", (name, payload))], headers=headers)


def wait_jobs(client: httpx.Client, ids: list[str], done: Any, timeout: float) -> dict[str, dict]:
    """Poll until ``done(job)`` holds for every job or ``timeout`` passes; the last states."""
    deadline = time.monotonic() + timeout
    jobs: dict[str, dict] = {}
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            response = client.get(f"/v1/jobs/{job_id}")
            if response.status_code == 200:
                jobs[job_id] = response.json()
                if done(jobs[job_id]):
                    pending.remove(job_id)
        if pending:
            time.sleep(0.5)
    for job_id in pending:
        jobs.setdefault(job_id, client.get(f"/v1/jobs/{job_id}").json())
    return jobs


def preprocessed(job: dict) -> bool:
    """The preprocess stage is done: the job went on to inference, or ended."""
    return job["state"] in TERMINAL or job["state"] == "inferring"


class ChaosWorker(ChildProcess):
    """A real Celery worker (``tests.reliability.chaos_worker``) that records every stage run in
    a ledger and can be told to misbehave (see that module)."""

    def __init__(self, settings: Settings, queues: str, ledger: Path, name: str = "w",
                 extra_env: dict[str, str] | None = None) -> None:
        env = {"LUNGCAD_CHAOS_LEDGER": str(ledger), **(extra_env or {})}
        super().__init__(settings, ["tests.reliability.chaos_worker", "-Q", queues,
                                    "-n", f"{name}-{queues.replace(',', '-')}@%h"],
                         f"chaos-{name}", env)


class GatewayProcess(ChildProcess):
    """``lungcad serve`` (no workers, its relay in process) on a free loopback port, migrated
    and with an API key, in its own process: a gateway the test can SIGKILL. ``module``: the CLI
    to run it with (``tests.reliability.chaos_relay`` for an instrumented relay)."""

    def __init__(self, settings: Settings, module: str = "lungcad.cli",
                 extra_env: dict[str, str] | None = None) -> None:
        from lungcad_gateway.migrate import upgrade

        upgrade(settings)
        self.key = create_api_key(settings, "hospital-a")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(settings, [module, "serve", "--host", "127.0.0.1", "--port",
                                    str(self.port), "--no-workers", "--no-migrate"],
                         "gateway", extra_env)
        if not wait_until_http_ok(f"{self.url}/healthz", self.alive):
            self.kill()
            raise RuntimeError(f"gateway did not start: {self.output()[-2000:]}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"},
                            timeout=60)


PAUSE_S = 0.02  # between one upload thread's requests


class Answer(NamedTuple):
    """One upload's answer. ``status`` 0 is an exception, with its name in ``code``: a reset,
    a refused connection, a timeout."""

    start: float  # time.monotonic() when sent
    status: int
    seconds: float
    retry_after: str | None
    job_id: str | None  # of a 202
    code: str | None  # the problem's code


class Uploads:
    """Threads that each POST ``files`` to /v1/jobs in a loop until stopped; one
    :class:`Answer` per request in ``answers``."""

    def __init__(self, client: Any, files: list[tuple[str, tuple[str, bytes]]],
                 threads: int = 3, timeout_s: float = 30.0) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._client, self._files, self._timeout = client, files, timeout_s
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with self._client() as client:
            client.timeout = httpx.Timeout(self._timeout)
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    r = client.post("/v1/jobs", files=self._files)
                    body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
                    self.answers.append(Answer(t, r.status_code, time.monotonic() - t,
                                               r.headers.get("retry-after"),
                                               body.get("id") if r.status_code == 202 else None,
                                               body.get("code")))
                except Exception as exc:  # noqa: BLE001 - a hang or reset is an answer here
                    self.answers.append(Answer(t, 0, time.monotonic() - t, None, None,
                                               type(exc).__name__))
                self._stop.wait(PAUSE_S)

    def accepted(self) -> list[str]:
        return [a.job_id for a in self.answers if a.job_id]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def read_ledger(ledger: Path) -> list[dict]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


def edit_zip(payload: bytes, edit: Any, first_only: bool = False) -> bytes:
    """A copy of a zip of DICOM files with ``edit(dataset)`` applied to each (or the first)."""
    import pydicom

    source = zipfile.ZipFile(io.BytesIO(payload))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for index, name in enumerate(source.namelist()):
            data = source.read(name)
            if index == 0 or not first_only:
                ds = pydicom.dcmread(io.BytesIO(data))
                edit(ds)
                raw = io.BytesIO()
                ds.save_as(raw)
                data = raw.getvalue()
            out.writestr(name, data)
    return buffer.getvalue()


def marked_zip(marker: str, seed: int = 0) -> bytes:
    """:func:`tiny_ct_zip` with ``marker`` in one file's ImageComments (see chaos_worker)."""
    return edit_zip(tiny_ct_zip(seed), lambda ds: setattr(ds, "ImageComments", marker),
                    first_only=True)


def fault_settings(tmp_path: Path, request: pytest.FixtureRequest, **overrides: Any) -> Settings:
    """Production settings for the fault tests: a short lease and a fast sweeper."""
    fields: dict[str, Any] = {"lease_s": 3.0, "sweep_interval_s": 0.5, "relay_interval_s": 0.1,
                              "max_attempts": 3,
                              "rate_limit_per_s": 0, "preprocess_timeout_s": 60}
    fields.update(overrides)
    return prod_settings(tmp_path, request, **fields)


def result_counts(sessions: Any) -> tuple[Counter[str], int]:
    """Findings documents per job ID, and how many findings were stored more than once (a
    stage that completed twice would leave either)."""
    with sessions() as session:
        findings = Counter(session.scalars(select(Artifact.job_id).where(
            Artifact.name == "findings.json")))
        duplicates = session.scalar(select(func.count()).select_from(
            select(FindingRow.job_id, FindingRow.finding_id)
            .group_by(FindingRow.job_id, FindingRow.finding_id)
            .having(func.count() > 1).subquery())) or 0
    return findings, duplicates


def stage_runs(entries: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Ledger entries grouped by (job, stage): [{start, end, ok, pid, attempt}]."""
    runs: dict[tuple[str, str], list[dict]] = {}
    open_runs: dict[tuple[int, str, str], dict] = {}
    for e in entries:
        if e["event"] not in ("start", "end"):
            continue
        key = (e["job"], e["stage"])
        if e["event"] == "start":
            run = {"start": e["t"], "end": None, "ok": None, "pid": e["pid"],
                   "attempt": e["attempt"]}
            runs.setdefault(key, []).append(run)
            open_runs[(e["pid"], *key)] = run
        else:
            run = open_runs.pop((e["pid"], *key), None)
            if run is not None:
                run["end"], run["ok"] = e["t"], e["ok"]
    return runs


def overlapping(runs: list[dict], now: float, killed_at: dict[int, float] | None = None) -> bool:
    """Two runs of one job stage alive at the same time (a killed run ends at its kill)."""
    killed_at = killed_at or {}
    spans = sorted((r["start"], r["end"] or killed_at.get(r["pid"]) or now) for r in runs)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


class PrivatePostgres:
    """A disposable Postgres server of this machine's version: own data dir, own port (the
    shared server on 5432 is never touched). Runs as the ``postgres`` user when we are root."""

    def __init__(self) -> None:
        import glob
        import shutil
        import tempfile

        # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
        folder = Path(tempfile.mkdtemp(prefix="lungcad-pg-"))

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        self.bin = Path(found[-1]).parent if found else Path(shutil.which("pg_ctl") or "").parent
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self._psql("CREATE DATABASE lungcad")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/lungcad"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as_user, str(self.bin / tool), *args], check=True,  # noqa: S603
                       capture_output=True, timeout=120)

    def _psql(self, sql: str) -> None:
        subprocess.run([*self._as_user, str(self.bin / "psql"), "-h", "127.0.0.1", "-p",  # noqa: S603
                        str(self.port), "-U", "postgres", "-c", sql], check=True,
                       capture_output=True, timeout=60)

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
                   "-c fsync=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        import shutil

        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """A disposable redis-server on its own port, with or without AOF persistence."""

    def __init__(self, folder: Path, appendonly: bool = True) -> None:
        self.folder = folder
        self.port = free_port()
        self.appendonly = appendonly
        folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(  # noqa: S603
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: a clean shutdown (AOF flushed)
            self.process.wait(timeout=20)
