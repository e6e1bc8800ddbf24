// @ts-check
/**
 * Slab maximum intensity projection (MIP) of an int16 HU volume `(z, y, x)`, cut in a pane's
 * orientation: axial rows y, columns x; coronal rows z (superior up), columns x; sagittal rows z
 * (superior up), columns y; and of images of a native stack `(n, rows, columns)`. Pure
 * functions on typed arrays.
 */

/** Slab thicknesses offered, in mm. */
export const SLAB_MM = [5, 10, 20];

/**
 * The index range `[lo, hi]` (inclusive) of a slab `thicknessMm` thick centred on `index`
 * along an axis of `n` voxels `spacingMm` apart, clamped to the volume.
 * @param {number} index @param {number} n @param {number} thicknessMm @param {number} spacingMm
 * @returns {[number, number]}
 */
export function slabRange(index, n, thicknessMm, spacingMm) {
  const count = Math.max(1, Math.round(thicknessMm / spacingMm));
  const lo = index - Math.floor((count - 1) / 2);
  return [Math.max(0, lo), Math.min(n - 1, lo + count - 1)];
}

/**
 * The maximum HU over slices `lo..hi` along the pane's axis, as an image of the pane
 * (row-major, `out.length === width * height`).
 * @param {Int16Array} volume `(z, y, x)` @param {{nz: number, ny: number, nx: number}} shape
 * @param {"axial" | "coronal" | "sagittal"} plane @param {number} lo @param {number} hi
 * @param {Int16Array} out
 * @returns {Int16Array} `out`
 */
export function slabMax(volume, shape, plane, lo, hi, out) {
  const { nz, ny, nx } = shape;
  const stride = ny * nx;
  if (plane === "axial") {
    out.set(volume.subarray(lo * stride, (lo + 1) * stride));
    for (let z = lo + 1; z <= hi; z++) {
      const base = z * stride;
      for (let k = 0; k < stride; k++) {
        const v = volume[base + k];
        if (v > out[k]) out[k] = v;
      }
    }
  } else if (plane === "coronal") {
    for (let r = 0; r < nz; r++) {
      const row = r * nx;
      const zBase = (nz - 1 - r) * stride;
      out.set(volume.subarray(zBase + lo * nx, zBase + (lo + 1) * nx), row);
      for (let y = lo + 1; y <= hi; y++) {
        const base = zBase + y * nx;
        for (let x = 0; x < nx; x++) {
          const v = volume[base + x];
          if (v > out[row + x]) out[row + x] = v;
        }
      }
    }
  } else {
    for (let r = 0; r < nz; r++) {
      const zBase = (nz - 1 - r) * stride;
      for (let y = 0; y < ny; y++) {
        const base = zBase + y * nx;
        let m = volume[base + lo];
        for (let x = lo + 1; x <= hi; x++) {
          const v = volume[base + x];
          if (v > m) m = v;
        }
        out[r * ny + y] = m;
      }
    }
  }
  return out;
}

/**
 * The maximum HU over some images of a stack, as one image.
 * @param {Int16Array} stack `(n, rows, columns)` @param {number} size rows * columns
 * @param {number[]} images stack indices (at least one)
 * @param {Int16Array} out `size` values
 * @returns {Int16Array} `out`
 */
export function stackMax(stack, size, images, out) {
  out.set(stack.subarray(images[0] * size, (images[0] + 1) * size));
  for (const k of images.slice(1)) {
    const base = k * size;
    for (let i = 0; i < size; i++) {
      const v = stack[base + i];
      if (v > out[i]) out[i] = v;
    }
  }
  return out;
}
