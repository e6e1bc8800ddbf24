// @ts-check
/**
 * The findings' outlines, from the job's DICOM SEG: each finding's mask as runs
 * `[row, first column, length]` on an image, traced along the pixel edges and stroked as a
 * contour. Two sources: the original series' native images (`Outlines`,
 * `GET /v1/jobs/{id}/viewer/original/outlines`, runs per stack image) and the 1 mm grid
 * (`GridOutlines`, `GET /v1/jobs/{id}/viewer/outlines`, a box of voxels per finding whose
 * plane through the current slice is cut into runs in the pane's rows and columns). A finding
 * without an outline keeps its circle (`markers.js`).
 */

/**
 * @typedef {{index: number, instance_number: number | null, sop_instance_uid: string,
 *   pixels: number, runs: number[][]}} OutlineImage `runs`: [row, first column, length]
 * @typedef {{finding_id: string, segment_number: number | null, images: OutlineImage[]}} FindingOutline
 * @typedef {{source: string | null, rows: number, columns: number, findings: FindingOutline[]}} OriginalOutlines
 * @typedef {{finding_id: string, segment_number: number | null, box_zyx: number[] | null,
 *   voxels: number, runs: number[]}} GridOutline `box_zyx`: [z0, y0, x0, z1, y1, x1] (stop
 *   exclusive); `runs`: lengths over the box in C order (z, y, x), outside first, alternating
 * @typedef {{source: string | null, shape_zyx: number[], findings: GridOutline[]}} GridOutlinesAnswer
 * @typedef {{edges: number[], box: number[]}} Contour `edges`: flat [x0, y0, x1, y1, ...] and
 *   `box`: [left, top, right, bottom], both in image pixel-corner units (column, row): pixel
 *   (r, c) covers [c, c + 1] x [r, r + 1]
 * @typedef {"axial" | "coronal" | "sagittal"} Plane
 */

/**
 * The boundary of a run-length mask: the pixel edges between a pixel inside and one outside,
 * merged into straight segments.
 * @param {number[][]} runs [row, first column, length]
 * @returns {Contour}
 */
export function contourOf(runs) {
  let top = Infinity, bottom = -Infinity, left = Infinity, right = -Infinity;
  for (const [r, c, n] of runs) {
    top = Math.min(top, r);
    bottom = Math.max(bottom, r + 1);
    left = Math.min(left, c);
    right = Math.max(right, c + n);
  }
  const w = right - left;
  const h = bottom - top;
  const stride = w + 2; // a ring of outside pixels around the box
  const grid = new Uint8Array((h + 2) * stride);
  for (const [r, c, n] of runs) grid.fill(1, (r - top + 1) * stride + c - left + 1, (r - top + 1) * stride + c - left + 1 + n);
  const inside = (/** @type {number} */ y, /** @type {number} */ x) => grid[(y + 1) * stride + x + 1];
  /** @type {number[]} */
  const edges = [];
  for (let y = 0; y <= h; y++) { // the line above row y: rows y - 1 and y differ
    let start = -1;
    for (let x = 0; x <= w; x++) {
      const differs = x < w && inside(y - 1, x) !== inside(y, x);
      if (differs && start < 0) start = x;
      else if (!differs && start >= 0) {
        edges.push(left + start, top + y, left + x, top + y);
        start = -1;
      }
    }
  }
  for (let x = 0; x <= w; x++) { // the line left of column x: columns x - 1 and x differ
    let start = -1;
    for (let y = 0; y <= h; y++) {
      const differs = y < h && inside(y, x - 1) !== inside(y, x);
      if (differs && start < 0) start = y;
      else if (!differs && start >= 0) {
        edges.push(left + x, top + start, left + x, top + y);
        start = -1;
      }
    }
  }
  return { edges, box: [left, top, right, bottom] };
}

/** Contours of a case's outlines, each traced on first use and kept. */
class Contours {
  constructor() {
    /** @type {Map<string, Contour | null>} */
    this.traced = new Map();
  }

  /**
   * The contour kept under `key`, traced from `runs()` the first time (null: no mask there).
   * @param {string} key @param {() => number[][] | null | undefined} runs
   */
  trace(key, runs) {
    if (!this.traced.has(key)) {
      const found = runs();
      this.traced.set(key, found?.length ? contourOf(found) : null);
    }
    return /** @type {Contour | null} */ (this.traced.get(key));
  }
}

/** The outlines of one case on the original series, by finding and stack image. */
export class Outlines extends Contours {
  /** @param {OriginalOutlines | null} answer */
  constructor(answer) {
    super();
    /** @type {Map<string, Map<number, number[][]>>} */
    this.runs = new Map();
    for (const f of answer?.findings || []) {
      if (f.images.length) this.runs.set(f.finding_id, new Map(f.images.map((i) => [i.index, i.runs])));
    }
  }

  /** Whether a finding has an outline (on some image). @param {string} id */
  has(id) {
    return this.runs.has(id);
  }

  /**
   * A finding's contour on stack image `k`, or null where its mask does not cross that image.
   * @param {string} id @param {number} k
   */
  contour(id, k) {
    return this.trace(`${id} ${k}`, () => this.runs.get(id)?.get(k));
  }
}

/** The volume axes (indices into (z, y, x)) across a pane's slices, down its rows and along its columns. */
const PLANE_AXES = { axial: [0, 1, 2], coronal: [1, 0, 2], sagittal: [2, 0, 1] };

/**
 * Unpack run lengths (outside first, alternating) into one byte per voxel.
 * @param {number[]} runs @param {number} size
 */
function unpack(runs, size) {
  const bits = new Uint8Array(size);
  let at = 0;
  runs.forEach((n, i) => {
    if (i % 2) bits.fill(1, at, at + n);
    at += n;
  });
  return bits;
}

/**
 * The runs `[row, first column, length]` of a 3-D box mask on one plane of the 1 mm viewer
 * (`viewer.js`): axial rows y and columns x, coronal rows z (superior up) and columns x,
 * sagittal rows z and columns y; null when the slice misses the box.
 * @param {{lo: number[], hi: number[], bits: Uint8Array}} mask box [lo, hi) in (z, y, x)
 * @param {Plane} plane @param {number} index the slice along the plane's axis
 * @param {number} nz the grid's slices (a pane's row is nz - 1 - z)
 */
export function planeRuns(mask, plane, index, nz) {
  const [d, ra, ca] = PLANE_AXES[plane];
  const { lo, hi, bits } = mask;
  if (index < lo[d] || index >= hi[d]) return null;
  const stride = [(hi[1] - lo[1]) * (hi[2] - lo[2]), hi[2] - lo[2], 1];
  /** @type {number[][]} */
  const runs = [];
  for (let a = lo[ra]; a < hi[ra]; a++) {
    const row = ra === 0 ? nz - 1 - a : a;
    const base = (index - lo[d]) * stride[d] + (a - lo[ra]) * stride[ra];
    let start = -1;
    for (let b = lo[ca]; b <= hi[ca]; b++) {
      const on = b < hi[ca] && bits[base + (b - lo[ca]) * stride[ca]];
      if (on && start < 0) start = b;
      else if (!on && start >= 0) {
        runs.push([row, start, b - start]);
        start = -1;
      }
    }
  }
  return runs;
}

/** The outlines of one case on the 1 mm grid, by finding, plane and slice. */
export class GridOutlines extends Contours {
  /** @param {GridOutlinesAnswer | null} answer @param {number[]} shape the grid's (z, y, x) */
  constructor(answer, shape) {
    super();
    this.nz = shape[0];
    /** @type {Map<string, {lo: number[], hi: number[], bits: Uint8Array}>} */
    this.masks = new Map();
    const same = answer && answer.shape_zyx.every((n, i) => n === shape[i]);
    for (const f of same ? answer.findings : []) {
      if (!f.box_zyx) continue;
      const lo = f.box_zyx.slice(0, 3);
      const hi = f.box_zyx.slice(3);
      this.masks.set(f.finding_id, { lo, hi, bits: unpack(f.runs, (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2])) });
    }
  }

  /** Whether a finding has a mask on the grid. @param {string} id */
  has(id) {
    return this.masks.has(id);
  }

  /**
   * A finding's contour on a plane's slice, in the pane's pixel-corner units, or null where
   * its mask does not cross that slice.
   * @param {string} id @param {Plane} plane @param {number} index
   */
  contour(id, plane, index) {
    const mask = this.masks.get(id);
    return this.trace(`${id} ${plane} ${index}`, () => mask && planeRuns(mask, plane, index, this.nz));
  }
}

/**
 * Stroke a contour (the caller sets the colour and width).
 * @param {CanvasRenderingContext2D} ctx @param {Contour} contour
 * @param {(c: number) => number} X @param {(r: number) => number} Y canvas position of a pixel
 *   corner's column and row
 */
export function paintContour(ctx, contour, X, Y) {
  const e = contour.edges;
  ctx.beginPath();
  for (let i = 0; i < e.length; i += 4) {
    ctx.moveTo(X(e[i]), Y(e[i + 1]));
    ctx.lineTo(X(e[i + 2]), Y(e[i + 3]));
  }
  ctx.stroke();
}
