// @ts-check
/**
 * The original-series reading mode: one pane showing the native images of the analysed DICOM
 * series, an int16 HU stack `(n, rows, columns)` in InstanceNumber order (as PACS shows it),
 * drawn with the native pixel aspect (PixelSpacing). Wheel and arrow keys step through the
 * images; window/level presets and drag, zoom and pan work as in the three-plane viewer
 * (input: `stackinput.js`). Each finding is drawn as its outline (the contour of its DICOM SEG
 * mask on the image, `outlines.js`), or, when it has none, as a circle where its sphere
 * (centre in LPS mm, long axis) crosses the native image (painting: `markers.js`).
 *
 * Reading tools as in the three-plane viewer, on the native pixels: calipers (length, or long x
 * short axis kept perpendicular) measured in mm from PixelSpacing and kept in patient
 * coordinates with the image they were drawn on; a slab MIP over the native images within
 * half the slab of the current one along the slice normal; orientation letters from
 * ImageOrientationPatient and a scale bar. It offers the methods of `SliceViewer` that the
 * case view calls; the lung tint and the crosshair need the 1 mm grid and are not drawn here.
 *
 * With a `SeriesLoader` (`series.js`) the stack fills while it is shown: an image not yet in is
 * drawn black with "loading" in the label, and drawn as soon as it arrives; the pane's
 * `data-complete` is "false" until every image is in ("error" when some could not be loaded).
 */
import { drawOrientation, drawScaleBar, orientationOf } from "./annotations.js";
import { paintStackMarkers } from "./markers.js";
import { lineMm, measureText, nextMeasure, paintCalipers } from "./measure.js";
import { findingImage, imageGapMm, lineToWorld, slabImages, worldToImage } from "./original.js";
import { Outlines } from "./outlines.js";
import { stackMax } from "./slab.js";
import { bindStackInput } from "./stackinput.js";
import { PRESETS, Windowed, recordRender } from "./windowing.js";

/**
 * @typedef {import("./original.js").OriginalSeries} OriginalSeries
 * @typedef {{id: string, center_mm?: number[] | null, diameter_mm?: number, kind?: "finding" | "added",
 *   verdict?: string}} StackMarker
 */

const CINE_FPS = 10;

export class StackViewer extends Windowed {
  /**
   * @param {HTMLElement} host
   * @param {{pixels: Int16Array, shape: number[], series: OriginalSeries,
   *   onPick?: (mm: number[]) => void, onWindow?: (v: StackViewer) => void,
   *   onMip?: (v: StackViewer) => void, onProbe?: (probe: any) => void,
   *   onMeasure?: (entries: import("./viewer.js").MeasureEntry[]) => void,
   *   outlines?: import("./outlines.js").OriginalOutlines | null, outlinesError?: string | null,
   *   loader?: import("./series.js").SeriesLoader | null}} options
   *   `shape` is (n, rows, columns); `loader`: fills `pixels` while shown (none: all in); `outlines`: the findings' outlines (null: circles only),
   *   `outlinesError`: why they could not be loaded (said in the pane's label)
   */
  constructor(host, options) {
    super(options.onWindow);
    this.host = host;
    this.pixels = options.pixels;
    this.series = options.series;
    const [n, rows, columns] = options.shape;
    this.shape = { n, rows, columns };
    this.onPick = options.onPick || (() => {});
    this.onProbe = options.onProbe || (() => {});
    this.onMip = options.onMip || (() => {});
    this.onMeasure = options.onMeasure || (() => {});
    const [rowMm, colMm] = this.series.pixel_spacing; // DICOM order: between rows, between columns
    this.rowMm = rowMm;
    this.colMm = colMm;
    this.gapMm = imageGapMm(this.series);
    this.k = Math.floor(n / 2);
    this.overlays = { nodules: true };
    this.outlines = new Outlines(options.outlines || null);
    this.outlinesError = options.outlinesError || null;
    this.loader = options.loader || null;
    /** why some images could not be loaded @type {string | null} */
    this.loadError = null;
    this.mip = false;
    this.slabMm = 10;
    this.mipHu = new Int16Array(rows * columns);
    this.mipKey = ""; // the images whose maximum mipHu holds
    /** the kept caliper, on stack image `index` @type {import("./measure.js").Measure | null} */
    this.measure = null;
    /** the caliper being drawn, image pixel units `[u0, v0, u1, v1]` @type {number[] | null} */
    this.draft = null;
    this.letters = orientationOf(this.series.image_orientation_patient);
    /** @type {import("./viewer.js").Tool} */
    this.tool = "window";
    /** @type {StackMarker[]} */
    this.markers = [];
    /** @type {string | null} */
    this.selected = null;
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.el = document.createElement("div");
    this.el.className = "pane pane-original";
    this.el.dataset.plane = "original";
    this.canvas = document.createElement("canvas");
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "Original series image. Mouse wheel or arrow keys: next or previous image; " +
      "drag: window/level, pan or measure; + and -: zoom; 0: reset; L and M: lung and mediastinum window; " +
      "P: slab maximum intensity projection; C: cine.");
    this.label = document.createElement("div");
    this.label.className = "pane-label";
    this.el.append(this.canvas, this.label);
    host.classList.add("single");
    host.append(this.el);
    this.el.dataset.complete = String(!this.loader || this.loader.complete);
    if (this.loader && !this.loader.complete) this.follow(this.loader);
    this.off = document.createElement("canvas");
    this.off.width = columns;
    this.off.height = rows;
    this.offCtx = /** @type {CanvasRenderingContext2D} */ (this.off.getContext("2d"));
    this.image = this.offCtx.createImageData(columns, rows);
    this.out = new Uint32Array(this.image.data.buffer);
    this.stale = true;
    this.frame = 0;
    this.cineTimer = 0;
    bindStackInput(this);
    this.resizer = new ResizeObserver(() => this.invalidate(false));
    this.resizer.observe(this.canvas);
    this.invalidate(true);
  }

  /** Redraw as images arrive; say when all are in or some failed. @param {import("./series.js").SeriesLoader} loader */
  follow(loader) {
    loader.onImages = (start, count) => {
      const shown = this.mip ? slabImages(this.series, this.k, this.slabMm) : [this.k];
      const here = shown.some((k) => k >= start && k < start + count);
      if (here) this.mipKey = "";
      this.invalidate(here);
    };
    loader.done.then(() => { this.el.dataset.complete = "true"; },
      (error) => {
        this.loadError = /** @type {Error} */ (error).message || String(error);
        this.el.dataset.complete = "error";
      }).finally(() => this.invalidate(false));
  }

  /** Whether image k's pixels are in. @param {number} k */
  hasImage(k) {
    return !this.loader || this.loader.loaded[k] === 1;
  }

  // -- state ----------------------------------------------------------------------------------
  /** @param {string} name @param {boolean} on */
  setOverlay(name, on) {
    if (name === "nodules") this.overlays.nodules = on;
    this.invalidate(false);
  }

  /** @param {import("./viewer.js").Tool} tool */
  setTool(tool) {
    this.tool = tool;
    this.el.classList.toggle("adding", tool === "add");
    this.el.classList.toggle("measuring", tool === "measure" || tool === "bidirectional");
  }

  /**
   * Slab MIP on or off, and its thickness: the maximum HU over the native images within
   * `mm / 2` of the current one along the slice normal. @param {boolean} on @param {number} [mm]
   */
  setMip(on, mm = this.slabMm) {
    this.mip = on;
    this.slabMm = mm;
    this.invalidate(true);
    this.onMip(this);
  }

  // -- calipers -------------------------------------------------------------------------------
  /**
   * Keep a drawn caliper: a new length, or with the bidirectional tool the short axis of the
   * long axis on this image. @param {number[]} line image pixel units
   */
  commitMeasure(line) {
    this.measure = nextMeasure(this.measure, line, lineMm(line, this.colMm, this.rowMm), this.k,
      this.tool === "bidirectional", this.colMm, this.rowMm);
    this.measureChanged();
  }

  clearMeasurements() {
    this.measure = null;
    this.measureChanged();
  }

  measureChanged() {
    const m = this.measure;
    if (m) this.el.dataset.measureMm = m.longMm.toFixed(1);
    else delete this.el.dataset.measureMm;
    if (m?.shortMm != null) this.el.dataset.measureShortMm = m.shortMm.toFixed(1);
    else delete this.el.dataset.measureShortMm;
    this.invalidate(false);
    this.onMeasure(this.measurements());
  }

  /**
   * The kept caliper as the three-plane viewer reports its own, with the image it was drawn
   * on (InstanceNumber, SOP Instance UID, frame) and its end points in LPS mm.
   * @returns {import("./viewer.js").MeasureEntry[]}
   */
  measurements() {
    const m = this.measure;
    if (!m) return [];
    const image = this.series.images[m.index];
    const ends = (/** @type {number[]} */ line) => lineToWorld(this.series, m.index, line);
    return [{ plane: "original", name: "Image", slice: m.index + 1, count: this.shape.n,
      text: measureText(m.longMm, m.shortMm), image: image.instance_number, sopInstanceUid: image.sop_instance_uid,
      frameNumber: image.frame_number, lps: { long: ends(m.long), short: m.short ? ends(m.short) : null } }];
  }

  /** @param {StackMarker[]} markers */
  setMarkers(markers) {
    this.markers = markers;
    this.invalidate(false);
  }

  /** @param {number} k */
  setImage(k) {
    const next = Math.max(0, Math.min(this.shape.n - 1, Math.round(k)));
    if (next === this.k) return;
    this.k = next;
    this.invalidate(true);
  }

  /**
   * Show a finding: the image whose InstanceNumber it carries (the nearest image to its
   * centre when it carries none, or for a multi-frame object), centred when zoomed.
   * @param {{id: string, center_mm: number[], instance_number?: number | null}} finding
   */
  jumpToFinding(finding) {
    this.selected = finding.id;
    const at = worldToImage(this.series, finding.center_mm);
    const k = findingImage(this.series, finding);
    this.panX = this.panY = 0;
    if (this.zoom > 1) {
      const { sx, sy } = this.transform();
      const dpr = devicePixelRatio || 1;
      this.panX = ((this.shape.columns / 2 - at.column - 0.5) * sx) / dpr;
      this.panY = ((this.shape.rows / 2 - at.row - 0.5) * sy) / dpr;
    }
    this.k = -1;
    this.setImage(k);
  }

  /**
   * Cine: step through the images at `fps` frames per second, wrapping at the end; a second
   * call (or any scroll or key step) stops it.
   * @param {number} [fps]
   */
  toggleCine(fps = CINE_FPS) {
    if (this.cineTimer) {
      this.stopCine();
      return;
    }
    this.cineTimer = setInterval(() => {
      this.k = (this.k + 1) % this.shape.n;
      this.invalidate(true);
    }, 1000 / fps);
    this.el.classList.add("cine");
    this.invalidate(false);
  }

  stopCine() {
    if (!this.cineTimer) return;
    clearInterval(this.cineTimer);
    this.cineTimer = 0;
    this.el.classList.remove("cine");
    this.invalidate(false);
  }

  /** @param {number} factor */
  zoomBy(factor) {
    this.zoom = Math.max(0.5, Math.min(16, this.zoom * factor));
    this.invalidate(false);
  }

  resetView() {
    this.zoom = 1;
    this.panX = this.panY = 0;
    this.window = { ...PRESETS.lung };
    this.windowChanged();
  }

  /** @param {boolean} pixels recompute the image's grey values too */
  invalidate(pixels) {
    if (pixels) this.stale = true;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  destroy() {
    this.loader?.stop();
    this.stopCine();
    cancelAnimationFrame(this.frame);
    this.resizer.disconnect();
    this.host.classList.remove("single");
    this.host.replaceChildren();
  }

  // -- geometry -------------------------------------------------------------------------------
  /** Canvas pixels per image pixel along columns (sx) and rows (sy), and the image's origin. */
  transform() {
    const { rows, columns } = this.shape;
    const cw = this.canvas.width;
    const ch = this.canvas.height;
    const dpr = devicePixelRatio || 1;
    const perMm = Math.min(cw / (columns * this.colMm), ch / (rows * this.rowMm)) * this.zoom;
    const sx = perMm * this.colMm;
    const sy = perMm * this.rowMm;
    return { sx, sy, perMm, ox: (cw - columns * sx) / 2 + this.panX * dpr, oy: (ch - rows * sy) / 2 + this.panY * dpr };
  }

  /**
   * HU shown at a pixel of the current image: its own, or in MIP mode the slab's maximum.
   * @param {number} r @param {number} c
   */
  huAt(r, c) {
    const at = (/** @type {number} */ k) => this.pixels[(k * this.shape.rows + r) * this.shape.columns + c];
    if (!this.mip) return at(this.k);
    return Math.max(...slabImages(this.series, this.k, this.slabMm).map(at));
  }

  // -- rendering ------------------------------------------------------------------------------
  render() {
    this.frame = 0;
    const t0 = performance.now();
    if (this.stale) this.fill();
    this.paint();
    recordRender(performance.now() - t0);
  }

  fill() {
    const size = this.shape.rows * this.shape.columns;
    let base = this.k * size;
    let px = this.pixels;
    const out = this.out;
    if (!this.hasImage(this.k)) { // drawn when it arrives
      out.fill(0xff000000);
      this.offCtx.putImageData(this.image, 0, 0);
      this.stale = false;
      return;
    }
    if (this.mip) { // the slab's maxima, recomputed only when the slab moves (not for W/L)
      const images = slabImages(this.series, this.k, this.slabMm).filter((k) => this.hasImage(k));
      const key = images.join(" ");
      if (key !== this.mipKey) stackMax(this.pixels, size, images, this.mipHu);
      this.mipKey = key;
      this.el.dataset.mipImages = String(images.length);
      px = this.mipHu;
      base = 0;
    }
    const grey = this.grey;
    for (let i = 0; i < size; i++) {
      const g = grey[px[base + i] + 32768];
      out[i] = (255 << 24) | (g << 16) | (g << 8) | g;
    }
    this.offCtx.putImageData(this.image, 0, 0);
    this.stale = false;
  }

  paint() {
    const canvas = this.canvas;
    const dpr = devicePixelRatio || 1;
    const cw = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const ch = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== cw || canvas.height !== ch) {
      canvas.width = cw;
      canvas.height = ch;
    }
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, cw, ch);
    const { rows, columns, n } = this.shape;
    const { sx, sy, perMm, ox, oy } = this.transform();
    ctx.imageSmoothingEnabled = Math.min(sx, sy) < 3;
    ctx.drawImage(this.off, ox, oy, columns * sx, rows * sy);
    const X = (/** @type {number} */ c) => ox + (c + 0.5) * sx;
    const Y = (/** @type {number} */ r) => oy + (r + 0.5) * sy;
    delete this.el.dataset.selectedAt;
    if (this.overlays.nodules) paintStackMarkers(this, ctx, X, Y, perMm, dpr);
    const screen = (/** @type {number[]} */ l) => [ox + l[0] * sx, oy + l[1] * sy, ox + l[2] * sx, oy + l[3] * sy];
    const draft = this.draft ? { line: this.draft, mm: lineMm(this.draft, this.colMm, this.rowMm) } : null;
    paintCalipers(ctx, this.measure, draft, this.measure?.index === this.k, screen, dpr);
    this.el.dataset.orientation = drawOrientation(ctx, this.letters, cw, ch, dpr).join(" ");
    const bar = drawScaleBar(ctx, cw, ch, perMm, dpr);
    // the scale bar in CSS px of the pane: its length and mm, left end and middle row (tests)
    Object.assign(this.el.dataset, { scaleMm: String(bar.mm), scalePx: (bar.px / dpr).toFixed(2),
      scaleAt: `${(bar.x / dpr).toFixed(1)} ${(bar.y / dpr).toFixed(1)}` });
    const image = this.series.images[this.k];
    const number = image.instance_number ?? "—";
    Object.assign(this.el.dataset, { image: String(image.instance_number ?? ""), index: String(this.k + 1),
      sopInstanceUid: image.sop_instance_uid });
    if (this.mip) this.el.dataset.mip = String(this.slabMm);
    else {
      delete this.el.dataset.mip;
      delete this.el.dataset.mipImages;
    }
    const mip = this.mip ? `  MIP ${this.slabMm} mm` : "";
    const loading = this.loadError ? `  Some images could not be loaded: ${this.loadError}`
      : this.loader && !this.loader.complete ? `  Loading images: ${this.loader.count} of ${n}${this.hasImage(this.k) ? "" : ", not this one yet"}` : "";
    this.label.textContent = `Image ${number} (${this.k + 1} of ${n})${mip}  W ${this.window.width} L ${this.window.level}` +
      (this.cineTimer ? "  Cine" : "") + (this.outlinesError ? `  Outlines unavailable: ${this.outlinesError}` : "") + loading;
  }
}
