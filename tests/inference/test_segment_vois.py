"""``lungcad evaluate segmentation`` pieces on a synthetic VOI folder in the real layout: masks
on each VOI's own grid, measurements, Dice, type agreement and the summary's intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lungcad_inference.segment_vois import (
    dice,
    readers_type,
    segment_voi_set,
    summarise,
    weighted_kappa,
)


class _Threshold(torch.nn.Module):
    """A stand-in network: logit > 0 where the windowed HU is above -500 HU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1] - (-500 + 300) / 700.0) * 50


def _write(path: Path, array: np.ndarray, spacing_xyz: tuple[float, float, float],
           origin: tuple[float, float, float]) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def _voi_folder(root: Path) -> Path:
    base = root / "lidc-nodule-vois"
    rows = ["patient_id,nodule_id,coordX,coordY,coordZ,diameter_mm,Texture_value"]
    spacing = (0.7, 0.7, 2.5)
    origin = (10.0, 20.0, -100.0)
    for pid, radius, texture, hu_in in (("P-1", 5.0, 5, 40), ("P-2", 8.0, 1, -300)):
        shape = (12, 48, 48)
        zz, yy, xx = np.indices(shape)
        centre = np.array([5.5, 23.5, 23.5])
        ball = ((zz - centre[0]) * 2.5) ** 2 + ((yy - centre[1]) * 0.7) ** 2 + \
            ((xx - centre[2]) * 0.7) ** 2 <= radius**2
        hu = np.where(ball, hu_in, -850).astype(np.int16)
        _write(base / "VOIs" / "image" / f"{pid}_R_1.nii.gz", hu, spacing, origin)
        _write(base / "VOIs" / "nodule_mask" / f"{pid}_R_1.nii.gz", ball.astype(np.uint8),
               spacing, origin)
        world = np.array(origin) + centre[::-1] * np.array(spacing)
        rows.append(f"{pid},1,{world[0]},{world[1]},{world[2]},{2 * radius},{texture}")
    (base / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_masks_on_each_voi_grid_with_dice_and_measurements(tmp_path: Path) -> None:
    import SimpleITK as sitk

    src = _voi_folder(tmp_path / "in")
    out = tmp_path / "out"
    result = segment_voi_set(lambda pid: (_Threshold(), 0), src, out)
    rows = {r["patient_id"]: r for r in result["rows"]}
    for pid in ("P-1", "P-2"):
        mask = sitk.ReadImage(str(out / "masks" / f"{pid}_R_1.nii.gz"))
        image = sitk.ReadImage(str(src / "lidc-nodule-vois" / "VOIs" / "image" /
                                   f"{pid}_R_1.nii.gz"))
        assert mask.GetSize() == image.GetSize() and mask.GetSpacing() == image.GetSpacing()
        assert mask.GetOrigin() == image.GetOrigin()
        assert sitk.GetArrayFromImage(mask).dtype == np.uint8
        assert rows[pid]["dice"] > 0.8
        assert abs(rows[pid]["volume_error"]) < 0.25
    assert rows["P-2"]["long_axis_mm"] == pytest.approx(16.0, abs=2.0)
    assert rows["P-1"]["type"] == "solid" and rows["P-2"]["type"] == "ground-glass"
    assert rows["P-2"]["readers_type"] == "ground-glass"
    text = (out / "segmentation.csv").read_text().splitlines()
    assert text[0].startswith("patient_id,nodule_id,") and len(text) == 3
    assert (out / "segmentation_metrics.json").exists()


def test_dice_and_reader_types() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    a[:2], b[1:3] = True, True
    assert dice(a, b) == pytest.approx(0.5)
    assert [readers_type(t) for t in (1, 2, 3, 4, 5, None)] == \
        ["ground-glass", "ground-glass", "part-solid", "solid", "solid", None]


def test_weighted_kappa_perfect_chance_and_near_misses() -> None:
    t = ["solid"] * 5 + ["part-solid"] * 3 + ["ground-glass"] * 2
    assert weighted_kappa(t, t) == pytest.approx(1.0)
    off_by_one = ["part-solid"] * 5 + ["ground-glass"] * 3 + ["part-solid"] * 2
    far = ["ground-glass"] * 5 + ["solid"] * 3 + ["solid"] * 2
    assert weighted_kappa(off_by_one, t) > weighted_kappa(far, t)
    assert weighted_kappa(["solid"] * 10, t) == pytest.approx(0.0)


def test_summary_intervals_bracket_the_median() -> None:
    rng = np.random.default_rng(0)
    rows = [{"patient_id": f"P{i // 2}", "dice": float(d), "volume_error": float(v),
             "readers_diameter_mm": 8.0, "long_axis_mm": 9.0, "type": "solid",
             "readers_type": "solid"}
            for i, (d, v) in enumerate(zip(rng.uniform(0.6, 0.95, 60),
                                           rng.normal(0, 0.1, 60), strict=True))]
    s = summarise(rows)
    lo, hi = s["dice_median"]["ci95"]
    assert lo <= s["dice_median"]["value"] <= hi and hi - lo < 0.2
    assert s["dice_median_by_size"]["6-10 mm"]["n"] == 60
    assert s["long_axis_minus_readers_diameter_mm"]["median"] == pytest.approx(1.0)


def _scored(fold: int, dice_by_t: dict[float, float]) -> dict:  # type: ignore[type-arg]
    return {"fold": fold, "by_threshold": {t: (None, None, {"dice": d})
                                           for t, d in dice_by_t.items()}}


def test_threshold_is_chosen_by_mean_dice_and_without_the_fold() -> None:
    from lungcad_inference.segment_vois import choose_threshold

    scored = [_scored(0, {0.5: 0.9, 0.7: 0.2}), _scored(1, {0.5: 0.6, 0.7: 0.8}),
              _scored(2, {0.5: 0.6, 0.7: 0.8})]
    assert choose_threshold(scored, (0.5, 0.7)) == 0.5  # mean 0.70 against 0.60
    # fold 0's own VOI decides nothing about fold 0: the others prefer 0.7
    assert choose_threshold([v for v in scored if v["fold"] != 0], (0.5, 0.7)) == 0.7
    assert choose_threshold([_scored(0, {0.5: None, 0.7: None})], (0.5, 0.7)) == 0.5  # type: ignore[dict-item]


def test_cross_validation_scores_each_voi_at_a_threshold_chosen_without_its_fold(
        tmp_path: Path) -> None:
    from lungcad_inference.segment_vois import (
        CALIBRATION_THRESHOLDS,
        cross_validated_segmentation,
        read_outlines,
    )
    from lungcad_inference.training.splits import fold_of

    src = _voi_folder(tmp_path / "in")
    out = tmp_path / "cv"
    summary = cross_validated_segmentation([_Threshold(), _Threshold()], src, out,
                                           threads=1)["summary"]
    assert set(summary["threshold_by_fold"]) == {"0", "1"}
    assert summary["calibrated_threshold"] in CALIBRATION_THRESHOLDS
    assert set(summary["dice_mean_by_threshold"]) == {str(t) for t in CALIBRATION_THRESHOLDS}
    assert summary["vois_with_reference"] == 2 and summary["dice_median"]["value"] > 0.8
    assert {fold_of("P-1", 2), fold_of("P-2", 2)} <= {0, 1}
    assert set(read_outlines(out / "outlines.npz")) == {("P-1", "1"), ("P-2", "1")}
