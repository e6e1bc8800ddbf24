"""Fixtures for preprocessing tests: a synthetic chest CT. The real shared studies
(``shared_data``, ``real_study_dirs``, ``real_results``) live in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungcad.synthetic import SyntheticCT, make_chest_ct, write_dicom_series
from tests.conftest import STUDIES, shared_data_dir  # noqa: F401 - re-exported for tests


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
