"""Detection on real lesions the weights never saw: the held-out study's own lesions, and real
VOIs of held-out patients inserted into the held-out study's lungs (labelled as inserted).

Every lesion is recorded with its texture class (readers' ``Texture_value``: 1-2
ground-glass, 3 part-solid, 4-5 solid; ``unknown`` where no reader rated it), its size band
(3-6, 6-10, 10-20, > 20 mm) and whether it touches the pleura or mediastinum. Sensitivity at
the LUNA16 rates (1/8 to 8 false positives per scan) and the CPM come with bootstrap intervals
over scans, overall and per group. Arrays are ``(z, y, x)`` on the preprocessed 1 mm grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lungcad_inference import metrics as M
from lungcad_inference.data.studies import Study
from lungcad_inference.data.vois import Voi

SIZE_BANDS = (("3-6 mm", 0.0, 6.0), ("6-10 mm", 6.0, 10.0), ("10-20 mm", 10.0, 20.0),
              ("> 20 mm", 20.0, 1e9))


def texture_class(texture: int | None) -> str:
    if texture is None:
        return "unknown"
    return "ground-glass" if texture <= 2 else "part-solid" if texture == 3 else "solid"


def size_band(diameter_mm: float) -> str:
    return next(name for name, lo, hi in SIZE_BANDS if lo <= diameter_mm < hi)


@dataclass
class LesionRecord:
    """One reference lesion and the best score of a candidate hitting it (-inf: missed)."""

    scan: str
    origin: str  # "real" or "inserted"
    diameter_mm: float
    texture: str
    size_band: str
    juxtapleural: bool
    score: float
    patient_id: str = ""


def touches_border(lungs: np.ndarray, centre_zyx: np.ndarray, diameter_mm: float,
                   margin_mm: float = 2.0) -> bool:
    """Whether a lesion (a ball) reaches within ``margin_mm`` of the lung border."""
    r = diameter_mm / 2 + margin_mm
    lo = np.maximum(np.floor(centre_zyx - r).astype(int), 0)
    hi = np.minimum(np.ceil(centre_zyx + r).astype(int) + 1, lungs.shape)
    sub = lungs[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] > 0
    zz, yy, xx = np.indices(sub.shape)
    c = centre_zyx - lo
    ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r**2
    return bool((ball & ~sub).any())


def mine_hard_negatives(models: Any, study: Study, threshold: float = 0.1,
                        margin_mm: float = 10.0, limit: int = 50) -> np.ndarray:
    """Voxel centres ``(n, 3)`` where the detector fires (at ``threshold``) on no reference
    lesion of ``study``: vessels, the hilum and chest wall it mistakes for nodules."""
    from lungcad_inference.inference import detect

    saved = models.max_candidates
    models.max_candidates = limit
    try:
        cands = detect(models, study.hu, study.lungs, study.geometry, threshold=threshold)
    finally:
        models.max_candidates = saved
    lesions = study.lesion_centres_zyx()
    radii = np.array([les.diameter_mm / 2 for les in study.lesions])
    keep = [c.centre_zyx for c in cands
            if not len(lesions) or np.all(np.linalg.norm(lesions - np.asarray(c.centre_zyx),
                                                         axis=1) > radii + margin_mm)]
    return np.asarray(keep, float).reshape(-1, 3)


def insert_held_out(study: Study, vois: list[Voi], rng: np.random.Generator,
                    per_volume: int = 6, volumes: int = 4
                    ) -> list[tuple[np.ndarray, list[tuple[np.ndarray, Voi, bool]]]]:
    """Copies of ``study.hu`` with held-out real VOIs pasted at lung positions (half against
    the pleura or mediastinum), apart from each other and from the study's own lesions.
    Returns ``[(hu, [(centre_zyx, voi, juxtapleural)])]``."""
    from lungcad_inference.synthesis import paste, real_lesion
    from lungcad_inference.training.detector_data import prepare_study

    prepared = prepare_study(study, rng)
    own = prepared.ignore
    order = rng.permutation(len(vois))
    out = []
    k = 0
    for _ in range(volumes):
        if k >= len(order):
            break
        hu = study.hu.astype(np.float32)
        placed: list[tuple[np.ndarray, Voi, bool]] = []
        tries = 0
        while len(placed) < per_volume and k < len(order) and tries < 200:
            tries += 1
            voi = vois[int(order[k])]
            border = rng.random() < 0.5
            pool = prepared.pleura if border else prepared.parenchyma
            pos = pool[int(rng.integers(len(pool)))].astype(float)
            room = voi.diameter_mm / 2 + 15
            if any(np.linalg.norm(pos - p) < room + v.diameter_mm / 2 for p, v, _ in placed):
                continue
            if any(np.linalg.norm(pos - o[:3]) < room + o[3] for o in own):
                continue
            paste(hu, real_lesion(voi.hu, voi.mask, voi.diameter_mm), pos)
            placed.append((pos, voi, touches_border(study.lungs, pos, voi.diameter_mm)))
            k += 1
        out.append((np.rint(hu).clip(-1024, 3071).astype(np.int16), placed))
    return out


def _records(scan: M.ScanResult, origin: str, meta: list[dict[str, Any]]) -> list[LesionRecord]:
    best, _, _ = M.match_scan(scan)
    return [LesionRecord(scan.name, origin, m["diameter_mm"], m["texture"],
                         size_band(m["diameter_mm"]), m["juxtapleural"], float(b),
                         m.get("patient_id", "")) for b, m in zip(best, meta, strict=True)]


def _scan(models: Any, name: str, hu: np.ndarray, study: Study,
          centres_zyx: np.ndarray, diameters: np.ndarray) -> tuple[M.ScanResult, list[Any]]:
    from lungcad_inference.evaluation import CANDIDATE_THRESHOLD
    from lungcad_inference.inference import detect

    saved = models.max_candidates
    models.max_candidates = 100
    try:
        cands = detect(models, hu, study.lungs, study.geometry, threshold=CANDIDATE_THRESHOLD)
    finally:
        models.max_candidates = saved
    lesions_mm = study.geometry.index_to_world(np.asarray(centres_zyx, float).reshape(-1, 3))
    return M.ScanResult(name, np.array([c.centre_mm for c in cands]).reshape(-1, 3),
                        np.array([c.nodule_probability for c in cands]),
                        np.asarray(lesions_mm).reshape(-1, 3), np.asarray(diameters, float)
                        ), cands


def real_records(study: Study, scan: M.ScanResult) -> list[LesionRecord]:
    """Records of ``study``'s own reference lesions scored by ``scan`` (their order)."""
    own_c = study.lesion_centres_zyx()
    meta = [{"diameter_mm": float(les.diameter_mm),
             "texture": texture_class(les.extra.get("texture")),
             "juxtapleural": touches_border(study.lungs, c, les.diameter_mm),
             "patient_id": study.name} for c, les in zip(own_c, study.lesions, strict=True)]
    return _records(scan, "real", meta)


def score_study(models: Any, study: Study, held_vois: list[Voi], rng: np.random.Generator,
                per_volume: int = 6, volumes: int = 4
                ) -> tuple[list[M.ScanResult], list[LesionRecord], list[M.ScanResult],
                           list[LesionRecord]]:
    """The held-out study itself (its real lesions) and copies with inserted held-out VOIs:
    ``(real scans, real records, inserted scans, inserted records)``. On an inserted copy the
    study's own lesions also count as lesions (a hit on them is not a false positive) but are
    not recorded twice."""
    own_c = study.lesion_centres_zyx()
    own_d = np.array([les.diameter_mm for les in study.lesions])
    real_scan, _ = _scan(models, study.name, study.hu, study, own_c, own_d)
    real = real_records(study, real_scan)
    ins_scans, ins_records = [], []
    for n, (hu, placed) in enumerate(insert_held_out(study, held_vois, rng, per_volume,
                                                     volumes)):
        centres = np.array([p for p, _, _ in placed] + list(own_c)).reshape(-1, 3)
        diam = np.array([v.diameter_mm for _, v, _ in placed] + list(own_d))
        scan, _ = _scan(models, f"{study.name}+inserted{n}", hu, study, centres, diam)
        ins_scans.append(scan)
        meta = [{"diameter_mm": v.diameter_mm, "texture": texture_class(v.texture_rating),
                 "juxtapleural": j, "patient_id": v.patient_id} for _, v, j in placed]
        best, _, _ = M.match_scan(scan)
        ins_records += [LesionRecord(scan.name, "inserted", m["diameter_mm"], m["texture"],
                                     size_band(m["diameter_mm"]), m["juxtapleural"], float(b),
                                     m["patient_id"])
                        for b, m in zip(best[:len(placed)], meta, strict=True)]
    return [real_scan], real, ins_scans, ins_records


def sensitivity_at_rates(records: list[LesionRecord], fp_scores: list[np.ndarray],
                         rates: tuple[float, ...] = M.CPM_FP_RATES) -> dict[str, Any]:
    """Sensitivity of ``records`` at each FP-per-scan rate (the threshold where the scans'
    false positives reach that rate) and their mean, the CPM."""
    n_scans = max(1, len(fp_scores))
    fps = np.sort(np.concatenate(fp_scores) if fp_scores else np.zeros(0))[::-1]
    scores = np.array([r.score for r in records])
    sens = []
    for rate in rates:
        allowed = int(np.floor(rate * n_scans))
        thr = fps[allowed] if allowed < len(fps) else -np.inf  # strictly above the next FP
        sens.append(float((scores > thr).mean()) if len(scores) else float("nan"))
    return {"rates": list(rates), "sensitivity": sens, "cpm": float(np.nanmean(sens))
            if len(scores) else float("nan"), "lesions": len(records)}


def froc_with_intervals(records: list[LesionRecord], scans: list[M.ScanResult],
                        n_boot: int = 500, seed: int = 0) -> dict[str, Any]:
    """:func:`sensitivity_at_rates` with 95 % percentile intervals from resampling scans."""
    fp_by_scan = {s.name: M.match_scan(s)[1] for s in scans}
    names = list(fp_by_scan)
    point = sensitivity_at_rates(records, list(fp_by_scan.values()))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        pick = [names[i] for i in rng.integers(0, len(names), len(names))]
        recs = [r for name in pick for r in records if r.scan == name]
        if recs:
            draws.append(sensitivity_at_rates(recs, [fp_by_scan[n] for n in pick]))
    if draws:
        sens = np.array([d["sensitivity"] for d in draws])
        point["sensitivity_ci95"] = [[float(np.nanpercentile(sens[:, i], 2.5)),
                                      float(np.nanpercentile(sens[:, i], 97.5))]
                                     for i in range(sens.shape[1])]
        cpms = np.array([d["cpm"] for d in draws])
        point["cpm_ci95"] = [float(np.nanpercentile(cpms, 2.5)),
                             float(np.nanpercentile(cpms, 97.5))]
    return point


def grouped_froc(records: list[LesionRecord], scans: list[M.ScanResult],
                 n_boot: int = 500) -> dict[str, Any]:
    """Overall and per texture, size band and juxtapleural / not (false positives always from
    all the scans: a rate is per scan, whatever the lesion)."""
    out: dict[str, Any] = {"all": froc_with_intervals(records, scans, n_boot)}
    groups = {"texture": lambda r: r.texture, "size": lambda r: r.size_band,
              "juxtapleural": lambda r: "juxtapleural" if r.juxtapleural else "not juxtapleural"}
    for name, key in groups.items():
        out[name] = {value: froc_with_intervals([r for r in records if key(r) == value], scans,
                                                n_boot)
                     for value in sorted({key(r) for r in records})}
    return out


def records_table(records: list[LesionRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]



def froc_table(grouped: dict[str, Any], title: str) -> str:
    """A text table: sensitivity at 1/8..8 FP per scan with intervals and the CPM, overall and
    per group."""
    rates = M.CPM_FP_RATES
    head = f"{title}\n{'group':<24}{'n':>5} " + " ".join(f"{r:>6g}" for r in rates) + \
        "   CPM [95 % CI]"
    lines = [head]

    def row(name: str, f: dict[str, Any]) -> str:
        sens = " ".join(f"{v:6.2f}" if np.isfinite(v) else "     -" for v in f["sensitivity"])
        ci = f.get("cpm_ci95", [float("nan")] * 2)
        return f"{name:<24}{f['lesions']:>5} {sens}   {f['cpm']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    lines.append(row("all", grouped["all"]))
    for group in ("texture", "size", "juxtapleural"):
        for value, f in grouped.get(group, {}).items():
            lines.append(row(f"  {value}", f))
    return "\n".join(lines)
