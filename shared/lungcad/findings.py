"""The findings document: the versioned JSON result of a job (``GET /v1/jobs/{id}/result``).

Coordinates: ``center_mm`` is patient LPS in millimetres (the frame of ImagePositionPatient);
``center_voxel`` is ``[column, row, slice_index]`` in the ORIGINAL series, the slice index
counting slices in their sorted order along the slice normal (0 = first), and
``sop_instance_uid`` and ``instance_number`` (its InstanceNumber, the image number PACS
shows) name that slice. Research use, not for clinical diagnosis.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = "1.0"
NOTICE = "Research use, not for clinical diagnosis."

NoduleType = Literal["solid", "part-solid", "ground-glass"]
MarginClass = Literal["smooth", "lobulated", "spiculated"]
CaseClass = Literal["no nodule detected", "benign", "suspicious for malignancy"]


class ModelInfo(BaseModel):
    name: str
    version: str


class SeriesInfo(BaseModel):
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    original_spacing_mm: list[float] = Field(description="[column, row, slice] spacing, mm")
    original_shape: list[int] = Field(default_factory=list,
                                      description="[columns, rows, slices]")
    selection_reason: str | None = None


class LungsInfo(BaseModel):
    left_ml: float
    right_ml: float


class Location(BaseModel):
    side: Literal["right", "left"]
    zone: Literal["upper", "middle", "lower"] = Field(
        description="The lobe, estimated from the position in the lung mask: right upper, "
                    "middle or lower; left upper or lower (the left lung has no middle lobe)")
    lingula: bool = Field(False, description="In the lingula of the left upper lobe")
    juxtapleural: bool

    def text(self) -> str:
        """In words, e.g. "left upper lobe (lingula), juxtapleural"."""
        return (f"{self.side} {self.zone} lobe" + (" (lingula)" if self.lingula else "")
                + (", juxtapleural" if self.juxtapleural else ""))


class Margin(BaseModel):
    category: MarginClass = Field(alias="class")
    score: float = Field(ge=0, le=1, description="0 smooth ... 1 strongly spiculated")

    model_config = {"populate_by_name": True}


class LungRads(BaseModel):
    category: Literal["0", "1", "2", "3", "4A", "4B", "4X"]
    rule: str = Field(description="The Lung-RADS v2022 rule that fired, in words")


class Finding(BaseModel):
    id: str
    center_mm: list[float] = Field(min_length=3, max_length=3)
    center_voxel: list[int] = Field(min_length=3, max_length=3)
    sop_instance_uid: str | None = None
    instance_number: int | None = Field(
        None, description="InstanceNumber of that original slice: the image number PACS shows")
    diameter_mm: float = Field(description="Long axis on the axial slice of largest extent")
    short_axis_mm: float
    mean_diameter_mm: float = Field(description="(long + short) / 2, the Lung-RADS size")
    equivalent_diameter_mm: float = Field(
        description="Diameter of the sphere of the same volume (the LUNA16 convention)")
    volume_mm3: float
    mean_hu: float
    type: NoduleType
    location: Location
    margin: Margin
    nodule_probability: float = Field(ge=0, le=1)
    malignancy_probability: float = Field(ge=0, le=1)
    brock_probability: float = Field(ge=0, le=1)
    lung_rads: LungRads


class CaseSummary(BaseModel):
    cancer_probability: float = Field(ge=0, le=1)
    lung_rads: LungRads
    case_class: CaseClass = Field(alias="class")
    brock_assumptions: list[str] = Field(default_factory=list)

    model_config = {"populate_by_name": True}


class FindingsDocument(BaseModel):
    schema_version: str = SCHEMA_VERSION
    notice: str = NOTICE
    job_id: str | None = None
    model: ModelInfo
    series: SeriesInfo
    lungs: LungsInfo
    findings: list[Finding]
    case: CaseSummary
    timings_s: dict[str, float] = Field(default_factory=dict)
