"""From the detector's candidates to the findings document: merge, segment, measure, score.

Pure: arrays and geometry in, a :class:`lungcad.findings.FindingsDocument` and the nodule label
volume out. The Celery task and ``lungcad analyze`` wrap it. Research use, not for clinical
diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lungcad.findings import (
    CaseSummary,
    Finding,
    FindingsDocument,
    Location,
    LungRads,
    LungsInfo,
    Margin,
    ModelInfo,
    SeriesInfo,
)
from lungcad.imaging import Geometry
from lungcad.imaging.slices import SliceHit, SliceTable
from lungcad_inference.clinical.brock import BrockInputs, brock_probability
from lungcad_inference.clinical.lungrads import (
    NoduleForRads,
    RadsResult,
    classify_case,
    classify_nodule,
)
from lungcad_inference.clinical.measure import NoduleMeasurement, measure_nodule

SUSPICIOUS_CATEGORIES = {"4A", "4B", "4X"}
SUSPICIOUS_PROBABILITY = 0.3


class Segmenter(Protocol):
    def __call__(self, hu: np.ndarray, seeds_zyx: list[Any], diameters_mm: list[float]
                 ) -> list[tuple[np.ndarray, np.ndarray]]: ...


class CandidateLike(Protocol):
    centre_zyx: Any
    diameter_mm: float
    nodule_probability: float
    malignancy_probability: float | None


@dataclass(frozen=True)
class PatientInfo:
    age: float | None = None
    sex: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None


@dataclass
class AnalysisResult:
    document: FindingsDocument
    labels: np.ndarray  # uint16 (z, y, x) on the preprocessed grid: finding k -> label k + 1
    measurements: list[NoduleMeasurement]
    hits: list[SliceHit | None]
    timings_s: dict[str, float] = field(default_factory=dict)


def merge_candidates(candidates: list[CandidateLike]) -> list[CandidateLike]:
    """Non-maximum suppression: keep the most probable of candidates closer than the larger
    radius (at least 3 mm)."""
    kept: list[CandidateLike] = []
    for cand in sorted(candidates, key=lambda c: -c.nodule_probability):
        centre = np.asarray(cand.centre_zyx, float)
        if all(np.linalg.norm(centre - np.asarray(k.centre_zyx, float))
               > max(cand.diameter_mm, k.diameter_mm, 6.0) / 2 for k in kept):
            kept.append(cand)
    return kept


def size_hint(cand: CandidateLike) -> float:
    """The size that bounds the nodule's segmentation: the detector's diameter, or the
    candidate's own threshold-segmented diameter when smaller (the detector overestimates
    large nodules)."""
    segmented = getattr(cand, "segmented_diameter_mm", None)
    return min(cand.diameter_mm, segmented) if segmented else cand.diameter_mm


def _overlaps(m: NoduleMeasurement, labels: np.ndarray) -> bool:
    box = tuple(slice(o, o + s) for o, s in zip(m.offset, m.mask.shape, strict=True))
    region = labels[box][m.mask]
    return bool(region.size and (region > 0).mean() > 0.3)


def _paint(m: NoduleMeasurement, labels: np.ndarray, value: int) -> None:
    box = tuple(slice(o, o + s) for o, s in zip(m.offset, m.mask.shape, strict=True))
    view = labels[box]
    view[m.mask & (view == 0)] = value


def _rads(m: NoduleMeasurement, voxel_mm: float) -> RadsResult:
    return classify_nodule(NoduleForRads(
        long_axis_mm=m.long_axis_mm * voxel_mm, short_axis_mm=m.short_axis_mm * voxel_mm,
        nodule_type=m.nodule_type, solid_long_mm=m.solid_long_mm * voxel_mm,
        solid_short_mm=m.solid_short_mm * voxel_mm,
        juxtapleural=m.juxtapleural, smooth=m.margin == "smooth",
        spiculated=m.margin == "spiculated"))


def case_probability(pairs: list[tuple[float, float]]) -> float:
    """Noisy-OR over findings: P(cancer) = 1 - prod(1 - P(nodule) * P(malignant | nodule))."""
    p = 1.0
    for nodule, malignant in pairs:
        p *= 1.0 - float(np.clip(nodule * malignant, 0, 1))
    return float(1.0 - p)


def _original_voxel(hit: SliceHit | None, geometry: Geometry, centre_zyx: np.ndarray
                    ) -> list[int]:
    if hit is not None:
        return [int(round(hit.column)), int(round(hit.row)), int(hit.index)]
    z, y, x = np.round(centre_zyx).astype(int)
    return [int(x), int(y), int(z)]


def analyze_volume(hu: np.ndarray, lungs: np.ndarray, geometry: Geometry, meta: dict[str, Any],
                   candidates: list[CandidateLike], patient: PatientInfo,
                   model: ModelInfo, job_id: str | None = None,
                   segmenter: Segmenter | None = None,
                   type_model: Any | None = None) -> AnalysisResult:
    """Build the findings document from the detector's candidates on a preprocessed volume.

    A candidate's learned ``outline`` (``(mask cube, start)``, see
    :func:`lungcad_inference.segmentation.segment_at`) is used when it has one; otherwise
    ``segmenter(hu, seeds_zyx, diameters_mm)`` draws it, and without either the nodule is
    grown at a half-maximum threshold. ``type_model``: the learned nodule-type head
    (:class:`lungcad_inference.clinical.nodule_type.TypeModel`), else the solid-fraction rule.
    """
    source = meta.get("source", {})
    slices = SliceTable.from_dict(source["slices"]) if source.get("slices") else None
    voxel_mm = float(geometry.spacing[0])  # the preprocessed grid is isotropic
    labels = np.zeros(hu.shape, np.uint16)
    kept: list[tuple[CandidateLike, NoduleMeasurement]] = []
    merged = merge_candidates(candidates)
    learned: list[Any] = [getattr(c, "outline", None) for c in merged]
    todo = [i for i, o in enumerate(learned) if o is None]
    if segmenter is not None and todo:
        done = segmenter(hu, [merged[i].centre_zyx for i in todo],
                         [size_hint(merged[i]) for i in todo])
        for i, o in zip(todo, done, strict=True):
            learned[i] = o
    for cand, outline in zip(merged, learned, strict=True):
        m = measure_nodule(hu, lungs, tuple(cand.centre_zyx), size_hint(cand) / voxel_mm,
                           outline, type_model)
        if _overlaps(m, labels):
            continue  # a second candidate on the same nodule
        kept.append((cand, m))
        _paint(m, labels, len(kept))
    count = max(len(kept), 1)
    findings: list[Finding] = []
    rads_results: list[RadsResult] = []
    hits: list[SliceHit | None] = []
    assumptions: set[str] = set()
    for k, (cand, m) in enumerate(kept):
        centre = np.asarray(m.center_zyx)
        centre_mm = geometry.index_to_world(centre)
        hit = slices.locate(centre_mm) if slices is not None else None
        hits.append(hit)
        rads = _rads(m, voxel_mm)
        rads_results.append(rads)
        brock = brock_probability(BrockInputs(
            size_mm=m.long_axis_mm * voxel_mm, nodule_type=m.nodule_type,
            upper_lobe=m.zone == "upper",
            spiculated=m.margin == "spiculated", nodule_count=count, age=patient.age,
            sex=patient.sex))
        assumptions.update(brock.assumptions)
        findings.append(Finding(
            id=f"F{k + 1}", center_mm=[round(float(v), 2) for v in centre_mm],
            center_voxel=_original_voxel(hit, geometry, centre),
            sop_instance_uid=hit.sop_instance_uid if hit else None,
            instance_number=hit.instance_number if hit else None,
            diameter_mm=round(m.long_axis_mm * voxel_mm, 1),
            short_axis_mm=round(m.short_axis_mm * voxel_mm, 1),
            mean_diameter_mm=round((m.long_axis_mm + m.short_axis_mm) / 2 * voxel_mm, 1),
            equivalent_diameter_mm=round(
                2 * (3 * m.volume_mm3 * voxel_mm**3 / (4 * np.pi)) ** (1 / 3), 1),
            volume_mm3=round(m.volume_mm3 * geometry.voxel_volume_ml * 1000, 1),
            mean_hu=round(m.mean_hu, 1), type=m.nodule_type,  # type: ignore[arg-type]
            location=Location(side=m.side, zone=m.zone, lingula=m.lingula,  # type: ignore[arg-type]
                              juxtapleural=m.juxtapleural),
            margin=Margin(category=m.margin, score=round(m.margin_score, 3)),  # type: ignore[arg-type]
            nodule_probability=round(float(cand.nodule_probability), 4),
            malignancy_probability=round(float(cand.malignancy_probability or 0.0), 4),
            brock_probability=round(brock.probability, 4),
            lung_rads=LungRads(category=rads.category, rule=rads.rule)))  # type: ignore[arg-type]
    case_rads = classify_case(rads_results)
    cancer = case_probability([(f.nodule_probability, f.malignancy_probability)
                               for f in findings])
    if not findings:
        case_class = "no nodule detected"  # never "normal": a missed cancer is not normal
    elif case_rads.category in SUSPICIOUS_CATEGORIES or cancer >= SUSPICIOUS_PROBABILITY:
        case_class = "suspicious for malignancy"
    else:
        case_class = "benign"
    volumes = meta.get("lung_volumes_ml", {})
    original = Geometry.from_dict(source["geometry"]) if source.get("geometry") else geometry
    document = FindingsDocument(
        job_id=job_id, model=model,
        series=SeriesInfo(
            study_instance_uid=patient.study_instance_uid,
            series_instance_uid=source.get("series_instance_uid")
            or patient.series_instance_uid,
            original_spacing_mm=[round(float(v), 4) for v in original.spacing[::-1]],
            original_shape=[int(v) for v in original.shape[::-1]],
            selection_reason=source.get("selection_reason")),
        lungs=LungsInfo(left_ml=round(float(volumes.get("left_ml", 0.0)), 1),
                        right_ml=round(float(volumes.get("right_ml", 0.0)), 1)),
        findings=findings,
        case=CaseSummary(cancer_probability=round(cancer, 4),
                         lung_rads=LungRads(category=case_rads.category,  # type: ignore[arg-type]
                                            rule=case_rads.rule),
                         case_class=case_class,  # type: ignore[arg-type]
                         brock_assumptions=sorted(assumptions)))
    return AnalysisResult(document, labels, [m for _, m in kept], hits)
