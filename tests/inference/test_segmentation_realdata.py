"""The learned segmentation on real nodules it never saw (skipped when the data are absent).

- The fold-0 model shipped beside the default weights never saw the fold-0 patients of the
  shared split; on a fixed half of their VOIs its median Dice against the readers' consensus
  masks and its volume error must stay near the cross-validated figures of the model card.
- The QIN patients are in no VOI: each QIN tumour is measured as served (learned outline up
  to 20 mm, the threshold growth beyond) from a seed at its reference centre with its
  reference diameter as the detector's size guess, and the volume must fall near the three
  algorithms' (within the range measured on 2026-12-05: QIN-LSC-0088, 15.6 mm and outlined by
  the network, comes out 38 % above the algorithms' largest volume).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.realdata

# cross-validated figures (docs/model_card.md) minus a margin for a half-fold sample
# (2026-12-07 weights: this half 0.738 and 0.34, fold 0's own threshold 0.6; the 2026-12-05
# weights measured 0.665 and 0.70 and fail these bounds)
FOLD0_MEDIAN_DICE_MIN = 0.70
FOLD0_MEDIAN_ABS_VOLUME_ERROR_MAX = 0.45
VOLUME_RANGE = (0.7, 1.5)  # of the three algorithms' smallest and largest volume
# the three algorithms' volumes (mL), ../shared/data/README.md
QIN_VOLUMES = {"QIN-LSC-0088": (2.0, 1.9, 2.1), "QIN-LSC-0014": (6.7, 5.9, 8.3),
               "QIN-LSC-0049": (24.1, 26.5, 25.9), "QIN-LSC-0064": (34.9, 30.9, 29.6)}


def _weights(name: str) -> Path:
    from lungcad_inference.weights import WEIGHTS_DIR

    path = WEIGHTS_DIR / name
    if not path.exists():
        pytest.fail(f"the shipped segmentation weights are missing: {path}")
    return path


def test_fold_model_outlines_held_out_patients(shared_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lungcad_inference.networks import NoduleSegNet
    from lungcad_inference.segment_vois import segment_voi_set
    from lungcad_inference.training.experiments import patient_hashes
    from lungcad_inference.training.splits import fold_of
    from lungcad_inference.weights import load_network

    model, meta = load_network(_weights("segmentation_fold0.pt"), NoduleSegNet)
    assert meta["fold"] == 0
    zip_path = shared_data / "nodules" / "lidc-nodule-vois.zip"
    picked: list[str] = []

    def select(row: dict[str, str]) -> bool:
        if fold_of(row["patient_id"]) != 0:
            return False
        picked.append(row["patient_id"])
        return len(picked) % 2 == 1  # a fixed half of the fold

    result = segment_voi_set(lambda pid: (model, 0), zip_path, tmp_path, write_masks=False,
                             select=select,  # the threshold chosen without fold 0's patients
                             threshold=float(meta.get("probability_threshold", 0.5)))
    assert set(patient_hashes(picked)) <= set(meta["held_out_patients_sha1"])  # never seen
    summary = result["summary"]
    assert summary["vois_with_reference"] > 60
    print({k: summary[k] for k in ("dice_median", "dice_mean", "volume_abs_error_median")})
    assert summary["dice_median"]["value"] >= FOLD0_MEDIAN_DICE_MIN
    assert summary["volume_abs_error_median"]["value"] <= FOLD0_MEDIAN_ABS_VOLUME_ERROR_MAX


@pytest.mark.parametrize("name", sorted(QIN_VOLUMES))
def test_qin_tumour_volume_near_the_algorithms(name, study_loader, shipped_models) -> None:  # type: ignore[no-untyped-def]
    from lungcad.findings import ModelInfo
    from lungcad_inference.analysis import PatientInfo, analyze_volume

    assert shipped_models.segmentation is not None
    study = study_loader(name)
    [centre] = study.lesion_centres_zyx()

    class Seed:  # a candidate at the reference centre with the reference size as its guess
        centre_zyx = tuple(centre)
        diameter_mm = float(study.lesions[0].diameter_mm)
        nodule_probability = 1.0
        malignancy_probability = 0.5

    result = analyze_volume(study.hu, study.lungs, study.geometry, {"source": {}}, [Seed()],
                            PatientInfo(), ModelInfo(name="test", version="0"),
                            segmenter=shipped_models.segmenter(),
                            type_model=shipped_models.type_model())
    [m] = result.measurements
    volume_ml = m.volume_mm3 / 1000.0  # 1 mm voxels
    ref = QIN_VOLUMES[name]
    print(f"{name}: {volume_ml:.1f} mL (algorithms {ref}), {m.nodule_type}")
    assert VOLUME_RANGE[0] * min(ref) <= volume_ml <= VOLUME_RANGE[1] * max(ref)
