"""Fixtures for preprocessing tests: a synthetic chest CT (always) and the real shared studies
(session-scoped, extracted once into a temporary folder, skipped with a reason when absent)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from lungcad.synthetic import SyntheticCT, make_chest_ct, write_dicom_series

REPO_ROOT = Path(__file__).resolve().parents[2]
STUDIES = ("LIDC-IDRI-0001", "LIDC-IDRI-0003", "QIN-LSC-0014", "QIN-LSC-0088")


def shared_data_dir() -> Path:
    env = os.environ.get("LUNGCAD_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT / "../shared/data").resolve()


@pytest.fixture(scope="session")
def synthetic_ct() -> SyntheticCT:
    return make_chest_ct(seed=1)


@pytest.fixture(scope="session")
def synthetic_series(tmp_path_factory: pytest.TempPathFactory, synthetic_ct: SyntheticCT) -> Path:
    folder = tmp_path_factory.mktemp("synthetic-series")
    write_dicom_series(synthetic_ct.hu, synthetic_ct.geometry, folder)
    return folder


@pytest.fixture(scope="session")
def synthetic_result(synthetic_series: Path):
    from lungcad_preprocess.pipeline import preprocess_path

    return preprocess_path(synthetic_series)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "ct").is_dir():
        pytest.skip(f"shared real data not found at {root} (set LUNGCAD_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def real_study_dirs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """Each real study zip extracted once per session into a temporary folder (never the repo)."""
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
def real_results(real_study_dirs: dict[str, Path]):
    """The preprocessed real studies, computed once per session."""
    from lungcad_preprocess.pipeline import preprocess_path

    return {name: preprocess_path(folder) for name, folder in real_study_dirs.items()}
