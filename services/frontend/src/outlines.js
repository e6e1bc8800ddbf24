// @ts-check
/**
 * The findings' outlines on the original series' native images: each finding's segmentation
 * (the job's DICOM SEG, `GET /v1/jobs/{id}/viewer/original/outlines`) as run-length masks in
 * native pixels, traced along the pixel edges and stroked as a contour. A finding without an
 * outline keeps its circle (`stack.js`).
 */

/**
 * @typedef {{index: number, instance_number: number | null, sop_instance_uid: string,
 *   pixels: number, runs: number[][]}} OutlineImage `runs`: [row, first column, length]
 * @typedef {{finding_id: string, segment_number: number | null, images: OutlineImage[]}} FindingOutline
 * @typedef {{source: string | null, rows: number, columns: number, findings: FindingOutline[]}} OriginalOutlines
 * @typedef {{edges: number[], box: number[]}} Contour `edges`: flat [x0, y0, x1, y1, ...] and
 *   `box`: [left, top, right, bottom], both in image pixel-corner units (column, row): pixel
 *   (r, c) covers [c, c + 1] x [r, r + 1]
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

/** The outlines of one case, by finding and stack image; contours traced on first use. */
export class Outlines {
  /** @param {OriginalOutlines | null} answer */
  constructor(answer) {
    /** @type {Map<string, Map<number, number[][]>>} */
    this.runs = new Map();
    for (const f of answer?.findings || []) {
      if (f.images.length) this.runs.set(f.finding_id, new Map(f.images.map((i) => [i.index, i.runs])));
    }
    /** @type {Map<string, Contour | null>} */
    this.traced = new Map();
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
    const key = `${id} ${k}`;
    if (!this.traced.has(key)) {
      const runs = this.runs.get(id)?.get(k);
      this.traced.set(key, runs?.length ? contourOf(runs) : null);
    }
    return /** @type {Contour | null} */ (this.traced.get(key));
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
