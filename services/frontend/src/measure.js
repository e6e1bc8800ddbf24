// @ts-check
/**
 * Calipers: a length, or a bidirectional long x short axis, drawn on a pane. Lines are
 * `[u0, v0, u1, v1]` in pane pixel units (voxel column c spans u in [c, c + 1]); lengths come
 * from the mm per pane pixel along its columns and rows.
 */
import { outlinedText } from "./annotations.js";

const COLOUR = "#4fd8ff";

/**
 * A pane's kept caliper, drawn on its slice `index` along the pane's axis.
 * @typedef {{index: number, long: number[], longMm: number, short: number[] | null,
 *   shortMm: number | null, bidirectional: boolean}} Measure
 */

/**
 * Length in mm of a line in pane pixel units.
 * @param {number[]} line @param {number} colMm @param {number} rowMm mm per pane pixel
 */
export function lineMm(line, colMm, rowMm) {
  return Math.hypot((line[2] - line[0]) * colMm, (line[3] - line[1]) * rowMm);
}

/**
 * The short axis as Lung-RADS measures it, perpendicular to the long axis: the drag from its
 * start point projected onto the direction perpendicular (in mm, so also on anisotropic
 * pixels) to `long`.
 * @param {number[]} long @param {number[]} line @param {number} colMm @param {number} rowMm
 * @returns {number[]}
 */
export function perpendicularLine(long, line, colMm, rowMm) {
  const dx = (long[2] - long[0]) * colMm;
  const dy = (long[3] - long[1]) * rowMm;
  const len = Math.hypot(dx, dy);
  if (!len) return line;
  const nx = -dy / len;
  const ny = dx / len;
  const along = (line[2] - line[0]) * colMm * nx + (line[3] - line[1]) * rowMm * ny;
  return [line[0], line[1], line[0] + (nx * along) / colMm, line[1] + (ny * along) / rowMm];
}

/**
 * The caliper after a drag: with the bidirectional tool, the short axis (made perpendicular
 * to the long axis) of a long axis drawn on the same slice that has none yet; else a new
 * caliper.
 * @param {Measure | null} current @param {number[]} line @param {number} mm
 * @param {number} index @param {boolean} bidirectional
 * @param {number} [colMm] @param {number} [rowMm] mm per pane pixel
 * @returns {Measure}
 */
export function nextMeasure(current, line, mm, index, bidirectional, colMm = 1, rowMm = 1) {
  if (bidirectional && current?.bidirectional && !current.short && current.index === index) {
    const short = perpendicularLine(current.long, line, colMm, rowMm);
    return { ...current, short, shortMm: lineMm(short, colMm, rowMm) };
  }
  return { index, long: line, longMm: mm, short: null, shortMm: null, bidirectional };
}

/**
 * A measurement's text: "23.4 mm", or "23.4 × 12.1 mm" with a short axis.
 * @param {number} longMm @param {number | null} [shortMm]
 */
export function measureText(longMm, shortMm) {
  return shortMm == null ? `${longMm.toFixed(1)} mm` : `${longMm.toFixed(1)} × ${shortMm.toFixed(1)} mm`;
}

/**
 * Draw a caliper line with end ticks, in device px.
 * @param {CanvasRenderingContext2D} ctx @param {number[]} line `[x0, y0, x1, y1]`
 * @param {number} dpr @param {boolean} solid false: dashed (drawn on another slice)
 */
function drawCaliper(ctx, line, dpr, solid) {
  const [x0, y0, x1, y1] = line;
  const len = Math.hypot(x1 - x0, y1 - y0) || 1;
  const tx = (-(y1 - y0) / len) * 4 * dpr;
  const ty = ((x1 - x0) / len) * 4 * dpr;
  ctx.setLineDash(solid ? [] : [4 * dpr, 3 * dpr]);
  for (const [colour, width] of [["rgba(0, 0, 0, 0.8)", 3 * dpr], [COLOUR, 1.5 * dpr]]) {
    ctx.strokeStyle = /** @type {string} */ (colour);
    ctx.lineWidth = /** @type {number} */ (width);
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.moveTo(x0 - tx, y0 - ty);
    ctx.lineTo(x0 + tx, y0 + ty);
    ctx.moveTo(x1 - tx, y1 - ty);
    ctx.lineTo(x1 + tx, y1 + ty);
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

/**
 * Draw a pane's caliper (dashed away from the slice it was drawn on) and the one being drawn.
 * @param {CanvasRenderingContext2D} ctx @param {Measure | null} measure
 * @param {{line: number[], mm: number} | null} draft @param {boolean} here on the caliper's slice
 * @param {(line: number[]) => number[]} screen pane pixel units to device px
 * @param {number} dpr
 */
export function paintCalipers(ctx, measure, draft, here, screen, dpr) {
  ctx.font = `${12 * dpr}px system-ui, sans-serif`;
  if (measure) {
    const long = screen(measure.long);
    drawCaliper(ctx, long, dpr, here);
    if (measure.short) drawCaliper(ctx, screen(measure.short), dpr, here);
    const [x, y] = long[0] > long[2] ? long.slice(0, 2) : long.slice(2);
    outlinedText(ctx, measureText(measure.longMm, measure.shortMm), x + 6 * dpr, y - 6 * dpr, dpr, COLOUR);
  }
  if (draft) {
    const line = screen(draft.line);
    drawCaliper(ctx, line, dpr, true);
    outlinedText(ctx, measureText(draft.mm), line[2] + 6 * dpr, line[3] - 6 * dpr, dpr, COLOUR);
  }
}
