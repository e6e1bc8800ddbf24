"""LUNA16 layout: a ``<seriesuid>.mhd`` scan with ``annotations.csv`` rows, through the same
preprocessing as serving (synthetic chest CT, so it always runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcad.imaging import Volume
from lungcad.synthetic import make_chest_ct
from lungcad_inference.data.luna16 import read_annotations
from lungcad_inference.data.studies import load_study


def test_mhd_study_with_annotation_rows(tmp_path: Path) -> None:
    import SimpleITK as sitk

    ct = make_chest_ct(seed=2)
    uid = "1.2.826.0.1.3680043.8.498.1"
    mhd = tmp_path / f"{uid}.mhd"
    sitk.WriteImage(Volume(ct.hu, ct.geometry).to_sitk(), str(mhd))
    rows = ["seriesuid,coordX,coordY,coordZ,diameter_mm"]
    rows += [f"{uid},{n.center_lps[0]},{n.center_lps[1]},{n.center_lps[2]},{n.diameter_mm}"
             for n in ct.nodules]
    rows.append("9.9.9,0,0,0,5")  # another scan's row
    csv_path = tmp_path / "annotations.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    assert len(read_annotations(csv_path)[uid]) == len(ct.nodules)

    study = load_study(mhd, tmp_path / "cache", luna_csv=csv_path, threads=1)
    assert study.series_uid == uid
    assert len(study.lesions) == len(ct.nodules) > 0
    idx = study.lesion_centres_zyx()
    assert np.all(idx >= 0) and np.all(idx < np.asarray(study.hu.shape))
    for c in np.rint(idx).astype(int):  # the nodules are dense in the preprocessed volume
        assert study.hu[tuple(c)] > -700  # ground glass included
    again = load_study(mhd, tmp_path / "cache", luna_csv=csv_path, threads=1)  # from the cache
    np.testing.assert_array_equal(again.hu, study.hu)
    assert again.lesions[0].centre_mm == study.lesions[0].centre_mm
