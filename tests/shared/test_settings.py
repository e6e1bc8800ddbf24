"""Typed settings: embedded defaults under the data dir; placeholder secrets refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungcad.settings import Settings, UnsafeConfigurationError, parse_destination


def test_embedded_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(env="development", data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/lungcad.db"
    assert settings.broker_url == "filesystem://"
    assert settings.objects_dir == tmp_path / "objects"
    settings.check_safe()  # development tolerates the development secret


def test_environment_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LUNGCAD_MAX_FILES=12\nLUNGCAD_S3_BUCKET=from-dotenv\n")
    monkeypatch.setenv("LUNGCAD_S3_BUCKET", "from-env")
    settings = Settings()
    assert settings.max_files == 12 and settings.s3_bucket == "from-env"


@pytest.mark.parametrize("secret", ["", "changeme", "dev-secret-not-for-production", "short"])
def test_production_refuses_placeholder_secrets(tmp_path: Path, secret: str) -> None:
    with pytest.raises(UnsafeConfigurationError, match="LUNGCAD_SECRET_KEY"):
        Settings(env="production", data_dir=tmp_path, secret_key=secret).check_safe()


def test_production_refuses_placeholder_s3_secret(tmp_path: Path) -> None:
    settings = Settings(env="production", data_dir=tmp_path, secret_key="x" * 32,
                        storage_backend="s3", s3_secret_key="minioadmin")
    with pytest.raises(UnsafeConfigurationError, match="S3_SECRET_KEY"):
        settings.check_safe()
    Settings(env="production", data_dir=tmp_path, secret_key="x" * 32).check_safe()


@pytest.mark.parametrize("field", ["database_url", "broker_url"])
def test_production_refuses_placeholder_passwords_in_urls(tmp_path: Path, field: str) -> None:
    urls = {"database_url": "postgresql+psycopg2://lungcad:changethis@postgres/lungcad",
            "broker_url": "redis://:changethis@redis:6379/0"}
    settings = Settings(env="production", data_dir=tmp_path, secret_key="x" * 32,
                        **{field: urls[field]})
    with pytest.raises(UnsafeConfigurationError, match=field.upper()):
        settings.check_safe()


def test_dicom_ae_tenants_and_destinations_parse_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNGCAD_DICOM_AE_TENANTS", "PACS1=radiology, CT2=research")
    monkeypatch.setenv("LUNGCAD_DICOM_DESTINATIONS",
                       "radiology=PACS1@10.0.0.5:104,radiology=ARCH@archive:11112,"
                       "research=ORTHANC@[::1]:4242")
    settings = Settings()
    assert settings.dicom_ae_tenants == {"PACS1": "radiology", "CT2": "research"}
    assert settings.dicom_destinations == {
        "radiology": ["PACS1@10.0.0.5:104", "ARCH@archive:11112"],
        "research": ["ORTHANC@[::1]:4242"]}
    assert parse_destination("ORTHANC@[::1]:4242") == ("ORTHANC", "::1", 4242)


@pytest.mark.parametrize(("name", "value"), [
    ("LUNGCAD_DICOM_AE_TENANTS", "PACS1"),  # no tenant
    ("LUNGCAD_DICOM_AE_TENANTS", "A_TITLE_LONGER_THAN_16=x"),
    ("LUNGCAD_DICOM_AE_TENANTS", "PACS1=../etc"),  # a tenant names a spool folder
    ("LUNGCAD_DICOM_AE_TENANTS", "PACS1=a,PACS1=b"),
    ("LUNGCAD_DICOM_DESTINATIONS", "radiology=PACS1@host"),  # no port
    ("LUNGCAD_DICOM_DESTINATIONS", "radiology=host:104"),  # no AE title
    ("LUNGCAD_DICOM_DESTINATIONS", "radiology=PACS1@host:70000"),
])
def test_bad_dicom_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str,
                                        value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        Settings()
