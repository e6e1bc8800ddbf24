"""The C-STORE listener: a thin pynetdicom adapter over the spool, the quiet period and the
intake.

- C-ECHO answers success.
- C-STORE is offered for CT Image Storage and Enhanced CT Image Storage only: any other SOP
  class is refused at negotiation (abstract syntax not supported), and, should it come anyway,
  with status 0x0122 (SOP class not supported).
- Only the calling AE titles of ``dicom_ae_tenants`` may associate; another is rejected
  (calling AE title not recognised) and the rejection is in the audit trail.
- An instance is acknowledged only once it is fsynced in the spool. Its study becomes a job
  (``batch_to_job``) after the quiet period; at start, the spool left by a previous run is
  recovered: sealed studies are ingested, open ones wait out the rest of their quiet period.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    EnhancedCTImageStorage,
    Verification,
)

from lungcad.errors import InvalidInput
from lungcad.settings import Settings
from lungcad_gateway.dicom.intake import audit, batch_to_job
from lungcad_gateway.dicom.quiet import QuietPeriod
from lungcad_gateway.dicom.spool import Batch, Spool, is_uid
from lungcad_gateway.runtime import Runtime

log = logging.getLogger(__name__)
CT_SOP_CLASSES = frozenset({str(CTImageStorage), str(EnhancedCTImageStorage)})
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
RETRY_S = 5.0


class Listener:
    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        if not settings.dicom_ae_tenants:
            raise ValueError("LUNGCAD_DICOM_AE_TENANTS is empty: no calling AE title may send "
                             "(set e.g. PACS1=radiology)")
        self.settings = settings
        self.runtime = runtime or Runtime(settings)
        self.tenants = dict(settings.dicom_ae_tenants)
        self.spool = Spool(settings.dicom_spool)
        self.staging = self.spool.root / "staging"
        self.quiet = QuietPeriod(settings.dicom_quiet_period_s)
        self._lock = threading.Lock()  # spool placement and sealing vs the quiet-period clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._retry: list[tuple[float, Batch]] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # pynetdicom handlers (run on the association threads)

    def _on_requested(self, event: Any) -> None:
        calling = str(event.assoc.requestor.primitive.calling_ae_title).strip()
        if calling not in self.tenants:  # pynetdicom rejects it (require_calling_aet)
            address = event.assoc.requestor.address
            log.warning("association from unknown calling AE %r (%s) rejected", calling,
                        address)
            try:
                audit(self.runtime, None, f"dicom {calling}", "associate",
                      f"dicom:{self.settings.dicom_ae_title}", 403, address)
            except Exception:  # noqa: BLE001 - the database is down; the rejection stands
                log.exception("audit event of a rejected association not recorded")

    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    def _on_store(self, event: Any) -> int:
        tenant = self.tenants.get(event.assoc.requestor.ae_title.strip())
        if tenant is None:  # pragma: no cover - refused at association
            return SOP_CLASS_NOT_SUPPORTED
        if str(event.request.AffectedSOPClassUID) not in CT_SOP_CLASSES:
            return SOP_CLASS_NOT_SUPPORTED
        try:
            study_uid = str(event.dataset.get("StudyInstanceUID", ""))
        except Exception:  # noqa: BLE001 - undecodable data set
            return CANNOT_UNDERSTAND
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        if not is_uid(study_uid) or not is_uid(sop_uid):
            return CANNOT_UNDERSTAND
        try:
            temp = self.spool.write_temp(event.encoded_dataset(include_meta=True))
            with self._lock:
                self.spool.place(temp, tenant, study_uid, sop_uid)
                self.quiet.touch((tenant, study_uid), time.monotonic())
        except OSError:
            log.exception("instance %s not spooled", sop_uid)
            return OUT_OF_RESOURCES
        self._wake.set()
        return SUCCESS

    # the quiet-period thread

    def recover(self) -> None:
        """Take over the spool of a previous run."""
        dropped = self.spool.clear_incoming()
        shutil.rmtree(self.staging, ignore_errors=True)
        now_wall, now = time.time(), time.monotonic()
        with self._lock:
            for study in self.spool.open_studies():
                age = max(0.0, now_wall - study.last_arrival)
                self.quiet.touch((study.tenant, study.study_uid), now - age)
        sealed = self.spool.sealed_batches()
        self._retry.extend((0.0, batch) for batch in sealed)
        log.info("spool recovered: %d open studies, %d sealed, %d partial writes dropped",
                 len(self.quiet), len(sealed), dropped)

    def _seal_due(self) -> list[Batch]:
        batches = []
        with self._lock:
            for key in self.quiet.due(time.monotonic()):
                tenant, study_uid = key  # type: ignore[misc]
                batch = self.spool.seal(tenant, study_uid)
                self.quiet.forget(key)
                if batch is not None:
                    batches.append(batch)
        return batches

    def _ingest(self, batch: Batch) -> bool:
        """True when the batch is done with (a job, or refused); False to retry later."""
        try:
            admitted = batch_to_job(self.runtime, batch, self.staging,
                                    actor=f"dicom listener {self.settings.dicom_ae_title}")
        except InvalidInput as exc:
            kept = self.spool.refuse(batch, f"{exc.code}: {exc}")
            log.warning("study %s refused (%s): kept in %s", batch.study_uid, exc.code, kept)
            return True
        except Exception:  # noqa: BLE001 - a dependency is down: the batch waits in the spool
            log.exception("study %s not ingested yet; retrying in %.0f s", batch.study_uid,
                          RETRY_S)
            return False
        self.spool.discard(batch)
        log.info("study %s (%s): job %s%s", batch.study_uid, batch.tenant, admitted.job.id,
                 "" if admitted.created else " (a resend: the existing job)")
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            ready = [b for t, b in self._retry if t <= now]
            self._retry = [(t, b) for t, b in self._retry if t > now]
            for batch in ready + self._seal_due():
                if not self._ingest(batch):
                    self._retry.append((time.monotonic() + RETRY_S, batch))
            with self._lock:
                wait = self.quiet.next_due_in(time.monotonic())
            waits = [w for w in (wait, *(t - time.monotonic() for t, _ in self._retry))
                     if w is not None]
            self._wake.wait(min([1.0, *waits]) if waits else 1.0)
            self._wake.clear()

    # life cycle

    def start(self, host: str = "0.0.0.0", port: int | None = None) -> None:  # noqa: S104
        self.recover()
        ae = AE(ae_title=self.settings.dicom_ae_title)
        for sop_class in (CTImageStorage, EnhancedCTImageStorage):
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.require_calling_aet = list(self.tenants)
        ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_C_STORE, self._on_store)]
        self._thread = threading.Thread(target=self._run, name="dicom-quiet-period",
                                        daemon=True)
        self._thread.start()
        self._server = ae.start_server((host, port or self.settings.dicom_port), block=False,
                                       evt_handlers=handlers)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.runtime.close()
