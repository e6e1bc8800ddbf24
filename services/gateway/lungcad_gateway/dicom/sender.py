"""C-STORE of result objects (SR, SEG) to one PACS destination: one association, every object
sent, the outcome as one line for the delivery's record."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom
from pynetdicom import AE

from lungcad.settings import parse_destination

# Success, and the warnings that still mean stored (coercion, elements discarded, mismatch).
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status: str  # "0x0000", a failure status, or why nothing was stored


def send(destination: str, calling_ae: str, objects: list[bytes], timeout_s: float
         ) -> SendResult:
    """Send ``objects`` (DICOM files) to ``destination`` (AE@host:port) on one association."""
    called, host, port = parse_destination(destination)
    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in objects]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        reason = ("rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted
                  else "not established (no answer or connection refused)")
        return SendResult(False, f"association {reason}")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                return SendResult(False, "no C-STORE response (timeout or abort)")
            if code not in STORED:
                return SendResult(False, f"C-STORE status 0x{code:04X} for {ds.Modality}")
    finally:
        if assoc.is_established:
            assoc.release()
    return SendResult(True, "0x0000")
