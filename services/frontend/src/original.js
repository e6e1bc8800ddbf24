// @ts-check
/**
 * Geometry of the original series (GET /v1/jobs/{id}/viewer/original): map an LPS point (mm)
 * to an image of the stack and its (column, row), and back. Pure functions, no DOM.
 *
 * DICOM conventions: ImageOrientationPatient is the row direction (along a row, columns
 * increase) then the column direction (down a column, rows increase); PixelSpacing is
 * [between rows, between columns]; ImagePositionPatient is the centre of pixel (0, 0).
 * The stack index k is the position in `series.images` (InstanceNumber order).
 */

/**
 * @typedef {{instance_number: number | null, sop_instance_uid: string, frame_number: number | null,
 *   image_position_patient: number[]}} OriginalImage
 * @typedef {{rows: number, columns: number, pixel_spacing: number[], image_orientation_patient: number[],
 *   images: OriginalImage[], series_instance_uid: string | null, pixels_url: string}} OriginalSeries
 * @typedef {{k: number, column: number, row: number, distanceMm: number}} ImagePoint
 */

/** @param {number[]} a @param {number[]} b */
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

/** @param {OriginalSeries} series */
export function axes(series) {
  const o = series.image_orientation_patient;
  const rowDir = o.slice(0, 3);
  const colDir = o.slice(3, 6);
  const n = [rowDir[1] * colDir[2] - rowDir[2] * colDir[1], rowDir[2] * colDir[0] - rowDir[0] * colDir[2],
    rowDir[0] * colDir[1] - rowDir[1] * colDir[0]];
  const len = Math.hypot(n[0], n[1], n[2]) || 1;
  return { rowDir, colDir, normal: n.map((v) => v / len) };
}

/**
 * The image nearest to an LPS point (along the slice normal) and the point's column and row
 * on it (pixel units, fractional), with its distance from the image plane.
 * @param {OriginalSeries} series @param {number[]} mm
 * @returns {ImagePoint}
 */
export function worldToImage(series, mm) {
  const { normal } = axes(series);
  const depth = dot(mm, normal);
  let k = 0;
  let best = Infinity;
  series.images.forEach((image, i) => {
    const d = Math.abs(dot(image.image_position_patient, normal) - depth);
    if (d < best) { best = d; k = i; }
  });
  return { k, ...pointOnImage(series, k, mm), distanceMm: best };
}

/**
 * Column and row (fractional) of an LPS point projected on image k.
 * @param {OriginalSeries} series @param {number} k @param {number[]} mm
 */
export function pointOnImage(series, k, mm) {
  const { rowDir, colDir } = axes(series);
  const ipp = series.images[k].image_position_patient;
  const rel = [mm[0] - ipp[0], mm[1] - ipp[1], mm[2] - ipp[2]];
  const [rowMm, colMm] = series.pixel_spacing;
  return { column: dot(rel, rowDir) / colMm, row: dot(rel, colDir) / rowMm };
}

/**
 * Mean spacing between neighbouring images along the normal (mm); 1 for a single image.
 * @param {OriginalSeries} series
 */
export function imageGapMm(series) {
  const n = series.images.length;
  if (n < 2) return 1;
  const { normal } = axes(series);
  const depths = series.images.map((image) => dot(image.image_position_patient, normal));
  return (Math.max(...depths) - Math.min(...depths)) / (n - 1) || 1;
}

/**
 * The images of a slab MIP centred on image k: those whose plane lies within
 * `thicknessMm / 2` of image k's along the slice normal (by their positions, not their
 * indices: the spacing between images can vary), k always included.
 * @param {OriginalSeries} series @param {number} k @param {number} thicknessMm
 * @returns {number[]} stack indices, ascending
 */
export function slabImages(series, k, thicknessMm) {
  const { normal } = axes(series);
  const here = dot(series.images[k].image_position_patient, normal);
  const reach = thicknessMm / 2 + 0.01; // positions are stored rounded: a 2.5 mm step can read 2.5000001
  const out = [];
  for (let i = 0; i < series.images.length; i++) {
    if (i === k || Math.abs(dot(series.images[i].image_position_patient, normal) - here) <= reach) out.push(i);
  }
  return out;
}

/**
 * The LPS point (mm) of pixel (column, row) of image k.
 * @param {OriginalSeries} series @param {number} k @param {number} column @param {number} row
 */
export function imageToWorld(series, k, column, row) {
  const { rowDir, colDir } = axes(series);
  const ipp = series.images[k].image_position_patient;
  const [rowMm, colMm] = series.pixel_spacing;
  return [0, 1, 2].map((i) => ipp[i] + column * colMm * rowDir[i] + row * rowMm * colDir[i]);
}

/**
 * The end points in LPS mm (rounded to 0.01 mm) of a line drawn on image k, in image pixel
 * units `[u0, v0, u1, v1]` (pixel column c spans u in [c, c + 1], as measure.js draws).
 * @param {OriginalSeries} series @param {number} k @param {number[]} line
 * @returns {number[][]} `[[x, y, z], [x, y, z]]`
 */
export function lineToWorld(series, k, line) {
  return [[line[0], line[1]], [line[2], line[3]]].map(([u, v]) =>
    imageToWorld(series, k, u - 0.5, v - 0.5).map((x) => Math.round(x * 100) / 100));
}

/**
 * Signed distance (mm) of image k from a point along the slice normal.
 * @param {OriginalSeries} series @param {number} k @param {number[]} mm
 */
export function depthMm(series, k, mm) {
  const { normal } = axes(series);
  return dot(series.images[k].image_position_patient, normal) - dot(mm, normal);
}

/**
 * The stack index of the image with this InstanceNumber (the first, for a multi-frame object),
 * or -1. @param {OriginalSeries} series @param {number | null | undefined} instanceNumber
 */
export function indexOfInstance(series, instanceNumber) {
  if (instanceNumber == null) return -1;
  return series.images.findIndex((image) => image.instance_number === instanceNumber);
}

/**
 * The image a finding is shown on: the one whose InstanceNumber it carries, else (none, or a
 * multi-frame object) the image nearest to its centre.
 * @param {OriginalSeries} series @param {{center_mm: number[], instance_number?: number | null}} finding
 */
export function findingImage(series, finding) {
  const k = indexOfInstance(series, finding.instance_number);
  return k < 0 || series.images[k].frame_number != null ? worldToImage(series, finding.center_mm).k : k;
}
