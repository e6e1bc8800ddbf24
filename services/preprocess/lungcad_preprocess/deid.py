"""De-identification of DICOM datasets after the PS3.15 Basic Application Level Confidentiality
Profile (Annex E), as pure functions.

Actions: identifying attributes are emptied (Z) or removed (X); UIDs are replaced (U) by
``2.25.<128-bit hash>`` of a secret salt and the original UID, so references stay consistent
across the files of a study and between runs with the same salt; private tags, overlays and
curves are removed. With the Retain Patient Characteristics option (113108, the default,
because the risk model uses age and sex) PatientAge / PatientSex / PatientSize / PatientWeight
are kept. PatientIdentityRemoved, DeidentificationMethod and its code sequence are added.
Pixel data are kept: burned-in annotations are not scrubbed (CT rarely has them); a dataset
with BurnedInAnnotation YES is reported in the returned notes.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

EMPTY = frozenset({  # Z: zero length
    "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyID",
    "ReferringPhysicianName", "StudyDate", "StudyTime", "ContentDate", "ContentTime",
    "PatientSex",
})
REMOVE = frozenset({  # X: removed
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "OperatorsName", "PerformingPhysicianName", "PhysiciansOfRecord", "RequestingPhysician",
    "NameOfPhysiciansReadingStudy", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientAddress",
    "PatientTelephoneNumbers", "PatientBirthTime", "MilitaryRank", "BranchOfService",
    "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments",
    "MedicalRecordLocator", "PatientReligiousPreference", "MedicalAlerts", "Allergies",
    "PregnancyStatus", "SmokingStatus", "DeviceSerialNumber", "PlateID", "CassetteID",
    "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime",
    "StudyDescription", "SeriesDescription", "ImageComments", "DerivationDescription",
    "RequestAttributesSequence", "ReferencedStudySequence", "ReferencedPatientSequence",
    "AdmittingDiagnosesDescription", "PatientAge", "PatientSize", "PatientWeight",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "ScheduledProcedureStepID",
    "RequestedProcedureID", "RequestedProcedureDescription", "IssuerOfPatientID",
    "InstanceCreationDate", "InstanceCreationTime", "InstanceCreatorUID", "TimezoneOffsetFromUTC",
    "ProtocolName", "CurrentPatientLocation", "PatientInstitutionResidence",
    "ResponsibleOrganization",
    "ResponsiblePerson", "PersonName", "VerifyingObserverName", "ContentCreatorName",
    "ReviewerName", "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest", "FrameComments", "TextString",
})
PATIENT_CHARACTERISTICS = frozenset({"PatientAge", "PatientSex", "PatientSize", "PatientWeight"})
_NOT_INSTANCE_UIDS = frozenset({"TransferSyntaxUID", "ImplementationClassUID",
                                "CodingSchemeUID", "ContextUID", "MappingResourceUID",
                                "ContextGroupExtensionCreatorUID", "PrivateInformationCreatorUID"})
METHOD = "PS3.15 Basic Application Confidentiality Profile (LungCAD)"


def replacement_uid(uid: str, salt: bytes) -> str:
    """A stable new UID for ``uid`` under ``salt`` (``2.25.`` + 128-bit integer)."""
    digest = hashlib.sha256(salt + b"\0" + uid.strip().encode()).digest()[:16]
    return "2.25." + str(int.from_bytes(digest, "big"))


def _is_instance_uid(keyword: str) -> bool:
    return keyword.endswith("UID") and not keyword.endswith("ClassUID") and (
        keyword not in _NOT_INSTANCE_UIDS)


def _scrub(ds: Any, salt: bytes, keep: frozenset[str]) -> None:
    ds.remove_private_tags()
    for elem in list(ds):
        group = elem.tag.group
        if 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and elem.tag.element in (
                0x3000, 0x4000)):
            del ds[elem.tag]  # curves, overlay data and comments
            continue
        keyword = elem.keyword
        if keyword in keep:
            continue
        if keyword in REMOVE:
            del ds[elem.tag]
        elif keyword in EMPTY:
            elem.value = ""
        elif elem.VR == "SQ":
            for item in elem.value:
                _scrub(item, salt, keep)
        elif elem.VR == "UI" and _is_instance_uid(keyword) and elem.value:
            if elem.VM > 1:
                elem.value = [replacement_uid(str(v), salt) for v in elem.value]
            else:
                elem.value = replacement_uid(str(elem.value), salt)


def deidentify_dataset(ds: Any, salt: bytes, *, retain_patient_characteristics: bool = True
                       ) -> tuple[Any, dict[str, Any]]:
    """A de-identified deep copy of a pydicom Dataset, and notes about it."""
    from pydicom.dataset import Dataset

    if not salt:
        raise ValueError("a secret, non-empty salt is required to replace UIDs")
    out = copy.deepcopy(ds)
    keep = PATIENT_CHARACTERISTICS if retain_patient_characteristics else frozenset()
    _scrub(out, salt, keep)
    meta = getattr(out, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = replacement_uid(
            str(ds.file_meta.MediaStorageSOPInstanceUID), salt)
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = METHOD
    codes = []
    for value, meaning in [("113100", "Basic Application Confidentiality Profile")] + (
            [("113108", "Retain Patient Characteristics Option")]
            if retain_patient_characteristics else []):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    out.DeidentificationMethodCodeSequence = codes
    notes = {"burned_in_annotation": str(ds.get("BurnedInAnnotation", "")).upper() == "YES"}
    return out, notes


def deidentify_file(src: Path, dst: Path, salt: bytes, **options: Any) -> dict[str, Any]:
    """Read ``src``, write its de-identified copy to ``dst``; returns the notes."""
    import pydicom

    ds = pydicom.dcmread(src)
    out, notes = deidentify_dataset(ds, salt, **options)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save_as(dst, enforce_file_format=True)
    return notes
