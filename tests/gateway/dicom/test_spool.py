"""The spool: acknowledged instances grouped by study, sealed into batches, recovered after a
restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lungcad_gateway.dicom.intake import idempotency_key
from lungcad_gateway.dicom.spool import Spool

STUDY = "1.2.3.4"


def _place(spool: Spool, study: str, sop: str, data: bytes = b"x") -> Path:
    return spool.place(spool.write_temp(data), "radiology", study, sop)


def test_instances_are_grouped_by_study_and_a_resent_instance_replaces_its_copy(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    _place(spool, STUDY, "1.1", b"first")
    _place(spool, STUDY, "1.1", b"again")
    _place(spool, STUDY, "1.2")
    _place(spool, "9.9", "2.1")
    assert sorted((s.tenant, s.study_uid) for s in spool.open_studies()) == [
        ("radiology", STUDY), ("radiology", "9.9")]
    batch = spool.seal("radiology", STUDY)
    assert batch is not None and batch.sop_uids() == ["1.1", "1.2"]
    assert (batch.path / "1.1.dcm").read_bytes() == b"again"
    assert [s.study_uid for s in spool.open_studies()] == ["9.9"]
    assert list(spool.incoming.iterdir()) == []


def test_an_instance_after_the_seal_starts_a_new_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    _place(spool, STUDY, "1.1")
    first = spool.seal("radiology", STUDY)
    _place(spool, STUDY, "1.2")
    second = spool.seal("radiology", STUDY)
    assert first is not None and second is not None and first.path != second.path
    assert (first.sop_uids(), second.sop_uids()) == (["1.1"], ["1.2"])
    assert spool.seal("radiology", STUDY) is None


def test_a_new_spool_on_the_same_folder_recovers_open_and_sealed_studies(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    _place(spool, STUDY, "1.1")
    _place(spool, "5.6", "3.1")
    sealed = spool.seal("radiology", "5.6")
    spool.write_temp(b"never acknowledged")
    os.utime(spool.open / "radiology" / STUDY / "1.1.dcm", (1000.0, 1000.0))

    again = Spool(tmp_path / "spool")
    assert again.clear_incoming() == 1
    assert [(s.study_uid, s.last_arrival) for s in again.open_studies()] == [(STUDY, 1000.0)]
    assert again.sealed_batches() == [sealed]


def test_a_refused_batch_is_kept_aside_with_its_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    _place(spool, STUDY, "1.1")
    batch = spool.seal("radiology", STUDY)
    assert batch is not None
    kept = spool.refuse(batch, "not_ct: no CT")
    assert (kept / "reason.txt").read_text() == "not_ct: no CT\n"
    assert spool.sealed_batches() == [] and (kept / "1.1.dcm").exists()


def test_uids_that_are_not_dicom_uids_are_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    with pytest.raises(ValueError):
        _place(spool, "../../etc", "1.1")
    with pytest.raises(ValueError):
        _place(spool, STUDY, "1.1/../x")


def test_the_idempotency_key_names_the_study_and_its_instances_in_any_order() -> None:
    key = idempotency_key(STUDY, ["1.2", "1.1"])
    assert key == idempotency_key(STUDY, ["1.1", "1.2"])
    assert key != idempotency_key(STUDY, ["1.1"])
    assert key != idempotency_key("1.2.3.5", ["1.1", "1.2"])
    assert len(key) <= 200
