// @ts-check
/**
 * The original-series reading mode: one pane showing the native images of the analysed DICOM
 * series, an int16 HU stack `(n, rows, columns)` in InstanceNumber order (as PACS shows it),
 * drawn with the native pixel aspect (PixelSpacing). Wheel and arrow keys step through the
 * images; window/level presets and drag, zoom and pan work as in the three-plane viewer;
 * findings are drawn where their centre (LPS mm) falls on the native images.
 *
 * It offers the methods of `SliceViewer` that the case view calls; the reading tools that need
 * the 1 mm grid (slab MIP, calipers, lung tint, crosshair) are no-ops here.
 */
import { drawScaleBar } from "./annotations.js";
import { depthMm, imageGapMm, imageToWorld, indexOfInstance, pointOnImage, worldToImage } from "./original.js";
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
   *   onProbe?: (probe: any) => void}} options `shape` is (n, rows, columns)
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
    const [rowMm, colMm] = this.series.pixel_spacing;
    this.rowMm = rowMm;
    this.colMm = colMm;
    this.gapMm = imageGapMm(this.series);
    this.k = Math.floor(n / 2);
    this.overlays = { nodules: true };
    this.mip = false; // the slab MIP needs the 1 mm grid
    this.slabMm = 10;
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
      "drag: window/level or pan; + and -: zoom; 0: reset; L and M: lung and mediastinum window; C: cine.");
    this.label = document.createElement("div");
    this.label.className = "pane-label";
    this.el.append(this.canvas, this.label);
    host.classList.add("single");
    host.append(this.el);
    this.off = document.createElement("canvas");
    this.off.width = columns;
    this.off.height = rows;
    this.offCtx = /** @type {CanvasRenderingContext2D} */ (this.off.getContext("2d"));
    this.image = this.offCtx.createImageData(columns, rows);
    this.out = new Uint32Array(this.image.data.buffer);
    this.stale = true;
    this.frame = 0;
    this.cineTimer = 0;
    this.bindEvents();
    this.resizer = new ResizeObserver(() => this.invalidate(false));
    this.resizer.observe(this.canvas);
    this.invalidate(true);
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
  }

  setMip() { /* not in the original series: the 1 mm reconstruction has the slab MIP */ }

  clearMeasurements() { /* calipers are drawn on the 1 mm reconstruction */ }

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
    let k = indexOfInstance(this.series, finding.instance_number);
    if (k < 0 || this.series.images[k].frame_number != null) k = at.k;
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
    const base = this.k * size;
    const grey = this.grey;
    const out = this.out;
    const px = this.pixels;
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
    if (this.overlays.nodules) this.paintMarkers(ctx, X, Y, perMm, dpr);
    drawScaleBar(ctx, cw, ch, perMm, dpr);
    const image = this.series.images[this.k];
    const number = image.instance_number ?? "—";
    Object.assign(this.el.dataset, { image: String(image.instance_number ?? ""), index: String(this.k + 1),
      sopInstanceUid: image.sop_instance_uid });
    this.label.textContent = `Image ${number} (${this.k + 1} of ${n})  W ${this.window.width} L ${this.window.level}` +
      (this.cineTimer ? "  Cine" : "");
  }

  /**
   * Each marker on the images its sphere crosses, sized by the cross-section there.
   * @param {CanvasRenderingContext2D} ctx @param {(c: number) => number} X @param {(r: number) => number} Y
   * @param {number} perMm @param {number} dpr
   */
  paintMarkers(ctx, X, Y, perMm, dpr) {
    ctx.font = `${12 * dpr}px system-ui, sans-serif`;
    for (const m of this.markers) {
      if (!m.center_mm) continue;
      const radiusMm = (m.diameter_mm || 6) / 2;
      const depth = depthMm(this.series, this.k, m.center_mm);
      if (Math.abs(depth) > radiusMm + this.gapMm / 2) continue; // its sphere misses this image
      const selected = m.id === this.selected;
      const { column: c, row: r } = pointOnImage(this.series, this.k, m.center_mm);
      const inPlane = Math.sqrt(Math.max(0, radiusMm ** 2 - depth ** 2)) || radiusMm / 3;
      const rPix = Math.max(4 * dpr, inPlane * perMm);
      // where the selected marker is drawn, in CSS pixels of the pane (read by the tests)
      if (selected) this.el.dataset.selectedAt = `${(X(c) / dpr).toFixed(1)} ${(Y(r) / dpr).toFixed(1)}`;
      ctx.lineWidth = (selected ? 2.5 : 1.5) * dpr;
      ctx.strokeStyle = m.kind === "added" ? "#ffd400" : m.verdict === "reject" ? "#888" : selected ? "#ff3b3b" : "#ff8c1a";
      ctx.beginPath();
      if (m.kind === "added") ctx.rect(X(c) - rPix, Y(r) - rPix, 2 * rPix, 2 * rPix);
      else ctx.ellipse(X(c), Y(r), rPix, rPix, 0, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(m.id, X(c) + rPix + 3 * dpr, Y(r) - rPix);
    }
  }

  // -- input ----------------------------------------------------------------------------------
  bindEvents() {
    const canvas = this.canvas;
    this.el.addEventListener("wheel", (e) => {
      e.preventDefault();
      if (e.ctrlKey || e.metaKey) this.zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15);
      else {
        this.stopCine();
        this.setImage(this.k + (e.deltaY > 0 ? 1 : -1));
      }
    }, { passive: false });
    canvas.addEventListener("keydown", (e) => {
      const keys = /** @type {Record<string, () => void>} */ ({
        ArrowDown: () => this.setImage(this.k + 1), ArrowUp: () => this.setImage(this.k - 1),
        ArrowRight: () => this.setImage(this.k + 1), ArrowLeft: () => this.setImage(this.k - 1),
        PageDown: () => this.setImage(this.k + 10), PageUp: () => this.setImage(this.k - 10),
        Home: () => this.setImage(0), End: () => this.setImage(this.shape.n - 1),
        "+": () => this.zoomBy(1.25), "=": () => this.zoomBy(1.25), "-": () => this.zoomBy(0.8),
        "0": () => this.resetView(), l: () => this.setPreset("lung"), m: () => this.setPreset("mediastinum"),
        c: () => this.toggleCine(),
      });
      const action = keys[e.key];
      if (action && !e.altKey && !e.ctrlKey) {
        e.preventDefault();
        if (e.key !== "c") this.stopCine();
        action();
      }
    });
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    /** Image pixel (column, row) under a pointer event, fractional. @param {MouseEvent} e */
    const imageAt = (e) => {
      const rect = canvas.getBoundingClientRect();
      const { sx, sy, ox, oy } = this.transform();
      const dpr = devicePixelRatio || 1;
      return { u: ((e.clientX - rect.left) * dpr - ox) / sx, v: ((e.clientY - rect.top) * dpr - oy) / sy };
    };
    let drag = /** @type {null | {x: number, y: number, moved: boolean, button: number, w: number, l: number}} */ (null);
    canvas.addEventListener("pointerdown", (e) => {
      canvas.focus();
      canvas.setPointerCapture(e.pointerId);
      drag = { x: e.clientX, y: e.clientY, moved: false, button: e.button, w: this.window.width, l: this.window.level };
    });
    canvas.addEventListener("pointermove", (e) => {
      const { u, v } = imageAt(e);
      const c = Math.floor(u);
      const r = Math.floor(v);
      const inside = c >= 0 && r >= 0 && c < this.shape.columns && r < this.shape.rows;
      this.onProbe(inside ? { plane: "original", zyx: [this.k + 1, r, c], image: this.series.images[this.k].instance_number,
        hu: this.pixels[(this.k * this.shape.rows + r) * this.shape.columns + c], mipMm: 0 } : null);
      if (!drag) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 3) return;
      drag.moved = true;
      if (this.tool === "pan" || drag.button === 1 || drag.button === 2 || e.shiftKey) {
        this.panX += e.movementX;
        this.panY += e.movementY;
        this.invalidate(false);
      } else if (this.tool === "window") {
        this.setWindow(drag.w + dx * 4, drag.l + dy * 2);
      }
    });
    canvas.addEventListener("pointerleave", () => { if (!drag) this.onProbe(null); });
    canvas.addEventListener("pointercancel", () => { drag = null; });
    canvas.addEventListener("pointerup", (e) => {
      const click = drag && !drag.moved && drag.button === 0;
      drag = null;
      if (!click || this.tool !== "add") return;
      const { u, v } = imageAt(e);
      if (u < 0 || v < 0 || u >= this.shape.columns || v >= this.shape.rows) return;
      this.onPick(imageToWorld(this.series, this.k, u - 0.5, v - 0.5));
    });
  }
}
