"""One typed settings object for every LungCAD process.

Values come from the environment (prefix ``LUNGCAD_``) or a ``.env`` file. The embedded default
keeps every piece of state under ``LUNGCAD_DATA_DIR``: a SQLite file, a local object store and a
file-system broker, so the product runs with no servers installed.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "changethis", "secret", "minioadmin",
                                 "dev-secret-not-for-production"})
DEV_SECRET = "dev-secret-not-for-production"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class StorageBackend(StrEnum):
    LOCAL = "local"
    S3 = "s3"


class UnsafeConfigurationError(RuntimeError):
    """Raised at start-up when the configuration is not safe to run outside development."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LUNGCAD_", env_file=".env", extra="ignore")

    env: Environment = Environment.PRODUCTION
    data_dir: Path = Path("./var")

    # Secrets. ``secret_key`` signs dashboard sessions; no usable default outside development.
    secret_key: str = DEV_SECRET

    # Database: empty means the embedded SQLite file under data_dir.
    database_url: str = ""
    db_connect_timeout_s: int = 2
    db_statement_timeout_ms: int = 15_000

    # Broker: empty means kombu's file-system transport under data_dir.
    broker_url: str = ""
    # Redis: an unacknowledged message is redelivered after this many seconds; 0 means
    # task_time_limit_s + 300. The job lease keeps a redelivered copy from running while the
    # first run is alive.
    broker_visibility_timeout_s: int = Field(default=0, ge=0)

    # Object storage.
    storage_backend: StorageBackend = StorageBackend.LOCAL
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "lungcad"
    s3_secure: bool = False
    s3_region: str = "us-east-1"

    # Upload limits.
    max_upload_bytes: int = 2 * 1024**3
    max_files: int = 4000
    max_form_fields: int = 20
    max_zip_entries: int = 20_000
    max_zip_expanded_bytes: int = 8 * 1024**3
    max_zip_ratio: float = 100.0
    upload_spool_dir: Path | None = None

    # Jobs.
    max_attempts: int = 3
    stage_deadline_s: int = 1800
    queued_deadline_s: int = 6 * 3600
    task_soft_time_limit_s: int = 900
    task_time_limit_s: int = 960
    sweep_interval_s: float = 30.0
    relay_interval_s: float = 0.5
    # A worker's lease on a job: renewed every lease_s / 3 while it runs; the sweeper
    # re-dispatches a job whose lease expired (worker killed, host lost).
    lease_s: float = Field(default=90.0, gt=0)

    # ``lungcad serve`` with embedded workers: on SIGTERM or SIGINT each worker gets SIGTERM
    # (a warm shutdown: the running task may finish) and this long in all, then SIGKILL (an
    # unfinished task is redelivered).
    worker_stop_grace_s: float = Field(default=15.0, gt=0)

    # Preprocessing.
    preprocess_spacing_mm: float = 1.0
    preprocess_crop_margin_mm: float = 10.0
    preprocess_min_slices: int = 10
    preprocess_threads: int = 0  # 0: the CPU count
    # the learned lung mask adds masses the classical mask cuts out (docs/preprocessing.md)
    preprocess_learned_lung_mask: bool = True
    preprocess_memory_limit_bytes: int = 6 * 1024**3
    preprocess_timeout_s: int = 600  # below task_soft_time_limit_s

    # De-identification of stored DICOM originals (PS3.15 basic profile) by the preprocess
    # worker. The salt makes the UID mapping stable; it is a secret (refused when a placeholder
    # outside development).
    deidentify_originals: bool = False
    deid_uid_salt: str = ""

    # Inference.
    inference_threads: int = 0  # 0: the CPU count (CPU fallback only)
    inference_device: str = ""  # "" picks cuda when present, else cpu

    # Retention: delete stored studies and results this many days after a job ends (0: keep).
    retention_days: int = 0
    # Stored objects of job ids with no row (uploads refused in a storage outage) are deleted
    # when still unreferenced this many seconds later (0: never).
    unreferenced_sweep_interval_s: float = 3600.0

    # Webhooks.
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff_base_s: float = 2.0
    webhook_backoff_max_s: float = 3600.0
    webhook_poll_interval_s: float = 1.0
    # After ``lungcad admin webhook-secret --rotate`` the previous secret also signs webhooks
    # (X-LungCAD-Signature-Previous) this long, while receivers switch to the new one.
    webhook_secret_overlap_s: float = Field(default=7 * 24 * 3600.0, ge=0)
    # Networks webhooks may be sent to although they are not public (loopback, private,
    # link-local), as CIDRs: a JSON list, e.g. '["10.20.0.0/16"]' for a RIS on the hospital's
    # network. Empty: public addresses only.
    webhook_allow_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)

    # API and dashboard.
    session_ttl_s: int = 8 * 3600
    frontend_dir: Path | None = None  # default: services/frontend beside the package, if present
    page_size_default: int = 50
    page_size_max: int = 200
    # Origins whose pages may call the API from a browser (a DICOMweb viewer such as OHIF on
    # its own host), as a JSON list: '["https://ohif.example.org"]'. Empty: same origin only.
    cors_origins: list[str] = Field(default_factory=list)
    # uvicorn's line per request. Compose turns it off: nginx in front writes the access log,
    # and the audit trail records every request that touches a job.
    access_log: bool = True
    # Per-API-key token bucket: rate_limit_per_s requests a second on average, bursts up to
    # rate_limit_burst. Kept in Redis when the broker is Redis (shared by gateway replicas),
    # else in process memory. 0 turns it off.
    rate_limit_per_s: float = Field(default=20.0, ge=0)
    rate_limit_burst: int = Field(default=60, ge=1)

    # DICOM listener (``lungcad dicom-listen``). ``dicom_ae_tenants``: the calling AE titles
    # allowed to send, each to its tenant: ``PACS1=radiology,CT2=research`` (or JSON). A study
    # becomes a job ``dicom_quiet_period_s`` after its last instance arrived.
    dicom_ae_title: str = Field(default="LUNGCAD", min_length=1, max_length=16)
    dicom_port: int = Field(default=11112, ge=1, le=65535)
    dicom_ae_tenants: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    dicom_quiet_period_s: float = Field(default=30.0, ge=0)
    dicom_spool_dir: Path | None = None  # default: data_dir/dicom-spool
    # Results back to PACS: per tenant, the destinations a succeeded job's SR and SEG are sent
    # to by C-STORE: ``radiology=PACS1@10.0.0.5:104,research=ORTHANC@orthanc:4242`` (a tenant
    # may be listed more than once; or JSON {tenant: ["AE@host:port", ...]}). Retried with
    # exponential backoff like webhooks; after the last attempt: delivery_failed.
    dicom_destinations: Annotated[dict[str, list[str]], NoDecode] = Field(default_factory=dict)
    dicom_delivery_max_attempts: int = Field(default=8, ge=1)
    dicom_delivery_backoff_base_s: float = Field(default=2.0, ge=0)
    dicom_delivery_backoff_max_s: float = Field(default=3600.0, ge=0)
    dicom_delivery_timeout_s: float = Field(default=30.0, gt=0)
    dicom_delivery_poll_interval_s: float = Field(default=1.0, gt=0)

    @field_validator("dicom_ae_tenants", mode="before")
    @classmethod
    def _parse_ae_tenants(cls, value: Any) -> Any:
        return parse_ae_tenants(value) if isinstance(value, str) else value

    @field_validator("dicom_destinations", mode="before")
    @classmethod
    def _parse_destinations(cls, value: Any) -> Any:
        return parse_destinations(value) if isinstance(value, str) else value

    @field_validator("dicom_destinations", mode="after")
    @classmethod
    def _check_destinations(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for tenant, destinations in value.items():
            for destination in destinations:
                parse_destination(destination)
            if not _TENANT.match(tenant):
                raise ValueError(f"{tenant!r} is not a tenant name")
        return value

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'lungcad.db').resolve()}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        return self

    @property
    def is_development(self) -> bool:
        return self.env == Environment.DEVELOPMENT

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def dicom_spool(self) -> Path:
        return self.dicom_spool_dir or (self.data_dir / "dicom-spool")

    def check_safe(self, bind_host: str | None = None) -> None:
        """Refuse placeholder secrets outside development mode, and development mode (whose
        placeholder secrets are accepted) on a non-loopback ``bind_host``."""
        if self.is_development:
            if bind_host is not None and not is_loopback(bind_host):
                raise UnsafeConfigurationError(
                    f"Refusing to serve on {bind_host}: LUNGCAD_ENV=development accepts "
                    "placeholder secrets, so it may only bind a loopback address (127.0.0.1, "
                    "::1, localhost). Set LUNGCAD_ENV=production with real secrets.")
            return
        problems = []
        if self.secret_key.strip().lower() in PLACEHOLDER_SECRETS or len(self.secret_key) < 16:
            problems.append("LUNGCAD_SECRET_KEY is a placeholder or shorter than 16 characters")
        for name, url in (("LUNGCAD_DATABASE_URL", self.database_url),
                          ("LUNGCAD_BROKER_URL", self.broker_url)):
            password = urlsplit(url).password if "://" in url else None
            if password is not None and password.strip().lower() in PLACEHOLDER_SECRETS:
                problems.append(f"the password in {name} is a placeholder")
        if self.storage_backend == StorageBackend.S3 and (
            self.s3_secret_key.strip().lower() in PLACEHOLDER_SECRETS
        ):
            problems.append("LUNGCAD_S3_SECRET_KEY is a placeholder")
        if self.deidentify_originals and (
            self.deid_uid_salt.strip().lower() in PLACEHOLDER_SECRETS
            or len(self.deid_uid_salt) < 16
        ):
            problems.append("LUNGCAD_DEID_UID_SALT is a placeholder or shorter than 16 "
                            "characters (LUNGCAD_DEIDENTIFY_ORIGINALS is on)")
        if problems:
            raise UnsafeConfigurationError(
                "Refusing to start outside development mode: " + "; ".join(problems)
                + ". Set real secrets, or LUNGCAD_ENV=development for a local trial."
            )


_AE_TITLE = re.compile(r"^[\x21-\x5b\x5d-\x7e](?:[\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def parse_ae_tenants(text: str) -> dict[str, str]:
    """``PACS1=radiology,CT2=research`` (or a JSON object) to {AE title: tenant name}. An AE
    title is 1-16 printable ASCII characters without a backslash; a tenant name is a plain
    word (it names a spool folder)."""
    text = text.strip()
    if text.startswith("{"):
        pairs = list(json.loads(text).items())
    else:
        pairs = []
        for item in filter(None, (p.strip() for p in text.split(","))):
            ae, sep, tenant = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not AE_TITLE=tenant")
            pairs.append((ae, tenant))
    mapping: dict[str, str] = {}
    for ae, tenant in pairs:
        ae, tenant = str(ae).strip(), str(tenant).strip()
        if not _AE_TITLE.match(ae):
            raise ValueError(f"{ae!r} is not a DICOM AE title (1-16 printable characters)")
        if not _TENANT.match(tenant):
            raise ValueError(f"{tenant!r} is not a tenant name (letters, digits, . _ -)")
        if ae in mapping:
            raise ValueError(f"the AE title {ae!r} is listed twice")
        mapping[ae] = tenant
    return mapping


def parse_destination(text: str) -> tuple[str, str, int]:
    """``AE@host:port`` to (AE title, host, port)."""
    ae, at, address = text.strip().partition("@")
    host, colon, port = address.rpartition(":")
    if not at or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 \
            or not _AE_TITLE.match(ae):
        raise ValueError(f"{text!r} is not a DICOM destination AE_TITLE@host:port")
    return ae, host.strip("[]"), int(port)


def parse_destinations(text: str) -> dict[str, list[str]]:
    """``radiology=PACS1@10.0.0.5:104,research=ORTHANC@orthanc:4242`` (or JSON) to
    {tenant: [destination, ...]}."""
    text = text.strip()
    if text.startswith("{"):
        loaded = json.loads(text)
        return {str(k): [str(d) for d in (v if isinstance(v, list) else [v])]
                for k, v in loaded.items()}
    mapping: dict[str, list[str]] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        tenant, sep, destination = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not tenant=AE_TITLE@host:port")
        mapping.setdefault(tenant.strip(), []).append(destination.strip())
    return mapping


def is_loopback(host: str) -> bool:
    """True for a loopback bind address or name."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
