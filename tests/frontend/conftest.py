"""Fixtures for the dashboard: processed cases and headless Chromium.

Chromium comes from Debian (``apt-get install -y chromium``); Playwright drives it through
``executable_path``. Screenshots go to ``test-artifacts/frontend/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lungcad.findings import FindingsDocument
from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import ROOT, Gateway, make_settings, shared_data_dir, start_gateway
from tests.frontend.cases import findings_for, publish_case, upload

CHROMIUM = Path(os.environ.get("LUNGCAD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "frontend"
REAL_CASE = "LIDC-IDRI-0003"


@dataclass
class Case:
    job_id: str
    result: Preprocessed
    finding_ids: list[str]
    folder: Path  # the study as uploaded (a DICOM folder or a zip)
    document: FindingsDocument
    labels: np.ndarray | None = None  # the findings' masks on the 1 mm grid (finding j: j + 1)


@pytest.fixture(scope="session")
def synthetic_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Preprocessed]:
    """A synthetic chest CT as a DICOM folder, and its real preprocessing."""
    from lungcad.synthetic import make_chest_ct, write_dicom_series
    from lungcad_preprocess.pipeline import preprocess_path

    ct = make_chest_ct(seed=1)
    folder = tmp_path_factory.mktemp("synthetic-dicom")
    # numbered from the head down as many scanners do, so an image number is not a slice index
    write_dicom_series(ct.hu, ct.geometry, folder,
                       instance_numbers=range(ct.hu.shape[0] + 6, 6, -1))
    nodules = [(n.center_lps, n.diameter_mm) for n in ct.nodules]
    result = preprocess_path(folder)
    result.meta["test_nodules"] = nodules
    return folder, result


@pytest.fixture(scope="session")
def real_study() -> tuple[Path, Preprocessed]:
    """A real LIDC study (zip) and its preprocessing; skipped where the shared data is absent."""
    path = shared_data_dir() / "ct" / f"{REAL_CASE}.zip"
    if not path.is_file():
        pytest.skip(f"real CT study not found at {path} (set LUNGCAD_SHARED_DATA)")
    from lungcad_preprocess.pipeline import preprocess_path

    return path, preprocess_path(path)


def add_case(gateway: Gateway, study: tuple[Path, Preprocessed],
             nodules: list[tuple[tuple[float, float, float], float]],
             dicom_reports: bool = False) -> Case:
    """A succeeded job; with ``dicom_reports`` (a study uploaded as a DICOM folder) its result
    files include the DICOM SR and SEG, as the inference worker writes them for DICOM input."""
    path, result = study
    job = upload(gateway, path)
    output = findings_for(result, nodules, job["id"], path if dicom_reports else None)
    publish_case(gateway, job["id"], result, output)
    document = output.result.document
    return Case(job["id"], result, [f.id for f in document.findings], path, document,
                output.result.labels)


def synthetic_nodules(result: Preprocessed) -> list[tuple[tuple[float, float, float], float]]:
    return [(tuple(c), d) for c, d in result.meta["test_nodules"]]


@pytest.fixture()
def synthetic_case(gateway: Gateway, synthetic_study: tuple[Path, Preprocessed]) -> Case:
    """A succeeded job on the gateway of the current mode (embedded or production)."""
    return add_case(gateway, synthetic_study, synthetic_nodules(synthetic_study[1]))


@pytest.fixture()
def synthetic_case_with_seg(gateway: Gateway, synthetic_study: tuple[Path, Preprocessed]
                            ) -> Case:
    """The synthetic case with the DICOM SR and SEG among its result files."""
    return add_case(gateway, synthetic_study, synthetic_nodules(synthetic_study[1]),
                    dicom_reports=True)


def _dashboard(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
               study: tuple[Path, Preprocessed], dicom_reports: bool
               ) -> Iterator[tuple[Gateway, Case]]:
    settings = make_settings("embedded", tmp_path_factory.mktemp("dashboard"), request)
    server, gateway = start_gateway(settings, run_relay=False)
    try:
        yield gateway, add_case(gateway, study, synthetic_nodules(study[1]),
                                dicom_reports=dicom_reports)
    finally:
        server.__exit__()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
              synthetic_study: tuple[Path, Preprocessed]) -> Iterator[tuple[Gateway, Case]]:
    """An embedded gateway (serving the dashboard at /) holding the synthetic case."""
    yield from _dashboard(tmp_path_factory, request, synthetic_study, dicom_reports=False)


@pytest.fixture(scope="module")
def seg_dashboard(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
                  synthetic_study: tuple[Path, Preprocessed]) -> Iterator[tuple[Gateway, Case]]:
    """An embedded gateway holding the synthetic case with its DICOM SR and SEG."""
    yield from _dashboard(tmp_path_factory, request, synthetic_study, dicom_reports=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})  # type: ignore[attr-defined]
    errors: list[str] = []
    pg = context.new_page()
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS
