"""``lungcad train`` and ``lungcad evaluate``: registered by ``lungcad.cli`` through
``register(subparsers)``. Heavy modules (torch, SimpleITK) are imported inside the commands.

Examples::

    lungcad train malignancy --vois ../shared/data/nodules/lidc-nodule-vois.zip --out var/runs/mal
    lungcad train detector --studies ../shared/data/ct/*.zip \\
        --vois ../shared/data/nodules/lidc-nodule-vois.zip --out var/runs/det
    lungcad evaluate malignancy ../shared/data/nodules/lidc-nodule-vois.zip --out var/eval/mal
    lungcad evaluate detection ../shared/data/ct/*.zip --out var/eval/det
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lungcad_inference.training.device import DEVICES

log = logging.getLogger(__name__)


def _cache_dir(args: argparse.Namespace) -> Path:
    if args.cache_dir:
        return Path(args.cache_dir)
    from lungcad.settings import get_settings

    return Path(get_settings().data_dir) / "cache"


def _rule(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from lungcad_inference.data.lidc_xml import ConsensusRule

    return ConsensusRule(args.min_diameter_mm, args.min_readers, args.benign_max,
                         args.malignant_min)


def _load_studies(args: argparse.Namespace) -> list:  # type: ignore[type-arg]
    from lungcad_inference.data.studies import load_study

    luna = Path(args.luna_csv) if args.luna_csv else None
    return [load_study(Path(p), _cache_dir(args), luna_csv=luna, rule=_rule(args),
                       threads=args.threads) for p in args.studies]


def _train_device(args: argparse.Namespace) -> dict[str, object] | None:
    """``device`` and ``amp`` config overrides from ``--device`` / ``--amp``; ``None`` (after
    saying why) when the device asked for is not there."""
    from lungcad_inference.training.device import amp_enabled, resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return None
    amp = amp_enabled(device, args.amp)
    if args.amp and not amp:
        print("train: --amp ignored on the CPU (mixed precision is used on CUDA only)",
              file=sys.stderr)
    log.info("training device", extra={"device": device, "amp": amp})
    return {"device": device, "amp": amp}


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from lungcad_inference.data.vois import load_vois
    from lungcad_inference.training import experiments

    placement = _train_device(args)
    if placement is None:
        return 2
    out = Path(args.out)
    if args.model == "lung-mask":
        return _train_lung_mask(args, out)
    if not args.vois:
        print(f"train {args.model} needs --vois", file=sys.stderr)
        return 2
    vois = load_vois(Path(args.vois), _cache_dir(args), _rule(args))
    if args.model == "segmentation":
        from lungcad_inference.training.train_segmentation import CONFIGS as SCONF

        config = dataclasses.replace(SCONF[args.config], seed=args.seed, threads=args.threads,
                                     device=placement["device"],
                                     **({"iterations": args.iterations}
                                        if args.iterations else {}),
                                     **({"cv_iterations": args.cv_iterations}
                                        if args.cv_iterations else {}))
        result = experiments.run_segmentation(vois, _load_studies(args), config, out,
                                              cv=not args.no_cv, ship=args.ship,
                                              voi_source=Path(args.vois))
        s = result.get("cross_validation", {}).get("summary", {})
        if s:
            print(json.dumps(s, indent=1))
    elif args.model == "malignancy":
        from lungcad_inference.training.train_malignancy import CONFIGS

        config = dataclasses.replace(CONFIGS[args.config], seed=args.seed, threads=args.threads,
                                     **placement,
                                     **({"epochs": args.epochs} if args.epochs else {}))
        outlines = None
        if args.outlines:
            from lungcad_inference.segment_vois import read_outlines

            outlines = read_outlines(Path(args.outlines))
        result = experiments.run_malignancy(vois, config, out, cv=not args.no_cv,
                                            ship=args.ship, outlines=outlines)
        cv = result.get("cross_validation", {})
        for name in ("cnn", "size_seg", "size_mask", "size_readers"):
            if name in cv:
                a = cv[name]["auc"]
                print(f"{name:>13}: AUC {a['value']:.3f} "
                      f"[{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]")
    else:
        from lungcad_inference.training.train_detector import CONFIGS as DCONF

        if not args.studies:
            print("train detector needs --studies", file=sys.stderr)
            return 2
        config = dataclasses.replace(DCONF[args.config], seed=args.seed, threads=args.threads,
                                     **placement, **({"iterations": args.iterations}
                                        if args.iterations else {}),
                                     **({"cv_iterations": args.cv_iterations}
                                        if args.cv_iterations else {}))
        miner = None
        if not args.no_mining:
            from lungcad_inference.inference import load_models

            miner = load_models("cpu", args.threads)  # the shipped detector finds the traps
        result = experiments.run_detection(_load_studies(args), vois, config, out,
                                           cv=not args.no_cv, ship=args.ship,
                                           max_fp_per_scan=args.max_fp_per_scan,
                                           ship_fold=args.ship_fold, miner=miner)
        loso = result.get("leave_one_study_out")
        if loso:
            from lungcad_inference.detection_benchmark import froc_table

            print(froc_table(loso["real"], "Real lesions of the held-out studies"))
            print(froc_table(loso["inserted"], "Held-out patients' VOIs inserted into the "
                                               "held-out studies (inserted, not native)"))
            print(f"leave-one-study-out CPM {loso['cpm']:.3f}; at threshold "
                  f"{loso['operating_threshold']:.3f}: sensitivity "
                  f"{loso['operating_sensitivity']:.2f}, "
                  f"{loso['operating_fp_per_scan']:.2f} FP/scan")
    print(f"run written to {out}")
    return 0


def _train_lung_mask(args: argparse.Namespace, out: Path) -> int:
    import dataclasses

    from lungcad_inference.training.lung_mask_data import load_low_study
    from lungcad_inference.training.train_lung_mask import (
        LungMaskTrainConfig,
        run_lung_mask,
        ship_lung_mask,
    )

    if not args.studies:
        print("train lung-mask needs --studies", file=sys.stderr)
        return 2
    config = dataclasses.replace(LungMaskTrainConfig(), seed=args.seed, threads=args.threads,
                                 **({"iterations": args.iterations} if args.iterations else {}))
    studies = [load_low_study(Path(p), _cache_dir(args), threads=args.threads)
               for p in args.studies]
    result = run_lung_mask(studies, config, out, cv=not args.no_cv)
    for row in result["cv"]:
        inside = ", ".join(f"{les['inside_classical']:.2f} -> {les['inside_refined']:.2f}"
                           for les in row["lesions"])
        print(f"fold {row['fold']} held out {row['study']}: lesions inside the mask {inside}; "
              f"added {row['added_ml']} mL ({row['added_percent']} %)")
    if args.ship:
        print(f"shipped {ship_lung_mask(out, result)}")
        if args.ship_fold:
            fold = result["folds"].get(args.ship_fold)
            if fold is None:
                print(f"--ship-fold {args.ship_fold}: not one of the studies", file=sys.stderr)
                return 2
            print(f"shipped {ship_lung_mask(out, result, fold)}")
    print(f"run written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lungcad_inference.inference import load_models

    out = Path(args.out)
    models = load_models("cpu" if args.cpu else None, args.threads,
                         weights_dir=Path(args.weights_dir) if args.weights_dir else None,
                         threshold=args.threshold)
    if args.no_coarse_pass:
        models.coarse_min_mm = None
    if args.what == "segmentation":
        return _evaluate_segmentation(models, Path(args.path[0]), out)
    if args.what == "malignancy":
        from lungcad_inference.data.vois import load_vois
        from lungcad_inference.evaluation import malignancy_summary, write_malignancy
        from lungcad_inference.training.malignancy_data import build_set
        from lungcad_inference.training.train_malignancy import predict_malignancy, save_predictions

        if models.malignancy is None:
            print("no malignancy weights found", file=sys.stderr)
            return 2
        outlines = None
        learned = models.malignancy_meta.get("size_source", "").startswith("learned")
        if models.segmentation is not None and learned:  # the served path: learned sizes
            from lungcad_inference.segment_vois import read_outlines, segment_voi_set

            segment_voi_set(lambda pid: (models.segmentation, ""), Path(args.path[0]),
                            out / "outlines", write_masks=False, save_outlines=True,
                            threshold=models.segmentation_threshold)
            outlines = read_outlines(out / "outlines" / "outlines.npz")
        data = build_set(load_vois(Path(args.path[0]), _cache_dir(args), _rule(args)),
                         include_unlabelled=True, outlines=outlines)
        probs = predict_malignancy(models.malignancy, data)
        out.mkdir(parents=True, exist_ok=True)
        save_predictions(out / "predictions.csv", data, probs)
        from lungcad_inference.training.experiments import patient_hashes

        seen = set(models.malignancy_meta.get("training_patients_sha1", []))
        overlap = int(len(set(patient_hashes(data.patients)) & seen))
        lab = data.labels >= 0
        summary = malignancy_summary(data.labels[lab], {"cnn": probs[lab]}, data.patients[lab])
        summary["patients_seen_in_training"] = overlap
        if overlap:
            summary["warning"] = (f"{overlap} patients of this set were in the shipped model's "
                                  "training data: these metrics are not held out")
        write_malignancy(out, data.labels[lab], {"cnn": probs[lab]}, summary,
                         "Malignancy (shipped weights)")
        m = summary["cnn"]
        print(f"{int(lab.sum())} labelled nodules of {len(lab)}: " + ", ".join(
            f"{k} {v['value']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
            for k, v in m.items()))
        if overlap:
            print("WARNING: " + summary["warning"])
    else:
        from lungcad_inference import metrics as M
        from lungcad_inference.detection_benchmark import (
            froc_table,
            grouped_froc,
            real_records,
            records_table,
        )
        from lungcad_inference.evaluation import detection_summary, scan_result, write_detection
        from lungcad_inference.plots import plot_froc

        args.studies = args.path
        scans, cands, records = [], {}, []
        for study in _load_studies(args):
            scan, c = scan_result(models, study)
            scans.append(scan)
            cands[study.name] = [x for x in c]
            records += real_records(study, scan)
            if args.gallery:
                from lungcad_inference.gallery import write_gallery

                write_gallery(out / "gallery", study, scan, c, models.threshold)
        summary = detection_summary(scans, models.threshold)
        seen = set(models.detector_meta.get("training_studies", []))
        summary["studies_seen_in_training"] = sorted(seen & {s.name for s in scans})
        summary["real"] = grouped_froc(records, scans)
        write_detection(out, scans, cands, summary, "shipped detector")
        (out / "lesions.json").write_text(json.dumps(records_table(records), indent=1))
        by_texture = {}
        for texture in sorted({r.texture for r in records}):
            sel = [r for r in records if r.texture == texture]
            curve = M.froc_from_records(sel, scans)
            by_texture[f"{texture} ({len(sel)})"] = {**curve, **M.cpm(curve)}
        plot_froc(by_texture, out / "froc_by_texture.png", "Detection FROC by texture")
        print(froc_table(summary["real"], "Real lesions (sensitivity at FP per scan, "
                                          "95 % interval of the CPM over scans)"))
        print(f"operating threshold {models.threshold:.3f}: sensitivity "
              f"{summary['operating_sensitivity']:.2f}, "
              f"{summary['operating_fp_per_scan']:.2f} FP per scan")
        for p in summary["per_scan"]:
            print(f"{p['study']}: {p['found']}/{p['lesions']} found, "
                  f"{p['false_positives']} FP")
        if summary["studies_seen_in_training"]:
            print("NOTE: the weights trained on the backgrounds of "
                  + ", ".join(summary["studies_seen_in_training"])
                  + " (their own lesions never as positives): not a held-out figure")
    print(f"results written to {out}")
    return 0


def _evaluate_segmentation(models: object, source: Path, out: Path) -> int:
    """Masks, measurements and Dice for every VOI of ``source`` with the loaded weights."""
    from lungcad_inference.segment_vois import segment_voi_set
    from lungcad_inference.training.experiments import patient_hashes

    seg = getattr(models, "segmentation", None)
    if seg is None:
        print("evaluate: no segmentation weights found (segmentation.pt)", file=sys.stderr)
        return 2
    type_model = models.type_model() if hasattr(models, "type_model") else None
    result = segment_voi_set(lambda pid: (seg, ""), source, out, type_model=type_model,
                             threshold=models.segmentation_threshold)
    summary = result["summary"]
    seen = set(getattr(models, "segmentation_meta", {}).get("training_patients_sha1", []))
    patients = {r["patient_id"] for r in result["rows"]}
    overlap = len(set(patient_hashes(patients)) & seen)
    summary["patients_seen_in_training"] = overlap
    if overlap:
        summary["warning"] = (f"{overlap} of {len(patients)} patients of this set were in the "
                              "segmentation weights' training data: these figures are "
                              "in-sample, not held out")
    (out / "segmentation_metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['vois']} VOIs segmented, {summary['vois_with_reference']} with a "
          "reference mask")
    for key, label in (("dice_median", "median Dice"), ("dice_mean", "mean Dice"),
                       ("volume_abs_error_median", "median |volume error|")):
        if key in summary:
            v = summary[key]
            print(f"{label}: {v['value']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] "
                  "(95 % patient-level bootstrap)")
    if "type_weighted_kappa" in summary:
        print(f"type agreement with the readers' texture: weighted kappa "
              f"{summary['type_weighted_kappa']:.3f}")
    if overlap:
        print("WARNING: " + summary["warning"])
    print(f"masks in {out / 'masks'}, table in {out / 'segmentation.csv'}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", help="preprocessed-array cache (default: DATA_DIR/cache)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-readers", type=int, default=3, help="LIDC consensus (default 3)")
    p.add_argument("--min-diameter-mm", type=float, default=3.0)
    p.add_argument("--benign-max", type=float, default=2.0,
                   help="median rating <= this is benign (default 2)")
    p.add_argument("--malignant-min", type=float, default=4.0,
                   help="median rating >= this is malignant (default 4)")
    p.add_argument("--luna-csv", help="LUNA16 annotations.csv for the studies")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = sub.add_parser("train", help="train a model (with its held-out evaluation)")
    t.add_argument("model", choices=("detector", "malignancy", "segmentation", "lung-mask"))
    t.add_argument("--config", choices=("small", "large"), default="small",
                   help="small: 2-core CPU; large: GPU (with --device cuda or auto)")
    t.add_argument("--device", choices=DEVICES, default="auto",
                   help="where to train: auto = cuda when torch sees a GPU, else cpu")
    t.add_argument("--amp", action="store_true",
                   help="mixed precision (float16 autocast + gradient scaling), CUDA only")
    t.add_argument("--vois", help="lidc-nodule-vois.zip (or folder); not used by lung-mask")
    t.add_argument("--studies", nargs="*", default=[],
                   help="full studies (zip/folder/.mhd); segmentation: lung backgrounds; "
                        "lung-mask: the training studies")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, help="override (malignancy)")
    t.add_argument("--iterations", type=int,
                   help="override (detector; segmentation: the final model)")
    t.add_argument("--cv-iterations", type=int,
                   help="detector: iterations of each leave-one-study-out fold model; "
                        "segmentation: of each cross-validation fold model")
    t.add_argument("--no-mining", action="store_true",
                   help="detector: no hard negatives mined with the shipped detector")
    t.add_argument("--no-cv", action="store_true", help="only the final model")
    t.add_argument("--outlines", help="malignancy: the learned segmentation's out-of-fold VOI "
                                      "outlines (a segmentation run's cv/outlines.npz)")
    t.add_argument("--ship", action="store_true", help="write the package's default weights")
    t.add_argument("--ship-fold", metavar="STUDY",
                   help="detector: ship the leave-one-study-out model that held STUDY out "
                        "instead of training a final model on all studies; lung-mask: also "
                        "ship the fold model that held STUDY out (lung_mask_fold<k>.pt)")
    t.add_argument("--max-fp-per-scan", type=float, default=1.0,
                   help="operating point rule (detector)")
    _common(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate the shipped (or given) weights on real data")
    e.add_argument("what", choices=("detection", "malignancy", "segmentation"))
    e.add_argument("path", nargs="+", help="VOI zip/folder, or full studies")
    e.add_argument("--out", required=True)
    e.add_argument("--weights-dir")
    e.add_argument("--threshold", type=float, help="detector operating threshold")
    e.add_argument("--cpu", action="store_true")
    e.add_argument("--no-coarse-pass", action="store_true",
                   help="detection: the 1 mm pass alone (no 2 mm pass for large masses)")
    e.add_argument("--gallery", action="store_true",
                   help="detection: key images of misses and false positives (PNG, made from "
                        "the data on demand)")
    _common(e)
    e.set_defaults(func=cmd_evaluate)
