"""LIDC-IDRI reading sessions (``LidcReadMessage`` XML, as distributed by TCIA).

Each of up to four blinded readers marks nodules >= 3 mm with contours (``roi`` / ``edgeMap``
pixel points at ``imageZposition``) and rates them (malignancy 1-5); nodules < 3 mm get a single
point and no ratings. Because the sessions are blinded, one nodule appears once per reader who
marked it: :func:`group_marks` clusters the marks by position and :func:`consensus_nodules`
applies the consensus rule (LUNA16's by default: >= 3 mm, marked by >= 3 of 4 readers).

Pixel coordinates ``(row = yCoord, col = xCoord)`` are mapped to LPS with the series geometry of
the in-plane axes; the z position is the reader's ``imageZposition`` (LIDC series are axial).
"""

from __future__ import annotations

import statistics
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungcad.imaging import Geometry
from lungcad_inference.data.lesions import Lesion

NS = {"l": "http://www.nih.gov"}


@dataclass(frozen=True)
class ReaderMark:
    """One reader's mark of one lesion: LPS centre, largest in-plane extent, rating."""

    reader: int
    centre_mm: tuple[float, float, float]
    diameter_mm: float  # volume-equivalent sphere diameter; 0 for single-point marks (< 3 mm)
    malignancy: int | None
    points_mm: np.ndarray = field(repr=False, compare=False,
                                  default_factory=lambda: np.zeros((0, 3)))
    texture: int | None = None  # 1-2 ground glass, 3 part-solid, 4-5 solid


@dataclass(frozen=True)
class ConsensusRule:
    """Which reader groups count as nodules, and how malignancy is binarised.

    Defaults follow LUNA16 (>= 3 mm, >= 3 of 4 readers) and the common LIDC binarisation of the
    median rating: <= ``benign_max`` benign (0), >= ``malignant_min`` malignant (1), in between
    excluded (``None``).
    """

    min_diameter_mm: float = 3.0
    min_readers: int = 3
    benign_max: float = 2.0
    malignant_min: float = 4.0

    def label(self, median_rating: float | None) -> int | None:
        if median_rating is None:
            return None
        if median_rating <= self.benign_max:
            return 0
        if median_rating >= self.malignant_min:
            return 1
        return None


def _polygon_area(points: np.ndarray) -> float:
    """Shoelace area (mm^2) of a closed in-plane contour, ``(n, 3)`` LPS points."""
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def read_marks(xml_path: str | Path, geometry: Geometry) -> list[ReaderMark]:
    """Every reader's nodule marks in ``xml_path``; ``geometry`` is the CT series' own grid.

    A mark's diameter is that of the sphere with the contours' volume (filled polygon area per
    slice times the series' slice spacing)."""
    root = ET.parse(xml_path).getroot()
    marks: list[ReaderMark] = []
    for reader, session in enumerate(root.findall("l:readingSession", NS)):
        for nodule in session.findall("l:unblindedReadNodule", NS):
            rating = nodule.findtext("l:characteristics/l:malignancy", namespaces=NS)
            texture = nodule.findtext("l:characteristics/l:texture", namespaces=NS)
            slices: list[np.ndarray] = []
            for roi in nodule.findall("l:roi", NS):
                if (roi.findtext("l:inclusion", namespaces=NS) or "TRUE").strip() != "TRUE":
                    continue
                z = float(roi.findtext("l:imageZposition", namespaces=NS))
                rc = np.array([[float(e.findtext("l:yCoord", namespaces=NS)),
                                float(e.findtext("l:xCoord", namespaces=NS))]
                               for e in roi.findall("l:edgeMap", NS)])
                if rc.size == 0:
                    continue
                idx = np.column_stack([np.zeros(len(rc)), rc])  # (k=0, row, col)
                world = geometry.index_to_world(idx)
                world[:, 2] = z
                slices.append(world)
            if not slices:
                continue
            pts = np.concatenate(slices)
            volume = sum(_polygon_area(s) for s in slices) * geometry.spacing[0]
            diameter = float((6.0 * volume / np.pi) ** (1 / 3)) if len(pts) > 2 else 0.0
            marks.append(ReaderMark(reader, tuple(float(v) for v in pts.mean(axis=0)), diameter,
                                    int(rating) if rating and rating.strip().isdigit() else None,
                                    pts, int(texture) if texture and texture.strip().isdigit()
                                    else None))
    return marks


def group_marks(marks: list[ReaderMark]) -> list[list[ReaderMark]]:
    """Cluster marks into lesions: a mark joins the nearest group whose centre lies within
    the larger of the two radii (at least 5 mm) and that holds no mark from the same reader."""
    groups: list[list[ReaderMark]] = []
    for mark in sorted(marks, key=lambda m: -m.diameter_mm):
        best, best_d = None, np.inf
        for group in groups:
            if any(m.reader == mark.reader for m in group):
                continue
            centre = np.mean([m.centre_mm for m in group], axis=0)
            radius = max(max(m.diameter_mm for m in group), mark.diameter_mm) / 2.0
            d = float(np.linalg.norm(centre - np.asarray(mark.centre_mm)))
            if d <= max(radius, 5.0) and d < best_d:
                best, best_d = group, d
        if best is None:
            groups.append([mark])
        else:
            best.append(mark)
    return groups


def consensus_nodules(marks: list[ReaderMark], rule: ConsensusRule | None = None) -> list[Lesion]:
    """Nodules meeting ``rule``: centre and diameter averaged over the readers' >= 3 mm marks."""
    rule = rule or ConsensusRule()
    out = []
    for group in group_marks(marks):
        sized = [m for m in group if m.diameter_mm >= rule.min_diameter_mm]
        if len(sized) < rule.min_readers:
            continue
        ratings = [m.malignancy for m in sized if m.malignancy is not None]
        median = float(statistics.median(ratings)) if ratings else None
        textures = [m.texture for m in sized if m.texture is not None]
        out.append(Lesion(tuple(float(v) for v in np.mean([m.centre_mm for m in sized], axis=0)),
                          float(np.mean([m.diameter_mm for m in sized])), "lidc_xml",
                          rule.label(median),
                          {"readers": len(sized), "ratings": ratings, "median_rating": median,
                           "texture": int(round(statistics.median(textures))) if textures
                           else None}))
    return out


def find_lidc_xml(folder: Path) -> list[Path]:
    """``LidcReadMessage`` files under ``folder``."""
    found = []
    for path in sorted(folder.rglob("*.xml")):
        with path.open("rb") as fh:
            if b"LidcReadMessage" in fh.read(2048):
                found.append(path)
    return found
