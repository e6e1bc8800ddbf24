"""Serialise a preprocessed study to object storage and read it back.

Artifacts (internal, ``public=False``), under ``jobs/<job_id>/preprocess/``:

* ``volume`` -> ``volume.npz``: one array ``hu``, int16 HU ``(z, y, x)``;
* ``lung_mask`` -> ``lung_mask.npz``: one array ``labels``, uint8 ``(z, y, x)``, 0 background,
  1 right lung, 2 left lung;
* ``preprocess.json``: geometry (LPS mm, spacing, direction, crop box, original grid), the
  original slices' SOPInstanceUIDs and positions, the chosen series and why, lung volumes.

The ``.npz`` files are ordinary NumPy archives (``np.load(..., allow_pickle=False)``), written
with fast deflate (level 1) so storing stays a small part of the stage time.
"""

from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from lungcad.storage import ObjectStore

NPZ = "application/x-npz"
ARTIFACTS = {"volume": ("volume.npz", NPZ, "hu"), "lung_mask": ("lung_mask.npz", NPZ, "labels"),
             "preprocess.json": ("preprocess.json", "application/json", None)}


@dataclass(frozen=True)
class StoredArtifact:
    name: str
    key: str
    content_type: str
    size: int
    sha256: str


def encode_array(array: np.ndarray, name: str, level: int = 1) -> bytes:
    """A one-array ``.npz`` (deflate ``level``) readable by ``np.load``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_array(data: bytes, name: str) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return npz[name]


def encode_preprocessed(hu: np.ndarray, lungs: np.ndarray, meta: dict[str, Any]
                        ) -> dict[str, bytes]:
    """Artifact name -> bytes; the two arrays are compressed in parallel (zlib drops the GIL)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        volume = pool.submit(encode_array, hu, "hu")
        mask = pool.submit(encode_array, lungs, "labels")
        return {"volume": volume.result(), "lung_mask": mask.result(),
                "preprocess.json": json.dumps(meta, separators=(",", ":")).encode()}


def artifact_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/preprocess/{ARTIFACTS[name][0]}"


def store_preprocessed(store: ObjectStore, job_id: str, hu: np.ndarray, lungs: np.ndarray,
                       meta: dict[str, Any]) -> list[StoredArtifact]:
    out = []
    for name, data in encode_preprocessed(hu, lungs, meta).items():
        key = artifact_key(job_id, name)
        content_type = ARTIFACTS[name][1]
        stored = store.put_bytes(key, data, content_type)
        out.append(StoredArtifact(name, stored.key, content_type, stored.size, stored.sha256))
    return out


def load_preprocessed(store: ObjectStore, job_id: str
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(hu, labels, meta)`` of a job, as written by :func:`store_preprocessed`."""
    hu = decode_array(store.get_bytes(artifact_key(job_id, "volume")), "hu")
    labels = decode_array(store.get_bytes(artifact_key(job_id, "lung_mask")), "labels")
    meta = json.loads(store.get_bytes(artifact_key(job_id, "preprocess.json")))
    return hu, labels, meta
