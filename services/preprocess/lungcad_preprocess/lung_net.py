"""A learned lung mask that keeps masses: a small 2.5-D U-Net on the 2 mm canonical grid
halved (4 mm voxels).

The classical mask (``lung_mask.segment_lungs``) is exact on aerated lung but cuts out what is
dense: a tumour against the pleura or the mediastinum, consolidation. The network is trained
to label "lung, lesions included" (the classical labels plus real reference lesions and
tumour-like masses pasted into the lungs during training, ``lungcad train lung-mask``); its
output may only **add** to the classical mask (:func:`add_masses`): dense voxels inside the
body, connected to the classical lungs, given to the nearest lung. Aerated lung, the airway
removal and the left / right split stay classical.

Input: three adjacent axial slices (2.5-D, 4 mm apart) of HU clipped to [-1000, 400], scaled to
[-1, 1].
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

log = logging.getLogger(__name__)
WEIGHTS = Path(__file__).resolve().parent / "weights" / "lung_mask.pt"
HU_LOW, HU_HIGH = -1000.0, 400.0
DENSE_HU = -400.0  # additions are dense voxels only: aerated lung is the classical mask's
BONE_HU = 150.0  # ribs, spine and sternum span the rib cage additions must lie in
RULES_VERSION = 2  # of add_masses' rules; caches of preprocessed studies key on it


_forked_from_torch = False


def _after_fork_in_child() -> None:
    """A child forked from a process that had torch loaded (the isolation child of a worker
    that also runs inference, or of a test run) must not use torch's thread pool: the
    parent's OpenMP threads do not exist in the child, and a parallel region deadlocks."""
    global _forked_from_torch
    _forked_from_torch = _forked_from_torch or "torch" in sys.modules


os.register_at_fork(after_in_child=_after_fork_in_child)


def normalise(hu: np.ndarray) -> np.ndarray:
    lo, hi = HU_LOW, HU_HIGH
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0).astype(np.float32)


def _net_classes():  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class Block(nn.Sequential):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(4, cout),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(4, cout),
                nn.LeakyReLU(0.1, inplace=True))

    class LungMaskNet(nn.Module):
        """2-D U-Net, ``slices`` input channels (adjacent axial slices), one logit per pixel."""

        def __init__(self, slices: int = 3, widths: tuple[int, ...] = (8, 16, 32, 64, 64)
                     ) -> None:
            super().__init__()
            self.widths = tuple(widths)
            self.down = nn.ModuleList()
            cin = slices
            for w in widths:
                self.down.append(Block(cin, w))
                cin = w
            self.up = nn.ModuleList(Block(widths[i + 1] + widths[i], widths[i])
                                    for i in range(len(widths) - 2, -1, -1))
            self.head = nn.Conv2d(widths[0], 1, 1)

        @property
        def stride(self) -> int:
            return 2 ** (len(self.widths) - 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for i, block in enumerate(self.down):
                x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
                skips.append(x)
            x = skips.pop()
            for block in self.up:
                skip = skips.pop()
                x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="nearest")
                x = block(torch.cat([x, skip], dim=1))
            return self.head(x)[:, 0]

    return LungMaskNet


def build_network(**kwargs: Any) -> Any:
    return _net_classes()(**kwargs)


def stack_slices(volume: np.ndarray, ks: np.ndarray, slices: int = 3) -> np.ndarray:
    """``(len(ks), slices, y, x)``: slices ``k - slices//2 .. k + slices//2`` (edge-clamped)."""
    half = slices // 2
    idx = np.clip(ks[:, None] + np.arange(-half, half + 1)[None, :], 0, volume.shape[0] - 1)
    return volume[idx]


def pad_to(array: np.ndarray, multiple: int, value: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes at their end to a multiple of ``multiple``."""
    h, w = array.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = [(0, 0)] * (array.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(array, pad, constant_values=value), (h, w)


def halve(volume: np.ndarray) -> np.ndarray:
    """Block mean over 2 x 2 x 2 voxels (float32); odd edges padded by repetition."""
    v = np.asarray(volume, np.float32)
    v = np.pad(v, [(0, n % 2) for n in v.shape], mode="edge")
    z, y, x = (n // 2 for n in v.shape)
    return v.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))


def predict_probability(model: Any, hu: np.ndarray, batch: int = 16) -> np.ndarray:
    """Per-voxel probability of "lung, lesions included" for ``hu`` ``(z, y, x)`` on the 2 mm
    grid. The network works on that grid halved (4 mm: masses of 12 mm and more are what it
    adds; aerated lung and its border stay the classical mask's); its probability is
    interpolated back (trilinear, exact for the block-mean grid)."""
    import torch

    x = normalise(halve(hu))
    x, (h, w) = pad_to(x, model.stride, -1.0)
    coarse = np.empty((x.shape[0], h, w), np.float32)
    slices = model.down[0][0].in_channels
    with torch.inference_mode():
        for k0 in range(0, x.shape[0], batch):
            ks = np.arange(k0, min(k0 + batch, x.shape[0]))
            inp = torch.from_numpy(np.ascontiguousarray(stack_slices(x, ks, slices)))
            inp = inp.to(memory_format=torch.channels_last)
            coarse[ks] = torch.sigmoid(model(inp)).numpy()[:, :h, :w]
        fine = torch.nn.functional.interpolate(
            torch.from_numpy(coarse)[None, None], size=tuple(2 * n for n in coarse.shape),
            mode="trilinear", align_corners=False)[0, 0].numpy()
    return fine[:hu.shape[0], :hu.shape[1], :hu.shape[2]]


def add_masses(labels: np.ndarray, hu: np.ndarray, probability: np.ndarray, body: np.ndarray,
               max_fraction: float = 0.25, threshold: float = 0.5
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """The classical ``labels`` with the network's dense additions: voxels at or above
    ``threshold``, inside ``body``, denser than -400 HU, outside the classical mask, part of a
    mass (:func:`_thick_parts`), inside the rib cage (:func:`_inside_rib_cage`), in a component
    touching the classical lungs; each takes the label of the nearest lung voxel.
    Additions larger than ``max_fraction`` of the classical lung volume are refused (a scan
    unlike the training data): the classical labels are returned unchanged."""
    lung = labels > 0
    add = (probability >= threshold) & body & (hu >= DENSE_HU) & ~lung
    info: dict[str, Any] = {"added_voxels": 0, "refused": False}
    if not add.any():
        return labels, info
    add &= _thick_parts(add)
    add &= _inside_rib_cage(add, hu, body)
    comp, _ = ndi.label(add | lung)
    keep = np.zeros(int(comp.max()) + 1, bool)
    keep[np.unique(comp[lung])] = True
    keep[0] = False
    add &= keep[comp]
    n = int(add.sum())
    info["added_voxels"] = n
    if n == 0:
        return labels, info
    if n > max_fraction * int(lung.sum()):
        info["refused"] = True
        log.warning("learned lung mask additions refused", extra={"added": n,
                                                                  "lung": int(lung.sum())})
        return labels, info
    box = tuple(slice(max(0, int(i.min()) - 2), int(i.max()) + 3) for i in np.nonzero(add))
    _, idx = ndi.distance_transform_edt(labels[box] == 0, return_indices=True)
    nearest = labels[box][tuple(idx)]
    out = labels.copy()
    out[box][add[box]] = nearest[add[box]]
    return out, info


def _inside_rib_cage(add: np.ndarray, hu: np.ndarray, body: np.ndarray) -> np.ndarray:
    """``add`` where it lies inside the convex hull of the slice's bone (ribs, spine, sternum:
    > 150 HU in the body): the pleural cavity is inside the rib cage. A slice with too little
    bone to span a hull keeps nothing (a scan without a rib cage is not what the network was
    trained on)."""
    from matplotlib.path import Path as MplPath
    from scipy.spatial import ConvexHull, QhullError

    out = np.zeros_like(add)
    for k in np.nonzero(add.any(axis=(1, 2)))[0]:
        bone = np.argwhere((hu[k] > BONE_HU) & body[k])
        if len(bone) < 20:
            continue
        try:
            hull = ConvexHull(bone[:, ::-1].astype(float))
        except QhullError:
            continue
        ys, xs = np.nonzero(add[k])
        inside = MplPath(hull.points[hull.vertices]).contains_points(np.column_stack([xs, ys]))
        out[k, ys[inside], xs[inside]] = True
    return out


def _thick_parts(add: np.ndarray) -> np.ndarray:
    """Where ``add`` is a mass, not a rim: opened on the halved grid by one voxel (a 4 mm
    voxel; parts thinner than about 12 mm, the smallest mass trained on, go: the partial-volume
    shell around the lungs and vessel walls), back on the full grid widened by one voxel."""
    core = ndi.binary_opening(halve(add) >= 0.5, structure=ndi.generate_binary_structure(3, 1))
    if not core.any():
        return np.zeros_like(add)
    up = core.repeat(2, 0).repeat(2, 1).repeat(2, 2)[:add.shape[0], :add.shape[1], :add.shape[2]]
    pad = [(0, n - u) for n, u in zip(add.shape, up.shape, strict=True)]
    up = np.pad(up, pad)
    box = tuple(slice(max(0, int(i.min()) - 1), int(i.max()) + 2) for i in np.nonzero(up))
    out = np.zeros_like(add)
    out[box] = ndi.binary_dilation(up[box])
    return out


@functools.lru_cache(maxsize=2)
def load(path: str | None = None) -> tuple[Any, dict[str, Any]] | None:
    """The shipped (or given) lung-mask network in eval mode and its sidecar; None when the
    weights file is absent (the classical mask is then used alone)."""
    import torch

    p = Path(path) if path else WEIGHTS
    if not p.exists():
        log.warning("learned lung mask weights not found: classical mask only",
                    extra={"path": str(p)})
        return None
    blob = torch.load(p, map_location="cpu", weights_only=True)
    model = build_network(**blob["network"])
    model.load_state_dict(blob["state_dict"])
    model.eval().to(memory_format=torch.channels_last)
    side = p.with_suffix(".json")
    return model, (json.loads(side.read_text()) if side.exists() else {})


def refine(hu: np.ndarray, labels: np.ndarray, voxel_mm: float, params: Any = None,
           threads: int = 0, weights: str | None = None, body: np.ndarray | None = None
           ) -> tuple[np.ndarray, dict[str, Any]]:
    """The classical ``labels`` of ``hu`` (the 2 mm canonical grid) with the learned mask's
    dense additions (:func:`add_masses`); unchanged, with the reason in the returned details,
    when the weights are absent or the grid is not the one the network was trained on.
    ``body``: ``lung_mask.body_mask``'s result when the caller has it."""
    import time

    from lungcad_preprocess.lung_mask import LungMaskParams, body_mask

    t = time.perf_counter()
    if threads > 0 or _forked_from_torch:
        import torch

        torch.set_num_threads(1 if _forked_from_torch else threads)
    loaded = load(weights)
    if loaded is None:
        return labels, {"used": False, "reason": "weights_missing"}
    model, sidecar = loaded
    spacing = float(sidecar.get("input_spacing_mm", 2.0))
    if abs(voxel_mm - spacing) > 1e-6:
        return labels, {"used": False, "reason": f"grid {voxel_mm} mm, trained on {spacing} mm"}
    probability = predict_probability(model, hu)
    if body is None:
        body = body_mask(hu, params or LungMaskParams(), voxel_mm)
    out, info = add_masses(labels, hu, probability, body)
    voxel_ml = voxel_mm**3 / 1000
    return out, {"used": not info["refused"], "version": sidecar.get("version"),
                 "added_ml": round(info["added_voxels"] * voxel_ml, 1),
                 "refused": info["refused"], "seconds": round(time.perf_counter() - t, 2)}
