"""The shipped weights on the real shared studies and nodules (skipped when data are absent).

Detection: the annotated nodules of a LIDC study and the QIN tumour are found with at most two
false positives per scan at the shipped operating threshold. (The shipped detector trained on
lesions *inserted* into these studies' lungs, with the studies' own lesions masked out of the
loss, so these lesions were never training positives; held-out numbers are in the model card.)

Malignancy: the fold-0 model shipped beside the default weights never saw the fold-0 patients;
on them it must beat chance.
"""

from __future__ import annotations

import numpy as np
import pytest

from lungcad_inference import metrics as M

pytestmark = pytest.mark.realdata

# served equivalent diameter minus the reference, measured 2026-12-07 with the shipped
# detector and segmentation: LIDC-IDRI-0001 -0.9 mm, QIN-LSC-0088 +3.8 mm (the learned
# outline over-segments this tumour; +3.1 mm with the 2026-12-05 segmentation; model card)
SIZE_TOLERANCE_MM = 4.0
SERVED_AUC_MIN = 0.82  # measured 0.862 on the 105 fold-0 nodules (2026-12-05)
SERVED_GAIN_OVER_SIZE_MIN = 0.01  # measured +0.036 over its own size input alone


def _found(study, cands) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    scan = M.ScanResult(study.name, np.array([c.centre_mm for c in cands]).reshape(-1, 3),
                        np.array([c.nodule_probability for c in cands]),
                        np.array([les.centre_mm for les in study.lesions]).reshape(-1, 3),
                        np.array([les.diameter_mm for les in study.lesions]))
    best, fp, _ = M.match_scan(scan)
    return int(np.isfinite(best).sum()), len(fp)


@pytest.mark.parametrize("name", ["LIDC-IDRI-0001", "QIN-LSC-0088"])
def test_shipped_detector_finds_the_annotated_lesions(name, study_loader,  # type: ignore[no-untyped-def]
                                                      shipped_models) -> None:
    from lungcad_inference.inference import detect

    study = study_loader(name)
    cands = detect(shipped_models, study.hu, study.lungs, study.geometry)
    found, fps = _found(study, cands)
    assert found == len(study.lesions) > 0, [c.to_dict() for c in cands]
    # a study the shipped detector never trained on meets the operating rule (<= 1 FP/scan);
    # a training background (its own lesions ignored in the loss) gets a little more room
    held_out = name in shipped_models.detector_meta.get("held_out_studies", [])
    assert fps <= (1 if held_out else 2)
    hit = min(cands, key=lambda c: np.linalg.norm(np.subtract(c.centre_mm,
                                                               study.lesions[0].centre_mm)))
    assert hit.malignancy_probability is not None and 0 <= hit.malignancy_probability <= 1
    # the size a user reads: the served measurement (learned outline up to 20 mm, threshold
    # growth beyond), not the detector's own rough diameter
    from lungcad.findings import ModelInfo
    from lungcad_inference.analysis import PatientInfo, analyze_volume

    doc = analyze_volume(study.hu, study.lungs, study.geometry, {"source": {}}, cands,
                         PatientInfo(), ModelInfo(name="test", version="0"),
                         segmenter=shipped_models.segmenter(),
                         type_model=shipped_models.type_model()).document
    near = min(doc.findings, key=lambda f: np.linalg.norm(np.subtract(
        f.center_mm, study.lesions[0].centre_mm)))
    print(f"{name}: reference {study.lesions[0].diameter_mm:.1f} mm, served equivalent "
          f"{near.equivalent_diameter_mm} mm, long axis {near.diameter_mm} mm, {near.type}")
    assert abs(near.equivalent_diameter_mm - study.lesions[0].diameter_mm) <= SIZE_TOLERANCE_MM


@pytest.mark.parametrize("name", ["QIN-LSC-0049", "QIN-LSC-0064"])
def test_coarse_pass_finds_the_large_masses(name, study_loader, shipped_models) -> None:  # type: ignore[no-untyped-def]
    """The 36 and 39 mm (volume-equivalent) tumours, 50-80 mm across, that the 1 mm pass
    does not report: the 2 mm pass does, as one mass of at least 20 mm, and adds at most one
    false positive. (Both studies are training backgrounds of the shipped detector, their
    tumours ignored in the loss.)"""
    import dataclasses

    from lungcad_inference.inference import detect

    study = study_loader(name)
    fine_only = detect(dataclasses.replace(shipped_models, coarse_min_mm=None), study.hu,
                       study.lungs, study.geometry)
    both = detect(shipped_models, study.hu, study.lungs, study.geometry)
    found_fine, fp_fine = _found(study, fine_only)
    found, fps = _found(study, both)
    print(f"{name}: 1 mm pass alone finds {found_fine}, with the 2 mm pass {found}")
    assert found == 1, [c.to_dict() for c in both]
    assert fps <= fp_fine + 1
    hit = min(both, key=lambda c: np.linalg.norm(np.subtract(c.centre_mm,
                                                              study.lesions[0].centre_mm)))
    assert hit.diameter_mm >= 20.0


def test_shipped_malignancy_fold_model_beats_chance_on_held_out_patients(real_vois) -> None:  # type: ignore[no-untyped-def]
    from lungcad_inference.networks import MalignancyNet
    from lungcad_inference.training.experiments import patient_hashes
    from lungcad_inference.training.malignancy_data import build_set, patient_folds
    from lungcad_inference.training.train_malignancy import predict_malignancy
    from lungcad_inference.weights import MALIGNANCY, WEIGHTS_DIR, load_network

    model, meta = load_network(WEIGHTS_DIR / f"{MALIGNANCY}_fold0.pt", MalignancyNet)
    cfg = meta["training_config"]
    labelled = build_set(real_vois)
    held = patient_folds(labelled.patients, cfg["folds"], cfg["seed"]) == 0
    data = labelled.subset(held)
    assert patient_hashes(data.patients) == meta["held_out_patients_sha1"]  # same split
    assert len(data.labels) > 60
    probs = predict_malignancy(model, data)
    ci = M.bootstrap_ci(data.labels, probs, data.patients,
                        lambda y, p: {"auc": M.auc(y, p)}, n=300)
    assert ci["auc"]["ci95"][0] > 0.5, ci


def test_served_malignancy_score_ranks_held_out_nodules(real_vois) -> None:  # type: ignore[no-untyped-def]
    """``score_malignancy``, the function serving calls, on the fold-0 patients the fold-0
    weights never saw: its AUC must stay near the cross-validated figure (an inverted or
    constant score fails), and above what the size it is given achieves alone."""
    import torch

    from lungcad_inference.inference import Models, score_malignancy
    from lungcad_inference.networks import MalignancyNet
    from lungcad_inference.training.malignancy_data import CANVAS, patient_folds, voi_cube
    from lungcad_inference.weights import MALIGNANCY, WEIGHTS_DIR, load_network

    model, meta = load_network(WEIGHTS_DIR / f"{MALIGNANCY}_fold0.pt", MalignancyNet)
    cfg = meta["training_config"]
    labelled = [v for v in real_vois if v.label is not None]
    folds = patient_folds(np.array([v.patient_id for v in labelled]), cfg["folds"], cfg["seed"])
    held = [v for v, f in zip(labelled, folds, strict=True) if f == 0]
    c = (CANVAS - 32) // 2
    cubes = [voi_cube(v)[0][c:c + 32, c:c + 32, c:c + 32] for v in held]
    models = Models(None, model, torch.device("cpu"), 0.5, {}, meta)
    probs, size = score_malignancy(models, cubes)
    y = np.array([v.label for v in held])
    groups = np.array([v.patient_id for v in held])
    cnn = M.bootstrap_ci(y, probs, groups, lambda a, b: {"auc": M.auc(a, b)}, n=300)["auc"]
    size_auc = M.auc(y, size)
    print(f"fold 0: CNN AUC {cnn}, size alone {size_auc:.3f}, n={len(y)}")
    assert cnn["value"] >= SERVED_AUC_MIN
    assert cnn["value"] > size_auc + SERVED_GAIN_OVER_SIZE_MIN
