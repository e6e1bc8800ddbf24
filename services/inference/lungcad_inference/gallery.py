"""Key images of a detector's misses and false positives, made on demand from the data (the
repository holds no patient images): one PNG per case, the axial slice through the point on
the preprocessed 1 mm grid, lung window, a circle of the lesion's or candidate's size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference import metrics as M
from lungcad_inference.plots import _pyplot

HALF_MM = 40


def _panel(path: Path, hu: np.ndarray, centre_zyx: np.ndarray, diameter_mm: float,
           title: str, colour: str) -> None:
    plt = _pyplot()
    z, y, x = (int(round(v)) for v in centre_zyx)
    z = int(np.clip(z, 0, hu.shape[0] - 1))
    y0, y1 = max(y - HALF_MM, 0), min(y + HALF_MM, hu.shape[1])
    x0, x1 = max(x - HALF_MM, 0), min(x + HALF_MM, hu.shape[2])
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    ax.imshow(np.clip(hu[z, y0:y1, x0:x1], -1350, 150), cmap="gray",
              extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
    ax.add_patch(plt.Circle((x, y), max(diameter_mm, 4) / 2 + 2, fill=False, color=colour,
                            lw=1.2))
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_gallery(out_dir: Path, study: Any, scan: M.ScanResult, candidates: list[Any],
                  threshold: float) -> list[Path]:
    """PNGs of the lesions missed at ``threshold`` and of the false positives above it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    best, _, hit_of = M.match_scan(scan)
    written = []
    centres = study.lesion_centres_zyx()
    for j, (b, c) in enumerate(zip(best, centres, strict=True)):
        if not b >= threshold:
            path = out_dir / f"{study.name}_miss{j + 1}.png"
            score = "none" if not np.isfinite(b) else f"{b:.2f}"
            _panel(path, study.hu, c, float(scan.diameters_mm[j]),
                   f"{study.name} missed lesion {j + 1}: {scan.diameters_mm[j]:.0f} mm, "
                   f"best score {score}", "red")
            written.append(path)
    n = 0
    for i, cand in enumerate(candidates):
        if hit_of[i] < 0 and cand.nodule_probability >= threshold:
            n += 1
            path = out_dir / f"{study.name}_fp{n}.png"
            _panel(path, study.hu, np.asarray(cand.centre_zyx), cand.diameter_mm,
                   f"{study.name} false positive {n}: score {cand.nodule_probability:.2f}",
                   "yellow")
            written.append(path)
    return written
