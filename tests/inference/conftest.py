"""Fixtures for inference tests: the real shared data (skipped with a reason when absent),
preprocessed once per session into a persistent cache under ``var/cache/tests`` (git-ignored),
and the shipped models loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / "var" / "cache" / "tests"


def shared_data_dir() -> Path:
    env = os.environ.get("LUNGCAD_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT / "../shared/data").resolve()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (set LUNGCAD_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _need(shared_data_dir())


@pytest.fixture(scope="session")
def study_loader(shared_data: Path):  # type: ignore[no-untyped-def]
    from lungcad_inference.data.studies import load_study

    loaded: dict[str, object] = {}

    def load(name: str):  # type: ignore[no-untyped-def]
        if name not in loaded:
            loaded[name] = load_study(_need(shared_data / "ct" / f"{name}.zip"), CACHE)
        return loaded[name]

    return load


@pytest.fixture(scope="session")
def real_vois(shared_data: Path):  # type: ignore[no-untyped-def]
    from lungcad_inference.data.vois import load_vois

    return load_vois(_need(shared_data / "nodules" / "lidc-nodule-vois.zip"), CACHE)


@pytest.fixture(scope="session")
def shipped_models():  # type: ignore[no-untyped-def]
    from lungcad_inference.inference import load_models
    from lungcad_inference.weights import DETECTOR, WEIGHTS_DIR

    if not (WEIGHTS_DIR / f"{DETECTOR}.pt").exists():
        pytest.fail("the shipped detector weights are missing from the package")
    return load_models("cpu", threads=2)
