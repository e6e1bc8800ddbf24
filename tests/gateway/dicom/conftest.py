"""The DICOM listener as a real process (``lungcad dicom-listen``) and dcmtk's tools as the
sending modality."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lungcad.settings import Settings
from tests.conftest import ChildProcess, free_port, make_settings, wait_until_http_ok

AE_TITLE = "LUNGCAD"
CALLING = "PACS1"
TENANT = "radiology"


def dcmtk(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"dcmtk's {tool} is not installed (make test runs "
                    "scripts/ensure-debian-package.sh; or apt-get install -y dcmtk)")
    return path


class ListenerProcess:
    def __init__(self, settings: Settings, port: int, quiet_period_s: float) -> None:
        self.settings = settings
        self.port = port
        self.child = ChildProcess(settings, ["lungcad.cli", "dicom-listen", "--host",
                                             "127.0.0.1", "--port", str(port),
                                             "--quiet-period", str(quiet_period_s)],
                                  "dicom-listener")
        deadline = time.monotonic() + 60
        while self.echo().returncode != 0:
            if time.monotonic() > deadline or not self.child.alive():
                self.child.kill()
                raise RuntimeError("the listener did not start:\n" + self.child.output())
            time.sleep(0.2)

    def echo(self, calling: str | None = None) -> subprocess.CompletedProcess[str]:
        calling = calling or next(iter(self.settings.dicom_ae_tenants))
        return subprocess.run([dcmtk("echoscu"), "-aet", calling, "-aec", AE_TITLE, "-to", "10",
                               "127.0.0.1", str(self.port)], capture_output=True, text=True,
                              timeout=60, check=False)

    def store(self, *paths: Path, calling: str = CALLING) -> subprocess.CompletedProcess[str]:
        """storescu: every file on one association, in the order given (folders scanned)."""
        argv = [dcmtk("storescu"), "-v", "-aet", calling, "-aec", AE_TITLE, "-to", "30",
                "+sd", "+r", "127.0.0.1", str(self.port), *map(str, paths)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)

    def kill(self) -> None:
        self.child.kill()

    def stop(self) -> None:
        self.child.stop()


class ListenerFactory:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.started: list[ListenerProcess] = []

    def start(self, quiet_period_s: float = 1.0) -> ListenerProcess:
        listener = ListenerProcess(self.settings, self.port, quiet_period_s)
        self.started.append(listener)
        return listener


@pytest.fixture()
def dicom_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    from lungcad_gateway.migrate import upgrade

    settings = make_settings("embedded", tmp_path, request,
                             dicom_ae_tenants={CALLING: TENANT, "CT2": "research"})
    upgrade(settings)
    return settings


@pytest.fixture()
def listeners(dicom_settings: Settings) -> Iterator[ListenerFactory]:
    dcmtk("storescu")
    factory = ListenerFactory(dicom_settings)
    try:
        yield factory
    finally:
        for listener in factory.started:
            listener.stop()


class Orthanc:
    """A private Orthanc (the PACS): its own configuration, storage and ports."""

    def __init__(self, folder: Path, modalities: dict[str, list[object]]) -> None:
        import json

        executable = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not Path(executable).exists():
            pytest.skip("Orthanc is not installed (make test runs "
                        "scripts/ensure-debian-package.sh; or apt-get install -y orthanc)")
        folder.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config = {"Name": "lungcad-test-pacs", "StorageDirectory": str(folder / "db"),
                  "IndexDirectory": str(folder / "db"), "HttpPort": self.http_port,
                  "DicomPort": self.dicom_port, "DicomAet": "ORTHANC",
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                  "Plugins": [], "DicomModalities": modalities, "StableAge": 1,
                  "DicomScuTimeout": 30}
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = folder / "orthanc.log"
        self.process = subprocess.Popen([executable, str(folder / "orthanc.json")],  # noqa: S603
                                        stdout=open(self.log, "wb"),  # noqa: SIM115
                                        stderr=subprocess.STDOUT, cwd=folder)
        if not wait_until_http_ok(f"{self.url}/system", lambda: self.process.poll() is None):
            self.stop()
            raise RuntimeError("Orthanc did not start:\n" + self.log.read_text())

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
