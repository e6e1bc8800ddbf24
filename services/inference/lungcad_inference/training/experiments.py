"""The two experiments behind ``lungcad train``: detection leave-one-study-out plus a final
model on all studies, and malignancy patient-level K-fold CV plus a final model on all nodules.
Each writes a run folder (metrics JSON, plots, predictions, checkpoints) and, with ``ship``,
the weights and sidecar into the package's ``weights/``."""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference.data.studies import Study
from lungcad_inference.data.vois import Voi
from lungcad_inference.intensity import HU_WINDOW, INPUT_SPACING_MM

log = logging.getLogger(__name__)
VERSION = "0.1.0"


def _provenance() -> dict[str, Any]:
    import torch

    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine()}


def patient_hashes(patients: Any) -> list[str]:
    """Short SHA-1 digests of patient IDs: enough to detect train/test overlap without
    shipping the data set's identifiers in the weights' sidecar."""
    import hashlib

    return sorted({hashlib.sha1(str(p).encode()).hexdigest()[:12] for p in patients})


def insertion_pool(vois: list[Voi], studies: list[Study]) -> list[Voi]:
    """Real nodules that may be inserted: never those of the full studies' own patients."""
    own = {s.name for s in studies}
    return [v for v in vois if v.patient_id not in own]


def choose_threshold(cv_summary: dict[str, Any], max_fp_per_scan: float) -> float:
    """Lowest threshold whose leave-one-study-out FP/scan stays within ``max_fp_per_scan``."""
    curve = cv_summary["froc"]
    best = 0.9
    for t, fp in zip(curve["thresholds"], curve["fp_per_scan"], strict=True):
        if np.isfinite(t) and fp <= max_fp_per_scan:
            best = min(best, t)
    return float(max(best, 0.05))


def _loso_fold(held: Study, studies: list[Study], vois: list[Voi], pool: list[Voi]
               ) -> tuple[int, list[Study], list[Voi], list[Voi]]:
    """A leave-one-study-out fold: the VOI fold of the held-out study's patient, the training
    studies, the insertable VOIs outside that fold, and the held-out patients' VOIs."""
    from lungcad_inference.training.splits import fold_of

    fold = fold_of(held.name)
    train = [s for s in studies if s is not held]
    train_pool = [v for v in pool if fold_of(v.patient_id) != fold]
    held_vois = [v for v in vois if fold_of(v.patient_id) == fold and v.patient_id != held.name]
    return fold, train, train_pool, held_vois


def run_detection(studies: list[Study], vois: list[Voi], config: Any, out_dir: Path, *,
                  cv: bool = True, ship: bool = False, max_fp_per_scan: float = 1.0,
                  ship_fold: str | None = None, progress: bool = True,
                  miner: Any | None = None, inserted_per_study: int = 24) -> dict[str, Any]:
    """Leave-one-study-out (``cv``), then the model to ship: a final model trained on all
    studies, or (``ship_fold``) the fold model that held that study out.

    Each fold trains without the held-out study and without the VOIs of the held-out
    patients (the shared split: the fold of the study's patient,
    :mod:`lungcad_inference.training.splits`), then scores the held-out study's own lesions and
    ``inserted_per_study`` held-out VOIs pasted into its lungs
    (:mod:`lungcad_inference.detection_benchmark`). ``miner``: loaded models whose false
    positives on each study become hard-negative crops. Finished folds are not trained again,
    and an interrupted one resumes from its checkpoint. Several processes started on one
    ``out_dir`` share the fold training (:func:`claim`); the one that takes ``loso`` scores
    the folds and trains or ships the final model, the others return."""
    from lungcad_inference.detection_benchmark import (
        grouped_froc,
        mine_hard_negatives,
        records_table,
        score_study,
    )
    from lungcad_inference.evaluation import detection_summary, write_detection
    from lungcad_inference.inference import load_models
    from lungcad_inference.training.train_detector import train_detector
    from lungcad_inference.weights import DETECTOR, WEIGHTS_DIR, save_weights

    out_dir.mkdir(parents=True, exist_ok=True)
    pool = insertion_pool(vois, studies)
    hard = {s.name: mine_hard_negatives(miner, s) for s in studies} if miner is not None \
        else {}
    result: dict[str, Any] = {"config": dataclasses.asdict(config),
                              "real_lesions_inserted_pool": len(pool),
                              "hard_negatives": {k: len(v) for k, v in hard.items()}}
    threshold = 0.5
    fold_models: dict[str, tuple[Any, dict[str, Any]]] = {}
    if cv:
        scans, cands, folds = [], {}, []
        real_records, ins_scans, ins_records = [], [], []
        fold_config = dataclasses.replace(config, iterations=config.cv_iterations)
        pending = list(studies)
        while pending:  # train the folds, shared with other processes on the same out_dir
            held = next((s for s in pending if (out_dir / f"loso-{s.name}" / "detector.pt")
                         .exists() or claim(out_dir / f"loso-{s.name}")), None)
            if held is None:  # the rest are being trained by other processes: wait
                time.sleep(20)
                continue
            pending.remove(held)
            fold_dir = out_dir / f"loso-{held.name}"
            if not (fold_dir / "detector.pt").exists():
                fold, train, train_pool, held_vois = _loso_fold(held, studies, vois, pool)
                model, summary = train_detector(train, train_pool, fold_config, fold_dir,
                                                progress, hard_negatives=hard)
                save_weights(model, config.network_kwargs(), fold_dir / "detector.pt",
                             {"summary": summary, "voi_fold_held_out": fold,
                              "held_out_patients_sha1": patient_hashes(
                                  v.patient_id for v in held_vois)})
            (fold_dir / LOCK).unlink(missing_ok=True)
        if not claim(out_dir / "loso"):
            return {"finished_by_another_process": True}
        for held in studies:
            fold, train, train_pool, held_vois = _loso_fold(held, studies, vois, pool)
            fold_dir = out_dir / f"loso-{held.name}"
            models = load_models(config.device, config.threads,
                                 detector_path=fold_dir / "detector.pt",
                                 malignancy_path=fold_dir / "none.pt",
                                 segmentation_path=fold_dir / "none.pt", threshold=0.5)
            model, summary = models.detector, models.detector_meta.get("summary", {})
            rng = np.random.default_rng(config.seed + 17)
            real_scan, real, i_scans, i_records = score_study(
                models, held, held_vois, rng, per_volume=6,
                volumes=max(1, inserted_per_study // 6))
            scans += real_scan
            cands[held.name] = []
            real_records += real
            ins_scans += i_scans
            ins_records += i_records
            fold_models[held.name] = (model, summary)
            folds.append({"held_out": held.name, "voi_fold_held_out": fold,
                          "train": [s.name for s in train], "train_vois": len(train_pool),
                          "held_out_vois_inserted": len(i_records),
                          "wall_s": summary.get("wall_s")})
        cv_summary = detection_summary(scans, 0.5)
        threshold = choose_threshold(cv_summary, max_fp_per_scan)
        cv_summary = detection_summary(scans, threshold)
        cv_summary["folds"] = folds
        cv_summary["real"] = grouped_froc(real_records, scans)
        cv_summary["inserted"] = grouped_froc(ins_records, ins_scans)
        write_detection(out_dir / "loso", scans, cands, cv_summary, "leave-one-study-out")
        (out_dir / "loso" / "lesions.json").write_text(json.dumps(
            {"real": records_table(real_records), "inserted": records_table(ins_records)},
            indent=1))
        result["leave_one_study_out"] = cv_summary
    if ship_fold and ship_fold in fold_models:
        model, summary = fold_models[ship_fold]
        trained_on = [s.name for s in studies if s.name != ship_fold]
    else:
        model, summary = train_detector(studies, pool, config, out_dir / "final", progress,
                                        hard_negatives=hard)
        trained_on = [s.name for s in studies]
    result["final"] = summary
    sidecar = {"version": VERSION, "network": "NoduleDetector", "input_spacing_mm":
               INPUT_SPACING_MM, "hu_window": list(HU_WINDOW), "output_stride": 4,
               "operating_threshold": threshold,
               "operating_threshold_rule": f"lowest threshold with <= {max_fp_per_scan} FP/scan "
                                           "in leave-one-study-out",
               "training_config": dataclasses.asdict(config),
               "training_studies": trained_on,
               "held_out_studies": [s.name for s in studies if s.name not in trained_on],
               "own_lesions_in_training": "ignored (no loss within radius + 4 mm)",
               "inserted_real_nodules": len(pool),
               "metrics": {k: v for k, v in result.get("leave_one_study_out", {}).items()
                           if k not in ("froc",)},
               "provenance": _provenance()}
    save_weights(model, config.network_kwargs(), out_dir / "final" / "detector.pt", sidecar)
    if ship:
        save_weights(model, config.network_kwargs(), WEIGHTS_DIR / f"{DETECTOR}.pt", sidecar)
    (out_dir / "detection_run.json").write_text(json.dumps(result, indent=2, default=str))
    (out_dir / "loso" / LOCK).unlink(missing_ok=True)
    return result


def size_auc_cv(vois: list[Voi], outlines: dict[tuple[str, str], np.ndarray]
                ) -> dict[str, Any]:
    """How well size alone separates malignant from benign (median rating 1-2 vs 4-5) on the
    VOIs: the learned out-of-fold outline's volume-equivalent diameter, the readers' consensus
    mask's, and the readers' ``diameter_mm``, with patient-level bootstrap intervals and the
    paired differences (AUC of a single size is rank-based: no fitting)."""
    from lungcad_inference import metrics as M
    from lungcad_inference.nodule_size import equivalent_diameter_mm

    rows = [(v, outlines.get((v.patient_id, v.nodule_id))) for v in vois if v.label is not None]
    rows = [(v, o) for v, o in rows if o is not None and o.shape == v.hu.shape]
    if len(rows) < 20:
        return {}
    y = np.array([v.label for v, _ in rows])
    groups = np.array([v.patient_id for v, _ in rows])
    scores = {"learned_outline": np.array([equivalent_diameter_mm(o) for _, o in rows]),
              "consensus_mask": np.array([v.mask_diameter_mm for v, _ in rows]),
              "readers_diameter": np.array([v.diameter_mm for v, _ in rows])}
    out: dict[str, Any] = {"n": len(rows), "malignant": int(y.sum())}
    for name, sc in scores.items():
        out[name] = M.bootstrap_ci(y, sc, groups, lambda a, b: {"auc": M.auc(a, b)})["auc"]
    for base in ("consensus_mask", "readers_diameter"):
        def delta(yy: np.ndarray, idx: np.ndarray, base: str = base) -> dict[str, float]:
            i = idx.astype(int)
            return {"d": M.auc(yy, scores["learned_outline"][i]) - M.auc(yy, scores[base][i])}
        out[f"learned_minus_{base}"] = M.bootstrap_ci(y, np.arange(len(y)), groups, delta)["d"]
    return out


def type_model_cv(vois: list[Voi], outlines: dict[tuple[str, str], np.ndarray]
                  ) -> tuple[dict[str, Any], Any]:
    """Patient-level CV (the shared split) of the nodule-type head on the learned out-of-fold
    outlines against the readers' texture, and the head fitted on all of them."""
    from lungcad_inference.clinical.nodule_type import TYPES, fit_type_model, type_features
    from lungcad_inference.segment_vois import readers_type, weighted_kappa
    from lungcad_inference.training.splits import fold_array

    rows = [(v, outlines.get((v.patient_id, v.nodule_id))) for v in vois
            if v.texture_rating is not None]
    rows = [(v, o) for v, o in rows if o is not None and o.shape == v.hu.shape and o.any()]
    if len(rows) < 20:
        return {}, None
    feats = np.stack([type_features(v.hu, o) for v, o in rows])
    truth = [str(readers_type(v.texture_rating)) for v, _ in rows]
    folds = fold_array([v.patient_id for v, _ in rows])
    pred = [""] * len(rows)
    for k in np.unique(folds):
        tr, te = np.nonzero(folds != k)[0], np.nonzero(folds == k)[0]
        model = fit_type_model(feats[tr], [truth[i] for i in tr])
        for i, p in zip(te, model.predict(feats[te]), strict=True):
            pred[i] = p
    summary = {"n": len(rows), "weighted_kappa": weighted_kappa(pred, truth),
               "confusion": {f"readers {t}": {f"ours {o}": sum(
                   1 for a, b in zip(pred, truth, strict=True) if a == o and b == t)
                   for o in TYPES} for t in TYPES}}
    return summary, fit_type_model(feats, truth)


def run_malignancy(vois: list[Voi], config: Any, out_dir: Path, *, cv: bool = True,
                   ship: bool = False, progress: bool = True,
                   outlines: dict[tuple[str, str], np.ndarray] | None = None
                   ) -> dict[str, Any]:
    """Patient-level CV on the shared split (:mod:`lungcad_inference.training.splits`) and a
    final model. ``outlines``: the learned segmentation's out-of-fold masks per VOI (from
    ``lungcad train segmentation``'s ``cv/outlines.npz``), the size the network receives and
    the own-segmentation baseline; without them, the -600 HU threshold segmentation."""
    from lungcad_inference.evaluation import malignancy_summary, write_malignancy
    from lungcad_inference.training.malignancy_data import build_set
    from lungcad_inference.training.splits import fold_array
    from lungcad_inference.training.train_malignancy import (
        cross_validate,
        save_predictions,
        train_malignancy,
    )
    from lungcad_inference.weights import MALIGNANCY, WEIGHTS_DIR, save_weights

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = build_set(vois, outlines=outlines)
    size_source = ("learned segmentation (out-of-fold outlines)" if outlines
                   else "threshold segmentation at -600 HU")
    result: dict[str, Any] = {"config": dataclasses.asdict(config),
                              "label_rule": "Malignancy_value 1-2 benign, 4-5 malignant, 3 "
                                            "excluded", "size_source": size_source,
                              "build_s": round(time.perf_counter() - t0)}
    if cv:
        folds = fold_array(data.patients, config.folds)
        fold_models: list[Any] = []
        probs = cross_validate(data, folds, config, progress, fold_models)
        summary = malignancy_summary(data.labels, probs, data.patients)
        summary["folds"] = [int((folds == k).sum()) for k in range(config.folds)]
        summary["fold_of_patient"] = {p: int(f) for p, f in zip(data.patients, folds,
                                                                 strict=True)}
        write_malignancy(out_dir / "cv", data.labels, probs, summary,
                         f"Malignancy, patient-level {config.folds}-fold CV (real nodules)")
        save_predictions(out_dir / "cv" / "predictions.csv", data, probs["cnn"])
        result["cross_validation"] = {k: v for k, v in summary.items()
                                      if k != "fold_of_patient"}
        result["cv_wall_s"] = round(time.perf_counter() - t0)
        # fold 0's model ships too, so tests can score real nodules it never saw
        fold_side = {"version": VERSION, "network": "MalignancyNet", "fold": 0,
                     "fold_rule": f"training.splits.fold_of(patient_id, k={config.folds}); "
                                  "this model never saw fold 0",
                     "size_source": size_source,
                     "held_out_patients_sha1": patient_hashes(data.patients[folds == 0]),
                     "training_config": dataclasses.asdict(config),
                     "label_rule": result["label_rule"], "provenance": _provenance()}
        save_weights(fold_models[0], config.network_kwargs(),
                     out_dir / "cv" / f"{MALIGNANCY}_fold0.pt", fold_side)
        if ship:
            save_weights(fold_models[0], config.network_kwargs(),
                         WEIGHTS_DIR / f"{MALIGNANCY}_fold0.pt", fold_side)
    t1 = time.perf_counter()
    model = train_malignancy(data, config, progress)
    result["final_wall_s"] = round(time.perf_counter() - t1)
    sidecar = {"version": VERSION, "network": "MalignancyNet", "input_spacing_mm":
               INPUT_SPACING_MM, "hu_window": list(HU_WINDOW), "patch_mm": 32,
               "features": ["log(segmented_diameter_mm / 8)"] if config.use_size else [],
               "size_source": size_source,
               "label_rule": result["label_rule"], "training_config": dataclasses.asdict(config),
               "training_nodules": int(len(data.labels)),
               "training_patients_sha1": patient_hashes(data.patients),
               "metrics": result.get("cross_validation", {}), "provenance": _provenance()}
    save_weights(model, config.network_kwargs(), out_dir / "final" / "malignancy.pt", sidecar)
    if ship:
        save_weights(model, config.network_kwargs(), WEIGHTS_DIR / f"{MALIGNANCY}.pt", sidecar)
    (out_dir / "malignancy_run.json").write_text(json.dumps(result, indent=2, default=str))
    return result


LOCK = "training.lock"


def claim(fold_dir: Path) -> bool:
    """Take a fold for this process (a lock file holding its PID), so several processes can
    share the folds of one run; a lock whose process has died is taken over."""
    import os

    fold_dir.mkdir(parents=True, exist_ok=True)
    lock = fold_dir / LOCK
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(lock.read_text().strip() or 0)
            os.kill(pid, 0)
            return pid == os.getpid()
        except (ValueError, ProcessLookupError, FileNotFoundError):
            lock.unlink(missing_ok=True)
            return claim(fold_dir)
        except PermissionError:
            return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def run_segmentation(vois: list[Voi], studies: list[Study], config: Any, out_dir: Path, *,
                     cv: bool = True, ship: bool = False, progress: bool = True,
                     voi_source: Path | None = None) -> dict[str, Any]:
    """Patient-level K-fold CV of the segmentation network (the shared split of
    :mod:`lungcad_inference.training.splits`), scored on the held-out VOIs' own grids when
    ``voi_source`` (the VOI zip or folder) is given, then a final model on every VOI. Fold and
    final runs resume from their checkpoints; a finished fold is not trained again. Several
    processes started on one ``out_dir`` share the folds (:func:`claim`); the one that takes
    the final model scores the CV and trains it, the others return when the folds are done."""
    from lungcad_inference.networks import NoduleSegNet
    from lungcad_inference.training.segmentation_data import prepare_background
    from lungcad_inference.training.splits import FOLDS, fold_array
    from lungcad_inference.training.train_segmentation import train_segmentation
    from lungcad_inference.weights import SEGMENTATION, WEIGHTS_DIR, load_network, save_weights

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    backgrounds = [prepare_background(s, rng) for s in studies]
    type_model = None
    folds = fold_array([v.patient_id for v in vois])
    result: dict[str, Any] = {"config": dataclasses.asdict(config),
                              "backgrounds": [s.name for s in studies],
                              "split": f"training.splits.fold_of (SHA-1 of patient_id mod "
                                       f"{FOLDS})"}
    base_side = {"version": VERSION, "network": "NoduleSegNet", "input_spacing_mm":
                 INPUT_SPACING_MM, "hu_window": list(HU_WINDOW),
                 "training_config": dataclasses.asdict(config), "provenance": _provenance()}
    if cv:
        fold_paths = [out_dir / f"fold{k}" / f"{SEGMENTATION}.pt" for k in range(FOLDS)]
        pending = list(range(FOLDS))
        while pending:
            k = next((k for k in pending if fold_paths[k].exists()
                      or claim(fold_paths[k].parent)), None)
            if k is None:  # the rest are being trained by other processes: wait for them
                time.sleep(20)
                continue
            pending.remove(k)
            fold_dir = out_dir / f"fold{k}"
            path = fold_paths[k]
            if not path.exists():
                train = [v for v, f in zip(vois, folds, strict=True) if f != k]
                fold_config = dataclasses.replace(config, iterations=config.cv_iterations)
                model, summary = train_segmentation(train, backgrounds, fold_config, fold_dir,
                                                    progress)
                held = [v.patient_id for v, f in zip(vois, folds, strict=True) if f == k]
                save_weights(model, config.network_kwargs(), path,
                             {**base_side, "fold": k, "summary": summary,
                              "training_patients_sha1": patient_hashes(
                                  v.patient_id for v in train),
                              "held_out_patients_sha1": patient_hashes(held)})
            (fold_dir / LOCK).unlink(missing_ok=True)
        if not claim(out_dir / "final"):
            return {"finished_by_another_process": True}
        if voi_source is not None:
            from lungcad_inference.segment_vois import (
                cross_validated_segmentation,
                read_outlines,
            )

            cv_dir = out_dir / "cv"
            done = cv_dir / "segmentation_metrics.json"
            if (cv_dir / "outlines.npz").exists() and done.exists():  # scored already
                result["cross_validation"] = {"summary": json.loads(done.read_text())}
            else:
                models = [load_network(p, NoduleSegNet)[0] for p in fold_paths]
                result["cross_validation"] = cross_validated_segmentation(
                    models, voi_source, cv_dir, threads=config.threads)
            outlines = read_outlines(cv_dir / "outlines.npz")
            type_cv, type_model = type_model_cv(vois, outlines)
            result["type_model_cv"] = type_cv
            result["size_auc_cv"] = size_auc_cv(vois, outlines)
            (cv_dir / "segmentation_cv_extra.json").write_text(json.dumps(
                {"type_model_cv": type_cv, "size_auc_cv": result["size_auc_cv"]}, indent=2))
        cv_summary = result.get("cross_validation", {}).get("summary", {})
        if ship:  # a fold model ships too, so tests can score patients it never saw
            fold0, side0 = load_network(fold_paths[0], NoduleSegNet)
            side0 = {k: v for k, v in side0.items() if k != "training_patients_sha1"}
            if "threshold_by_fold" in cv_summary:  # chosen without fold 0's patients
                side0["probability_threshold"] = cv_summary["threshold_by_fold"]["0"]
            save_weights(fold0, config.network_kwargs(), WEIGHTS_DIR / f"{SEGMENTATION}_fold0.pt",
                         side0)
    final_dir = out_dir / "final"
    model, summary = train_segmentation(vois, backgrounds, config, final_dir, progress)
    result["final"] = summary
    sidecar = {**base_side, "training_vois": len(vois),
               "training_patients_sha1": patient_hashes(v.patient_id for v in vois),
               "metrics": result.get("cross_validation", {}).get("summary", {}),
               "type_model_cv": result.get("type_model_cv", {})}
    calibrated = sidecar["metrics"].get("calibrated_threshold")
    if calibrated is not None:
        sidecar["probability_threshold"] = calibrated
        sidecar["probability_threshold_rule"] = (
            "the cross-validation's best mean Dice over every fold's out-of-fold outlines")
    if type_model is not None:
        sidecar["type_model"] = type_model.to_dict()
        sidecar["type_model_rule"] = ("fitted on the out-of-fold learned outlines of every "
                                      "VOI with a texture rating")
    save_weights(model, config.network_kwargs(), final_dir / f"{SEGMENTATION}.pt", sidecar)
    if ship:
        save_weights(model, config.network_kwargs(), WEIGHTS_DIR / f"{SEGMENTATION}.pt",
                     sidecar)
    (out_dir / "segmentation_run.json").write_text(json.dumps(result, indent=2, default=str))
    (final_dir / LOCK).unlink(missing_ok=True)
    return result
