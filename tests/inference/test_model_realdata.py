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
    assert fps <= 2
    hit = min(cands, key=lambda c: np.linalg.norm(np.subtract(c.centre_mm,
                                                               study.lesions[0].centre_mm)))
    assert hit.malignancy_probability is not None and 0 <= hit.malignancy_probability <= 1
    assert hit.diameter_mm == pytest.approx(study.lesions[0].diameter_mm, rel=0.6)


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
