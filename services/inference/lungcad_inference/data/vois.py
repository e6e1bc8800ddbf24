"""The nodule-VOI layout (``lidc-nodule-vois.zip``): per-nodule HU crops, masks and ratings.

Layout (zip or folder, any top-level folder name)::

    .../VOIs/image/<patient_id>_R_<nodule_id>.nii.gz       int16 HU, native spacing, real LPS
    .../VOIs/nodule_mask/<patient_id>_R_<nodule_id>.nii.gz  readers' consensus mask, same grid
    .../labels.csv   patient_id, nodule_id, coordX/Y/Z, diameter_mm, Malignancy_value, ...

:func:`load_vois` resamples every VOI to the 1 mm identity-direction grid used by the detector
(linear for HU, linear then 0.5-thresholded for the mask, which keeps a soft copy for blending)
and caches the result as one ``.npz``. Arrays are ``(z, y, x)``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad_inference.data.lidc_xml import ConsensusRule

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass
class Voi:
    """One real nodule: ``hu`` int16 and ``mask`` float32 in [0, 1] on a 1 mm grid."""

    patient_id: str
    nodule_id: str
    diameter_mm: float  # readers' diameter from labels.csv
    malignancy_rating: int | None
    label: int | None  # binarised by the ConsensusRule: 1 malignant, 0 benign, None excluded
    hu: np.ndarray
    mask: np.ndarray
    texture_rating: int | None = None

    @property
    def mask_diameter_mm(self) -> float:
        """Volume-equivalent sphere diameter of the (1 mm) mask."""
        return float((6.0 * float((self.mask >= 0.5).sum()) / np.pi) ** (1 / 3))


@contextmanager
def _root(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield path
        return
    from lungcad.ingest.archive import safe_extract
    from lungcad.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="lungcad-vois-") as tmp:
        safe_extract(path, Path(tmp), get_settings())
        yield Path(tmp)


def _find_labels(root: Path) -> Path:
    found = sorted(root.rglob("labels.csv"))
    if not found:
        raise FileNotFoundError(f"no labels.csv under {root}")
    return found[0]


def iter_voi_files(root: Path) -> Iterator[tuple[dict[str, str], Path, Path | None]]:
    """``(labels row, image path, mask path or None)`` for each VOI under ``root`` whose image
    exists (a missing image is logged and skipped)."""
    labels = _find_labels(root)
    base = labels.parent / "VOIs"
    with labels.open(newline="") as fh:
        for row in csv.DictReader(fh):
            stem = f"{row['patient_id']}_R_{row['nodule_id']}.nii.gz"
            image, mask = base / "image" / stem, base / "nodule_mask" / stem
            if not image.exists():
                log.warning("VOI missing", extra={"voi": stem})
                continue
            yield row, image, mask if mask.exists() else None


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _resample_1mm(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    from lungcad.imaging import Volume
    from lungcad_preprocess.resample import canonical_grid, resample

    image = Volume.from_sitk(sitk.ReadImage(str(image_path)), np.float32)
    mask = Volume.from_sitk(sitk.ReadImage(str(mask_path)), np.float32)
    mask = Volume((mask.array > 0).astype(np.float32), mask.geometry)
    grid = canonical_grid(image.geometry, 1.0)
    hu = resample(image, grid, default=-1000.0, threads=1)
    soft = resample(mask, grid, default=0.0, threads=1)
    return np.rint(hu).clip(-1024, 3071).astype(np.int16), np.clip(soft, 0, 1).astype(np.float32)


def load_vois(path: str | Path, cache_dir: Path | None = None,
              rule: ConsensusRule | None = None) -> list[Voi]:
    """All VOIs under ``path`` (zip or folder), resampled to 1 mm, with binarised labels."""
    path = Path(path)
    rule = rule or ConsensusRule()
    st = path.stat()
    key = hashlib.sha1(f"{path.name}|{st.st_size}|{int(st.st_mtime)}|{CACHE_VERSION}".encode()
                       ).hexdigest()[:12]
    cached = cache_dir / f"vois-{key}.npz" if cache_dir is not None else None
    if cached is not None and cached.exists():
        return _read_cache(cached, rule)
    rows, arrays = [], {}
    with _root(path) as root:
        for row, image, mask in iter_voi_files(root):
            if mask is None:
                log.warning("VOI mask missing", extra={"voi": image.name})
                continue
            hu, soft = _resample_1mm(image, mask)
            i = len(rows)
            arrays[f"hu{i}"], arrays[f"mask{i}"] = hu, soft.astype(np.float16)
            rows.append({"patient_id": row["patient_id"], "nodule_id": row["nodule_id"],
                         "diameter_mm": float(row["diameter_mm"]),
                         "malignancy": _int(row.get("Malignancy_value")),
                         "texture": _int(row.get("Texture_value"))})
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, rows=np.array(json.dumps(rows)), **arrays)
        tmp.replace(cached)
        return _read_cache(cached, rule)
    return [_voi(r, arrays[f"hu{i}"], arrays[f"mask{i}"], rule) for i, r in enumerate(rows)]


def _voi(row: dict, hu: np.ndarray, mask: np.ndarray, rule: ConsensusRule) -> Voi:
    rating = row["malignancy"]
    return Voi(row["patient_id"], str(row["nodule_id"]), row["diameter_mm"], rating,
               rule.label(rating), hu, mask.astype(np.float32), row.get("texture"))


def _read_cache(path: Path, rule: ConsensusRule) -> list[Voi]:
    with np.load(path) as data:
        rows = json.loads(str(data["rows"]))
        return [_voi(r, data[f"hu{i}"], data[f"mask{i}"], rule) for i, r in enumerate(rows)]
