// @ts-check
/**
 * The findings and added nodules drawn over a pane, for both viewers: a finding with an
 * outline (its DICOM SEG mask, `outlines.js`) as the contour where the mask crosses the image
 * or slice; any other marker, where its sphere (centre, long axis) crosses, as a circle sized
 * by the cross-section there, an added missed nodule as a square. Colours: added #ffd400,
 * rejected #888, selected #ff3b3b, others #ff8c1a. The pane element carries where the selected
 * marker is drawn and how (`data-selected-at`, CSS px, and `data-selected-shape`: "outline" or
 * "circle"), for the tests.
 */
import { paintContour } from "./outlines.js";
import { depthMm, pointOnImage } from "./original.js";

/**
 * @typedef {import("./outlines.js").Contour} Contour
 * @typedef {{id: string, kind?: "finding" | "added", verdict?: string}} AnyMarker
 */

/** @param {CanvasRenderingContext2D} ctx @param {AnyMarker} m @param {boolean} selected @param {number} dpr */
function styleFor(ctx, m, selected, dpr) {
  ctx.lineWidth = (selected ? 2.5 : 1.5) * dpr;
  ctx.strokeStyle = m.kind === "added" ? "#ffd400" : m.verdict === "reject" ? "#888" : selected ? "#ff3b3b" : "#ff8c1a";
  ctx.fillStyle = ctx.strokeStyle;
}

/**
 * Stroke a contour and write its label right of its box's top; its box centre (canvas px).
 * @param {CanvasRenderingContext2D} ctx @param {Contour} contour @param {string} text
 * @param {(c: number) => number} X @param {(r: number) => number} Y canvas position of a pixel
 *   corner's column and row @param {number} dpr
 */
function drawOutline(ctx, contour, text, X, Y, dpr) {
  const [x0, y0, x1, y1] = contour.box.map((v, i) => (i % 2 ? Y(v) : X(v))); // corners
  paintContour(ctx, contour, X, Y);
  ctx.fillText(text, x1 + 3 * dpr, y0);
  return [(x0 + x1) / 2, (y0 + y1) / 2];
}

/**
 * Where the selected marker is drawn (its circle's centre, or its outline's box centre) and
 * how, in CSS pixels of the pane.
 * @param {HTMLElement} el @param {"outline" | "circle"} shape @param {number} x @param {number} y @param {number} dpr
 */
function markSelected(el, shape, x, y, dpr) {
  el.dataset.selectedAt = `${(x / dpr).toFixed(1)} ${(y / dpr).toFixed(1)}`;
  el.dataset.selectedShape = shape;
}

/**
 * The markers on the original series' current image (`stack.js`).
 * @param {import("./stack.js").StackViewer} v @param {CanvasRenderingContext2D} ctx
 * @param {(c: number) => number} X @param {(r: number) => number} Y canvas position of a pixel centre
 * @param {number} perMm @param {number} dpr
 */
export function paintStackMarkers(v, ctx, X, Y, perMm, dpr) {
  ctx.font = `${12 * dpr}px system-ui, sans-serif`;
  delete v.el.dataset.selectedShape;
  for (const m of v.markers) {
    if (!m.center_mm) continue;
    const selected = m.id === v.selected;
    styleFor(ctx, m, selected, dpr);
    if (m.kind !== "added" && v.outlines.has(m.id)) {
      const contour = v.outlines.contour(m.id, v.k);
      if (!contour) continue; // its mask does not cross this image
      const [x, y] = drawOutline(ctx, contour, m.id, (c) => X(c - 0.5), (r) => Y(r - 0.5), dpr);
      if (selected) markSelected(v.el, "outline", x, y, dpr);
      continue;
    }
    const radiusMm = (m.diameter_mm || 6) / 2;
    const depth = depthMm(v.series, v.k, m.center_mm);
    if (Math.abs(depth) > radiusMm + v.gapMm / 2) continue; // its sphere misses this image
    const { column: c, row: r } = pointOnImage(v.series, v.k, m.center_mm);
    const inPlane = Math.sqrt(Math.max(0, radiusMm ** 2 - depth ** 2)) || radiusMm / 3;
    const rPix = Math.max(4 * dpr, inPlane * perMm);
    if (selected) markSelected(v.el, "circle", X(c), Y(r), dpr);
    ctx.beginPath();
    if (m.kind === "added") ctx.rect(X(c) - rPix, Y(r) - rPix, 2 * rPix, 2 * rPix);
    else ctx.ellipse(X(c), Y(r), rPix, rPix, 0, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.fillText(m.id, X(c) + rPix + 3 * dpr, Y(r) - rPix);
  }
}

/**
 * The markers on one pane of the 1 mm three-plane viewer (`viewer.js`), at its slice.
 * @param {import("./viewer.js").SliceViewer} v @param {any} p the pane
 * @param {CanvasRenderingContext2D} ctx
 * @param {(c: number) => number} X @param {(r: number) => number} Y canvas position of a pixel centre
 * @param {number} s canvas px per pane pixel @param {number} dpr
 */
export function paintGridMarkers(v, p, ctx, X, Y, s, dpr) {
  ctx.font = `${12 * dpr}px system-ui, sans-serif`;
  delete p.el.dataset.selectedShape;
  for (const m of v.markers) {
    const selected = m.id === v.selected;
    styleFor(ctx, m, selected, dpr);
    if (m.kind !== "added" && v.outlines.has(m.id)) {
      const contour = v.outlines.contour(m.id, p.plane, v.depthOf(p));
      if (!contour) continue; // its mask does not cross this slice
      const [x, y] = drawOutline(ctx, contour, m.label || m.id, (c) => X(c - 0.5), (r) => Y(r - 0.5), dpr);
      if (selected) markSelected(p.el, "outline", x, y, dpr);
      continue;
    }
    const at = v.pixelOf(p, m.index_zyx);
    const axisRadius = m.radius_vox[p.plane === "axial" ? 0 : p.plane === "coronal" ? 1 : 2];
    if (Math.abs(at.depth) > axisRadius + 0.5) continue;
    const inPlane = Math.sqrt(Math.max(0, axisRadius ** 2 - at.depth ** 2)) || 1;
    const rPix = Math.max(4 * dpr, inPlane * s);
    if (selected) markSelected(p.el, "circle", X(at.c), Y(at.r), dpr);
    ctx.beginPath();
    if (m.kind === "added") ctx.rect(X(at.c) - rPix, Y(at.r) - rPix, 2 * rPix, 2 * rPix);
    else ctx.arc(X(at.c), Y(at.r), rPix, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.fillText(m.label || m.id, X(at.c) + rPix + 3 * dpr, Y(at.r) - rPix);
  }
}
