"""The first thing a new user sees: ``lungcad demo``'s synthetic chest CT (four nodules) through
the real preprocessing and the shipped detector. The four nodules must be reported and the
phantom's vessels and hilum must not bury them in false positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcad import synthetic
from lungcad.demo import DEMO_SEED
from lungcad_preprocess.pipeline import preprocess_path

MAX_FALSE_POSITIVES = 3  # measured with the shipped weights: see test_demo_shows_its_nodules


def test_demo_shows_its_nodules(tmp_path: Path, shipped_models) -> None:  # type: ignore[no-untyped-def]
    from lungcad_inference.inference import detect

    case = synthetic.make_chest_ct(seed=DEMO_SEED)
    synthetic.write_dicom_series(case.hu, case.geometry, tmp_path)
    pre = preprocess_path(tmp_path)
    cands = detect(shipped_models, pre.hu, pre.lungs, pre.geometry)
    centres = np.array([c.centre_mm for c in cands]).reshape(-1, 3)
    found, false_positives = set(), 0
    for c in centres:
        d = [np.linalg.norm(c - np.asarray(n.center_lps)) for n in case.nodules]
        k = int(np.argmin(d))
        if d[k] <= case.nodules[k].diameter_mm / 2:
            found.add(k)
        else:
            false_positives += 1
    print(f"demo phantom: {len(found)}/{len(case.nodules)} nodules, "
          f"{false_positives} false positives")
    assert found == set(range(len(case.nodules)))
    assert false_positives <= MAX_FALSE_POSITIVES
