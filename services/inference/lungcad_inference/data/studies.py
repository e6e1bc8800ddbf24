"""Full CT studies with their reference lesions, on the preprocessed 1 mm grid.

A study is a zip or folder holding one CT series (DICOM, or a LUNA16 ``.mhd``) plus, optionally,
LIDC XML reading sessions and DICOM-SEG objects. :func:`load_study` runs exactly the serving
preprocessing (``lungcad_preprocess.pipeline.preprocess_volume``) so training, evaluation and
serving see identical volumes, then maps the reference lesions into the preprocessed grid.
Results are cached as ``.npz`` under ``cache_dir`` (keyed by the input's name, size and mtime).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungcad.imaging import Geometry
from lungcad_inference.data import dicom_seg, lidc_xml, luna16
from lungcad_inference.data.lesions import Lesion

log = logging.getLogger(__name__)
CACHE_VERSION = 4  # 3: LIDC consensus carries the readers' texture; 4: the learned lung mask


@dataclass
class Study:
    """A preprocessed study: ``hu`` int16 and ``lungs`` uint8, both ``(z, y, x)`` on
    ``geometry`` (1 mm, identity direction), with reference ``lesions`` (LPS mm) and the
    ``lesion_mask`` (uint8, lesion index + 1, 0 = none) where segmentations exist."""

    name: str
    hu: np.ndarray
    lungs: np.ndarray
    geometry: Geometry
    lesions: list[Lesion]
    series_uid: str | None = None
    lesion_mask: np.ndarray | None = field(default=None, repr=False)

    def lesion_centres_zyx(self) -> np.ndarray:
        """``(n, 3)`` continuous voxel centres of the lesions on the preprocessed grid."""
        if not self.lesions:
            return np.zeros((0, 3))
        return self.geometry.world_to_index(np.array([les.centre_mm for les in self.lesions]))


def study_name(path: Path) -> str:
    return path.name[:-4] if path.name.lower().endswith(".zip") else path.name


@contextmanager
def _folder(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield path
        return
    if path.suffix.lower() != ".zip":
        yield path.parent
        return
    from lungcad.ingest.archive import safe_extract
    from lungcad.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="lungcad-study-") as tmp:
        safe_extract(path, Path(tmp), get_settings())
        yield Path(tmp)


def _lung_mask_weights_id() -> str:
    """The lung mask depends on the learned lung-mask weights: a cache made with others is
    stale."""
    from lungcad_preprocess.lung_net import RULES_VERSION, WEIGHTS

    weights = hashlib.sha1(WEIGHTS.read_bytes()).hexdigest()[:8] if WEIGHTS.exists() else "none"
    return f"{weights}.{RULES_VERSION}"


def _cache_key(path: Path, luna_csv: Path | None) -> str:
    st = path.stat()
    parts = [path.name, str(st.st_size), str(int(st.st_mtime)), str(CACHE_VERSION),
             _lung_mask_weights_id()]
    if luna_csv is not None:
        parts.append(hashlib.sha1(luna_csv.read_bytes()).hexdigest()[:8])
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


def _seg_lesions(folder: Path, geometry: Geometry) -> tuple[list[Lesion], np.ndarray | None]:
    """Tumours from every SEG under ``folder``; segmentations of the same tumour by several
    algorithms (centroids closer than their radius) are merged into one reference lesion."""
    segments = [s for p in sorted(folder.rglob("*")) if p.is_file() and dicom_seg.is_seg(p)
                for s in dicom_seg.read_seg(p)]
    if not segments:
        return [], None
    singles = [dicom_seg.seg_lesion(s) for s in segments]
    groups: list[list[int]] = []
    for i, les in enumerate(singles):
        for g in groups:
            ref = singles[g[0]]
            if np.linalg.norm(np.subtract(les.centre_mm, ref.centre_mm)) < max(
                    ref.diameter_mm, les.diameter_mm) / 2:
                g.append(i)
                break
        else:
            groups.append([i])
    mask = np.zeros(geometry.shape, np.uint8)
    lesions = []
    for n, g in enumerate(groups):
        lesions.append(dicom_seg.merge_lesions([singles[i] for i in g]))
        votes = sum(dicom_seg.mask_on_grid(segments[i], geometry).astype(np.uint8) for i in g)
        mask[(votes * 2 > len(g)) & (mask == 0)] = n + 1  # majority of the algorithms
    return lesions, mask


def load_study(path: str | Path, cache_dir: Path | None, *, luna_csv: Path | None = None,
               rule: lidc_xml.ConsensusRule | None = None, threads: int = 2) -> Study:
    """Preprocess ``path`` and collect its reference lesions (LUNA16 rows first, then LIDC XML
    consensus, then DICOM-SEG tumours); cached when ``cache_dir`` is given."""
    from lungcad_preprocess.pipeline import PreprocessOptions, preprocess_volume, read_input

    path = Path(path)
    name = study_name(path)
    cached = (cache_dir / f"study-{name}-{_cache_key(path, luna_csv)}.npz"
              if cache_dir is not None else None)
    if cached is not None and cached.exists():
        return _read_cache(cached)
    options = PreprocessOptions(threads=threads)
    with _folder(path) as folder:
        volume, source = read_input(folder if path.suffix.lower() != ".mhd" else path, options)
        pre = preprocess_volume(volume, source, options)
        series_uid = source.get("series_instance_uid")
        if source.get("format") == "mhd":
            series_uid = luna16.series_uid_of_mhd(path)
        lesions: list[Lesion] = []
        mask = None
        if luna_csv is not None:
            lesions = luna16.read_annotations(luna_csv).get(series_uid or "", [])
        if not lesions:
            src_geometry = Geometry.from_dict(pre.meta["source"]["geometry"])
            for xml in lidc_xml.find_lidc_xml(folder):
                lesions += lidc_xml.consensus_nodules(lidc_xml.read_marks(xml, src_geometry),
                                                      rule)
        if not lesions:
            lesions, mask = _seg_lesions(folder, pre.geometry)
    study = Study(name, pre.hu, pre.lungs, pre.geometry, lesions, series_uid, mask)
    log.info("study loaded", extra={"study": name, "shape": pre.geometry.shape,
                                    "lesions": len(lesions)})
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _write_cache(cached, study)
    return study


def _write_cache(path: Path, study: Study) -> None:
    meta: dict[str, Any] = {"name": study.name, "geometry": study.geometry.to_dict(),
                            "lesions": [les.to_dict() for les in study.lesions],
                            "series_uid": study.series_uid}
    arrays = {"hu": study.hu, "lungs": study.lungs}
    if study.lesion_mask is not None:
        arrays["lesion_mask"] = study.lesion_mask
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def _read_cache(path: Path) -> Study:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        lesions = []
        for d in meta["lesions"]:
            d = dict(d)
            lesions.append(Lesion(tuple(d.pop("centre_mm")), d.pop("diameter_mm"),
                                  d.pop("source"), d.pop("malignancy"), d))
        return Study(meta["name"], data["hu"], data["lungs"], Geometry.from_dict(meta["geometry"]),
                     lesions, meta["series_uid"],
                     data["lesion_mask"] if "lesion_mask" in data.files else None)
