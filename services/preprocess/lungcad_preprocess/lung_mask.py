"""Classical lung segmentation on a low-resolution canonical grid.

Input: HU ``(z, y, x)`` on an identity-direction grid (z inferior->superior, x right->left),
typically 2 mm isotropic. Output: labels ``(z, y, x)`` uint8, 0 background, 1 right lung,
2 left lung. Steps:

1. body: largest component of HU > -500 after an opening (drops the table), holes filled per
   axial slice;
2. air inside the body (HU < -400: includes severe emphysema);
3. trachea and main bronchi: tracked slice by slice from the top as small air regions until they
   merge into a lung, then removed;
4. lung components: large 3-D components; two lungs that touch are split by eroding until two
   parts appear and giving each voxel to the nearest part; left / right by patient x;
5. nodules, tumours and vessels put back inside: per-lung 3-D closing (rolling ball), holes
   filled per slice, and the per-slice convex hull where it adds a thin pleural bulge only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from lungcad.errors import ProcessingError

log = logging.getLogger(__name__)
RIGHT, LEFT = 1, 2


@dataclass(frozen=True)
class LungMaskParams:
    air_hu: float = -400.0
    body_hu: float = -500.0
    min_lung_ml: float = 20.0  # smallest component kept as lung
    min_total_ml: float = 150.0  # less than this in all: no lungs found
    trachea_max_area_mm2: float = 700.0
    closing_radius_mm: float = 12.0
    hull_max_depth_mm: float = 18.0
    max_hole_mm2: float = 2000.0  # holes filled per slice (nodules, tumours), not the liver dome


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


_SLICE_CONNECTIVITY = np.zeros((3, 3, 3), bool)
_SLICE_CONNECTIVITY[1] = ndi.generate_binary_structure(2, 1)


def _fill_slices(mask: np.ndarray, max_hole: float | None = None) -> np.ndarray:
    """Fill holes of every axial slice at once (2-D connectivity), up to ``max_hole`` pixels."""
    background = ~mask
    labels, _ = ndi.label(background, structure=_SLICE_CONNECTIVITY)
    edge = np.unique(np.concatenate([labels[:, 0, :].ravel(), labels[:, -1, :].ravel(),
                                     labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    hole = np.ones(int(labels.max()) + 1, bool)
    hole[edge] = False
    hole[0] = False
    if max_hole is not None:
        hole &= np.bincount(labels.ravel(), minlength=hole.size) <= max_hole
    return mask | hole[labels]


def body_mask(hu: np.ndarray, p: LungMaskParams, voxel_mm: float) -> np.ndarray:
    tissue = hu > p.body_hu
    r = max(1, int(round(3.0 / voxel_mm)))
    tissue = ndi.binary_opening(tissue, structure=ndi.generate_binary_structure(3, 1),
                                iterations=r)
    return _fill_slices(_largest(tissue))


def airway_mask(air: np.ndarray, body: np.ndarray, voxel_mm: float,
                p: LungMaskParams) -> np.ndarray:
    """Trachea and main bronchi: small air regions tracked downward from the top slices."""
    max_area = p.trachea_max_area_mm2 / voxel_mm**2
    out = np.zeros_like(air)
    nz = air.shape[0]
    current = None
    for k in range(nz - 1, max(-1, nz - 1 - int(120 / voxel_mm)), -1):  # search the top 12 cm
        labels, n = ndi.label(air[k])
        if n == 0:
            continue
        ys, xs = np.nonzero(body[k])
        if xs.size == 0:
            continue
        cx = xs.mean()
        areas = np.bincount(labels.ravel())
        centres = ndi.center_of_mass(air[k], labels, range(1, n + 1))
        for i, (_, x) in enumerate(centres, start=1):
            if (25 / voxel_mm**2 < areas[i] < max_area / 2
                    and abs(x - cx) < 35 / voxel_mm):
                current = labels == i
                break
        if current is not None:
            break
    if current is None:
        return out
    seed_area = current.sum()
    for kk in range(k, -1, -1):
        labels, _ = ndi.label(air[kk])
        ids = np.unique(labels[current & (labels > 0)])
        keep = np.zeros_like(current)
        for i in ids:
            comp = labels == i
            if comp.sum() > max(max_area, 3 * seed_area):
                continue  # merged into a lung: stop this branch
            keep |= comp
        if not keep.any():
            break
        out[kk] = keep
        current = ndi.binary_dilation(keep)
    return out


def split_lungs(component: np.ndarray, max_iter: int = 12) -> tuple[np.ndarray, np.ndarray] | None:
    """Split one connected two-lung mask into two parts by erosion; None when it will not split."""
    box = _bbox(component, 1)
    sub = component[box]
    eroded = sub
    for _ in range(max_iter):
        eroded = ndi.binary_erosion(eroded)
        labels, n = ndi.label(eroded)
        if n < 2:
            continue
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        a, b = np.argsort(sizes)[::-1][:2]
        if sizes[b] < 0.1 * sizes[a]:
            continue
        seeds = np.where(labels == a, 1, 0) + np.where(labels == b, 2, 0)
        _, idx = ndi.distance_transform_edt(seeds == 0, return_indices=True)
        nearest = seeds[tuple(idx)]
        first, second = np.zeros_like(component), np.zeros_like(component)
        first[box] = sub & (nearest == 1)
        second[box] = sub & (nearest == 2)
        return first, second
    return None


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    out = []
    for ax in ((1, 2), (0, 2), (0, 1)):
        idx = np.nonzero(mask.any(axis=ax))[0]
        out.append(slice(max(0, int(idx[0]) - pad), int(idx[-1]) + pad + 1))
    return tuple(out)


def _distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance in voxels to the boundary of ``mask`` (negative inside)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayViewFromImage(sitk.SignedMaurerDistanceMap(
        image, insideIsPositive=False, squaredDistance=False, useImageSpacing=False)).copy()


def _close(mask: np.ndarray, radius_vox: int) -> np.ndarray:
    """3-D closing with a ball (rolling ball), via distance maps inside a padded box."""
    if not mask.any() or radius_vox < 1:
        return mask
    pad = radius_vox + 2
    box = _bbox(mask, pad)
    sub = np.pad(mask[box], pad)
    dilated = _distance(sub) <= radius_vox
    closed = _distance(dilated) < -radius_vox + 0.5
    out = mask.copy()
    out[box] |= closed[pad:-pad, pad:-pad, pad:-pad]
    return out


def _hull_fill(mask: np.ndarray, max_depth_vox: float) -> np.ndarray:
    """Add per-slice convex-hull pockets shallower than ``max_depth_vox`` (pleural nodules)."""
    from matplotlib.path import Path as MplPath  # light, already a dependency
    from scipy.spatial import ConvexHull, QhullError

    out = mask.copy()
    for k in range(mask.shape[0]):
        sl = mask[k]
        if sl.sum() < 20:
            continue
        ys, xs = np.nonzero(sl)
        pts = np.column_stack([xs, ys]).astype(float)
        try:
            hull = ConvexHull(pts)
        except QhullError:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        gy, gx = np.mgrid[y0:y1, x0:x1]
        inside = MplPath(pts[hull.vertices]).contains_points(
            np.column_stack([gx.ravel(), gy.ravel()]), radius=0.5).reshape(gy.shape)
        pocket = inside & ~sl[y0:y1, x0:x1]
        labels, n = ndi.label(pocket)
        if n == 0:
            continue
        depth = ndi.distance_transform_edt(~sl[y0:y1, x0:x1])
        deepest = ndi.maximum(depth, labels, range(1, n + 1))
        shallow = np.isin(labels, 1 + np.nonzero(np.asarray(deepest) <= max_depth_vox)[0])
        out[k, y0:y1, x0:x1] |= shallow
    return out


def segment_lungs(hu: np.ndarray, voxel_mm: float, x_axis_sign: float = 1.0,
                  params: LungMaskParams | None = None, body: np.ndarray | None = None
                  ) -> np.ndarray:
    """Label right (1) and left (2) lungs in ``hu`` ``(z, y, x)`` on an isotropic grid.

    ``x_axis_sign`` is +1 when array x increases toward patient left (the canonical grid);
    ``body`` is :func:`body_mask`'s result when the caller already has it.
    Raises ProcessingError ``no_lungs_found`` when no lung-sized air is inside the body.
    """
    p = params or LungMaskParams()
    body = body_mask(hu, p, voxel_mm) if body is None else body
    air = (hu < p.air_hu) & body
    airway = airway_mask(air, body, voxel_mm, p)
    if airway.any():
        air &= ~ndi.binary_dilation(airway, iterations=1)
    labels, n = ndi.label(air)
    sizes = np.bincount(labels.ravel()) * voxel_mm**3 / 1000.0
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    big = [int(i) for i in order[:3] if sizes[i] >= max(p.min_lung_ml, 0.08 * sizes[order[0]])]
    if not big or sum(sizes[i] for i in big) < p.min_total_ml:
        raise ProcessingError("No lungs were found: the volume has no lung-sized air inside "
                              "the body (is this a chest CT?).", code="no_lungs_found")
    parts = [labels == i for i in big]
    if len(parts) == 1 or sizes[big[1]] < 0.15 * sizes[big[0]]:
        split = split_lungs(parts[0])
        if split is not None:
            parts = list(split) + parts[1:]
    xs = np.arange(hu.shape[2]) * x_axis_sign
    body_cx = float((body.sum(axis=(0, 1)) * xs).sum() / max(body.sum(), 1))
    out = np.zeros(hu.shape, dtype=np.uint8)
    centres = [float((p_.sum(axis=(0, 1)) * xs).sum() / p_.sum()) for p_ in parts]
    for part, cx in zip(parts, centres, strict=True):
        out[part] = LEFT if cx > body_cx else RIGHT
    radius = int(round(p.closing_radius_mm / voxel_mm))
    max_hole = p.max_hole_mm2 / voxel_mm**2
    for lab in (RIGHT, LEFT):
        lung = out == lab
        if not lung.any():
            continue
        filled = _fill_slices(_close(lung, radius) & body, max_hole)
        filled = _hull_fill(filled, p.hull_max_depth_mm / voxel_mm) & body
        out[filled & (out == 0)] = lab
    out[airway] = 0
    return out


def lung_volumes_ml(labels: np.ndarray, voxel_ml: float) -> dict[str, float]:
    counts = np.bincount(labels.ravel(), minlength=3)
    return {"right_ml": round(float(counts[RIGHT]) * voxel_ml, 1),
            "left_ml": round(float(counts[LEFT]) * voxel_ml, 1)}
