"""Classify and check an upload (the parts of one multipart request) before it is accepted.

``inspect_upload`` either returns an UploadSummary or raises InvalidInput with a specific code:
empty_upload, not_medical_image, not_ct, multiple_studies, mixed_formats, multiple_volumes,
metaimage_missing_data, metaimage_missing_header, truncated_file, no_pixel_data, invalid_dicom,
executable_preamble, dimensions_too_large, too_many_files, zip_bomb, zip_slip, zip_symlink,
nested_archive, invalid_zip, unsupported_format.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pydicom.uid import UID

from lungcad.errors import InvalidInput
from lungcad.ingest import volume_files
from lungcad.ingest.archive import ZipLimits, check_zip, open_zip
from lungcad.ingest.dicom_header import DicomSummary, read_summary
from lungcad.settings import Settings

EXTENSIONS = {"dicom": ".dcm", "zip": ".zip", "nifti": ".nii", "nifti_gz": ".nii.gz",
              "metaimage_header": ".mhd", "metaimage_raw": ".raw", "mha": ".mha", "nrrd": ".nrrd"}


@dataclass(frozen=True)
class UploadPart:
    path: Path
    original_name: str | None
    size: int

    @property
    def display_name(self) -> str:
        return self.original_name or self.path.name


@dataclass
class UploadSummary:
    format: str  # dicom | zip | nifti | metaimage | nrrd
    kinds: list[str]  # per part, in order
    dicom_files: int = 0
    patient_id: str | None = None
    study_uid: str | None = None
    study_date: str | None = None
    series_description: str | None = None
    patient_age: int | None = None
    patient_sex: str | None = None
    modalities: dict[str, int] = field(default_factory=dict)
    # (SOP class UID, SOP instance UID) of each DICOM part, in order (not of a zip's entries)
    instances: list[tuple[str, str | None]] = field(default_factory=list)


def _lower(name: str | None) -> str:
    return (name or "").lower()


def classify(part: UploadPart) -> str:
    """The kind of one part from its magic bytes (the client's name only breaks ties)."""
    with open(part.path, "rb") as handle:
        head = handle.read(544)
    name = _lower(part.original_name)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        if name.endswith((".nii.gz", ".nii")) or not name:
            return "nifti_gz"
        raise InvalidInput(f"{part.display_name}: gzip files are accepted only as .nii.gz.",
                           code="unsupported_format")
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if volume_files.nifti_header(head) is not None:
        return "nifti"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    text = head[:64].lstrip()
    if text.startswith((b"ObjectType", b"NDims")):
        return "mha" if name.endswith(".mha") else "metaimage_header"
    if name.endswith((".raw", ".zraw")):
        return "metaimage_raw"
    return "dicom_maybe"  # DICOM without a preamble, or nothing medical at all


def _described(summary: DicomSummary) -> str:
    """The kind of object and its modality, e.g. 'Secondary Capture Image Storage (modality
    CT)': a CT modality on a secondary capture does not make it a CT image."""
    kind = UID(summary.sop_class_uid).name if summary.sop_class_uid else "object without SOP class"
    return f"{kind} (modality {summary.modality or 'none'})"


def _check_dicom_set(summaries: list[DicomSummary], where: str) -> UploadSummary:
    if not summaries:
        raise InvalidInput(f"{where} holds no DICOM files or medical images.",
                           code="not_medical_image")
    images = [s for s in summaries if s.is_image]
    ct = [s for s in images if s.is_ct_image]
    modalities = Counter(s.modality or "unknown" for s in summaries)
    if not ct:
        kinds = Counter(_described(s) for s in summaries)
        found = ", ".join(f"{m} x{n}" for m, n in sorted(kinds.items()))
        raise InvalidInput(f"{where} holds no CT images (found: {found}). LungCAD analyses "
                           "chest CT only.", code="not_ct")
    studies = sorted({s.study_uid for s in ct if s.study_uid})
    if len(studies) > 1:
        raise InvalidInput(f"{where} mixes {len(studies)} different studies; upload one study "
                           "per job.", code="multiple_studies")
    first = max(Counter(s.series_uid for s in ct).items(), key=lambda kv: kv[1])[0]
    lead = next(s for s in ct if s.series_uid == first)
    return UploadSummary(format="dicom", kinds=[], dicom_files=len(summaries),
                         patient_id=lead.patient_id, study_uid=lead.study_uid,
                         study_date=lead.study_date, series_description=lead.series_description,
                         patient_age=lead.patient_age, patient_sex=lead.patient_sex,
                         modalities=dict(modalities))


def inspect_zip(part: UploadPart, settings: Settings) -> UploadSummary:
    summaries = []
    with open_zip(part.path) as zf:
        for info in check_zip(zf, ZipLimits.from_settings(settings)):
            with zf.open(info) as entry:
                summary = read_summary(entry, info.file_size,  # type: ignore[arg-type]
                                       PurePosixPath(info.filename).name,
                                       settings.max_zip_expanded_bytes)
            if summary is not None:
                summaries.append(summary)
    result = _check_dicom_set(summaries, f"The zip {part.display_name!r}")
    result.format = "zip"
    return result


def inspect_folder(folder: Path, settings: Settings) -> UploadSummary:
    """A DICOM folder checked as the zip of it would be (files that are not DICOM skipped); a
    folder without DICOM files as the upload of its files (one volume)."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not any(
        part.startswith((".", "__MACOSX")) for part in p.relative_to(folder).parts)]
    summaries = []
    for path in files:
        with open(path, "rb") as handle:
            summary = read_summary(handle, path.stat().st_size, path.name,
                                   settings.max_zip_expanded_bytes)
        if summary is not None:
            summaries.append(summary)
    if files and not summaries:
        return inspect_upload([UploadPart(p, p.name, p.stat().st_size) for p in files], settings)
    return _check_dicom_set(summaries, f"The folder {folder.name!r}")


def inspect_path(path: Path, settings: Settings) -> UploadSummary:
    """The upload gate for a local input (``lungcad analyze``): a folder as its zip would be,
    a file as its upload would be; an .mhd travels with the data file it names."""
    if path.is_dir():
        return inspect_folder(path, settings)
    parts = [UploadPart(path, path.name, path.stat().st_size)]
    if parts[0].size and classify(parts[0]) == "metaimage_header":
        fields, _ = volume_files.metaimage_header(path)
        data = path.parent / _data_file_name(fields)
        if data.is_file():
            parts.append(UploadPart(data, data.name, data.stat().st_size))
    return inspect_upload(parts, settings)


def _inspect_dicom_parts(parts: list[UploadPart], settings: Settings) -> UploadSummary:
    summaries = []
    for part in parts:
        with open(part.path, "rb") as handle:
            summary = read_summary(handle, part.size, part.display_name,
                                   settings.max_zip_expanded_bytes)
        if summary is None:
            raise InvalidInput(f"{part.display_name}: not a DICOM file with a SOP class, nor "
                               "NIfTI, MetaImage, NRRD or a zip of DICOM files.",
                               code="not_medical_image")
        summaries.append(summary)
    result = _check_dicom_set(summaries, "The upload")
    result.instances = [(s.sop_class_uid, s.sop_instance_uid) for s in summaries]
    return result


def _data_file_name(fields: dict[str, str]) -> str:
    """The file name, without folders, that a MetaImage header gives as its ElementDataFile."""
    return PurePosixPath(fields["elementdatafile"].replace("\\", "/")).name


def _inspect_metaimage(parts: list[UploadPart], kinds: list[str]) -> None:
    header = parts[kinds.index("metaimage_header")]
    fields, _ = volume_files.metaimage_header(header.path)
    data_name = _data_file_name(fields).lower()
    raws = [p for p, k in zip(parts, kinds, strict=True) if k == "metaimage_raw"]
    match = [p for p in raws if PurePosixPath(_lower(p.original_name)).name == data_name]
    if not match:
        raise InvalidInput(f"{header.display_name} names its data file {data_name!r}, which is "
                           "not in the upload; send the .mhd with its .raw.",
                           code="metaimage_missing_data")
    need = volume_files.metaimage_data_bytes(header.path, fields)
    if need is not None and match[0].size < need:
        raise InvalidInput(f"{match[0].display_name}: the image data is truncated "
                           f"({match[0].size} bytes, needs {need}).", code="truncated_file")


def _missing_header(raw: UploadPart) -> InvalidInput:
    return InvalidInput(f"{raw.display_name}: a MetaImage data file needs its .mhd header in "
                        "the same upload (the header gives its size, type and spacing).",
                        code="metaimage_missing_header")


def inspect_upload(parts: list[UploadPart], settings: Settings) -> UploadSummary:
    """Check one upload; see the module docstring for the codes it raises."""
    parts = [p for p in parts if p.size > 0 or p.original_name]
    if not parts:
        raise InvalidInput("The upload is empty: send the study as repeated 'files' form fields.",
                           code="empty_upload")
    if all(p.size == 0 for p in parts):
        which = (f"The file {parts[0].display_name!r} is" if len(parts) == 1
                 else f"All {len(parts)} files are")
        raise InvalidInput(f"{which} empty (0 bytes): nothing to analyse.", code="empty_upload")
    empty = [p for p in parts if p.size == 0]
    if empty:
        raise InvalidInput(f"{empty[0].display_name}: the file is empty.", code="truncated_file")
    if len(parts) > settings.max_files:
        raise InvalidInput(f"The upload has {len(parts)} files; the limit is "
                           f"{settings.max_files}.", code="too_many_files")
    kinds = [classify(p) for p in parts]
    families = {"dicom" if k == "dicom_maybe" else k for k in kinds}
    if families <= {"dicom"}:
        summary = _inspect_dicom_parts(parts, settings)
        summary.kinds = ["dicom"] * len(parts)
        return summary
    if len(parts) == 1:
        kind = kinds[0]
        part = parts[0]
        if kind == "zip":
            summary = inspect_zip(part, settings)
        elif kind in ("nifti", "nifti_gz"):
            volume_files.check_nifti(part.path, kind == "nifti_gz",
                                     settings.max_zip_expanded_bytes)
            summary = UploadSummary(format="nifti", kinds=[])
        elif kind == "mha":
            volume_files.check_mha(part.path)
            summary = UploadSummary(format="metaimage", kinds=[])
        elif kind == "nrrd":
            volume_files.check_nrrd(part.path, settings.max_zip_expanded_bytes)
            summary = UploadSummary(format="nrrd", kinds=[])
        elif kind == "metaimage_header":
            raise InvalidInput(f"{part.display_name}: a MetaImage .mhd needs its data file in "
                               "the same upload.", code="metaimage_missing_data")
        else:
            raise _missing_header(part)
        summary.kinds = [kind]
        return summary
    if families == {"metaimage_header", "metaimage_raw"} and kinds.count("metaimage_header") == 1:
        _inspect_metaimage(parts, kinds)
        return UploadSummary(format="metaimage", kinds=kinds)
    if families == {"metaimage_raw"}:
        raise _missing_header(parts[0])
    if "metaimage_header" in families and families <= {"metaimage_header", "metaimage_raw"}:
        raise InvalidInput("Send one .mhd header with its data file per job.",
                           code="multiple_volumes")
    if len(families) == 1:
        raise InvalidInput(f"The upload holds {len(parts)} separate {kinds[0]} files; send one "
                           "volume or one study per job.", code="multiple_volumes")
    raise InvalidInput(f"The upload mixes formats ({', '.join(sorted(families))}); send one "
                       "study in one format per job.", code="mixed_formats")
