"""The nodule-VOI layout reader, on a small synthetic folder in the same layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcad_inference.data.vois import load_vois


def _write(path: Path, array: np.ndarray, spacing_xyz: tuple[float, float, float]) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin((10.0, 20.0, -100.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def test_vois_resampled_to_1mm_with_labels(tmp_path: Path) -> None:
    root = tmp_path / "lidc-nodule-vois"
    zz, yy, xx = np.indices((8, 40, 40))
    ball = ((zz - 4) * 2.5) ** 2 + ((yy - 20) * 0.7) ** 2 + ((xx - 20) * 0.7) ** 2 <= 25
    hu = np.where(ball, 30, -850).astype(np.int16)
    rows = ["patient_id,nodule_id,diameter_mm,Malignancy_value,Texture_value"]
    for pid, nid, rating in (("P-1", 1, 5), ("P-1", 2, 3), ("P-2", 1, 1)):
        for kind, arr in (("image", hu), ("nodule_mask", ball.astype(np.uint8))):
            _write(root / "VOIs" / kind / f"{pid}_R_{nid}.nii.gz", arr, (0.7, 0.7, 2.5))
        rows.append(f"{pid},{nid},10.0,{rating},5")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    vois = load_vois(root)
    assert [v.label for v in vois] == [1, None, 0]
    v = vois[0]
    assert v.hu.dtype == np.int16 and v.hu.shape[0] >= 17  # 8 slices x 2.5 mm -> 1 mm
    assert abs(v.mask_diameter_mm - 10.0) < 1.5
