// @ts-check
/**
 * What the viewer draws over the image besides the findings and calipers: orientation markers
 * on the pane edges and a scale bar. Canvas drawing helpers in device pixels; text gets a dark
 * outline so that it stays readable over bone or contrast.
 */

/**
 * The patient direction at each pane edge, `[left, right, top, bottom]`, for the viewer's
 * layout (axial: patient right on the screen left, anterior up; coronal and sagittal: superior
 * up; sagittal: anterior left).
 */
export const ORIENTATION = {
  axial: ["R", "L", "A", "P"],
  coronal: ["R", "L", "S", "I"],
  sagittal: ["A", "P", "S", "I"],
};

/** The patient direction named by each LPS axis, for its negative and positive sense. */
const AXIS_LETTERS = [["R", "L"], ["A", "P"], ["I", "S"]];

/** A direction cosine counts toward a direction's name from this size (about 17 degrees off). */
const OBLIQUE_MIN = 0.3;

/**
 * The patient direction an LPS unit vector points to: one letter for an axis-aligned vector,
 * up to three for an oblique one, the strongest first (`[0.8, -0.6, 0]` is "LA").
 * @param {number[]} v LPS direction (unit length)
 */
export function patientDirection(v) {
  return [0, 1, 2].filter((i) => Math.abs(v[i]) >= OBLIQUE_MIN)
    .sort((a, b) => Math.abs(v[b]) - Math.abs(v[a]))
    .map((i) => AXIS_LETTERS[i][v[i] > 0 ? 1 : 0]).join("");
}

/**
 * The patient direction at each edge of an image drawn as DICOM stores it (columns to the
 * right along the row direction, rows down along the column direction), from its
 * ImageOrientationPatient: `[left, right, top, bottom]`. A standard axial image gives
 * R, L, A, P.
 * @param {number[]} iop ImageOrientationPatient: row direction, then column direction (LPS)
 */
export function orientationOf(iop) {
  const rowDir = iop.slice(0, 3);
  const colDir = iop.slice(3, 6);
  const minus = (/** @type {number[]} */ v) => v.map((x) => -x);
  return [patientDirection(minus(rowDir)), patientDirection(rowDir), patientDirection(minus(colDir)),
    patientDirection(colDir)];
}

/** Scale bar lengths offered, in mm. */
const SCALE_MM = [1, 2, 5, 10, 20, 50, 100, 200];

/**
 * Text with a dark outline.
 * @param {CanvasRenderingContext2D} ctx @param {string} text @param {number} x @param {number} y
 * @param {number} dpr @param {string} [colour]
 */
export function outlinedText(ctx, text, x, y, dpr, colour = "#fff") {
  ctx.lineJoin = "round";
  ctx.lineWidth = 3 * dpr;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.9)";
  ctx.strokeText(text, x, y);
  ctx.fillStyle = colour;
  ctx.fillText(text, x, y);
}

/**
 * Draw the four orientation letters of a pane at the middle of its edges.
 * @param {CanvasRenderingContext2D} ctx @param {string[]} letters `[left, right, top, bottom]`
 *   (`ORIENTATION[plane]`, or `orientationOf(iop)`)
 * @param {number} cw @param {number} ch canvas size (device px) @param {number} dpr
 * @returns {string[]} the letters drawn, `[left, right, top, bottom]`
 */
export function drawOrientation(ctx, letters, cw, ch, dpr) {
  const [left, right, top, bottom] = letters;
  const pad = 6 * dpr;
  ctx.font = `bold ${14 * dpr}px system-ui, sans-serif`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  outlinedText(ctx, left, pad, ch / 2, dpr);
  ctx.textAlign = "right";
  outlinedText(ctx, right, cw - pad, ch / 2, dpr);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  outlinedText(ctx, top, cw / 2, pad + 20 * dpr, dpr); // below the pane's label
  ctx.textBaseline = "bottom";
  outlinedText(ctx, bottom, cw / 2, ch - pad, dpr);
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  return [left, right, top, bottom];
}

/**
 * The longest offered scale bar no longer than `maxPx`, at `pxPerMm` (the shortest if none
 * fits).
 * @param {number} pxPerMm @param {number} maxPx
 * @returns {{mm: number, px: number}} px rounded to whole device pixels
 */
export function chooseScale(pxPerMm, maxPx) {
  let mm = SCALE_MM[0];
  for (const candidate of SCALE_MM) if (candidate * pxPerMm <= maxPx) mm = candidate;
  return { mm, px: Math.max(1, Math.round(mm * pxPerMm)) };
}

/**
 * Draw a horizontal scale bar in the bottom-right corner.
 * @param {CanvasRenderingContext2D} ctx @param {number} cw @param {number} ch
 * @param {number} pxPerMm device px per mm along the pane's columns @param {number} dpr
 * @returns {{mm: number, px: number, x: number, y: number}} the bar: its length, left end and
 *   middle row (device px)
 */
export function drawScaleBar(ctx, cw, ch, pxPerMm, dpr) {
  const { mm, px } = chooseScale(pxPerMm, cw * 0.25);
  const thick = Math.max(2, Math.round(3 * dpr));
  const x = Math.round(cw - 14 * dpr - px);
  const y = Math.round(ch - 14 * dpr - thick);
  ctx.fillStyle = "#000";
  ctx.fillRect(x - 1, y - 1, px + 2, thick + 2);
  ctx.fillStyle = "#fff";
  ctx.fillRect(x, y, px, thick);
  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  ctx.textAlign = "right";
  ctx.textBaseline = "bottom";
  outlinedText(ctx, `${mm} mm`, x + px, y - 3 * dpr, dpr);
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  return { mm, px, x, y: y + Math.floor(thick / 2) };
}
