"""LUNA16: ``annotations.csv`` rows (world LPS mm, diameter) and ``.mhd``/``.raw`` scans.

The scans themselves are read by ``lungcad_preprocess`` (MetaImage is one of its inputs); a
scan's series UID is its file stem, which is how annotation rows are matched.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from lungcad_inference.data.lesions import Lesion


def read_annotations(csv_path: str | Path) -> dict[str, list[Lesion]]:
    """``seriesuid -> [Lesion]`` from a LUNA16 ``annotations.csv``."""
    out: dict[str, list[Lesion]] = defaultdict(list)
    with Path(csv_path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            centre = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
            out[row["seriesuid"]].append(Lesion(centre, float(row["diameter_mm"]), "luna16"))
    return dict(out)


def series_uid_of_mhd(path: str | Path) -> str:
    """LUNA16 names each scan ``<seriesuid>.mhd``."""
    name = Path(path).name
    return name[: -len(".mhd")] if name.lower().endswith(".mhd") else Path(path).stem
