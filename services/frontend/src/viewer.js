// @ts-check
/**
 * A three-plane slice viewer for an int16 HU volume `(z, y, x)` on an isotropic LPS grid
 * (x: patient right -> left, y: anterior -> posterior, z: inferior -> superior).
 *
 * Axial shows rows y and columns x (radiological convention: patient right on the left);
 * coronal rows z (superior up) and columns x; sagittal rows z and columns y (anterior left).
 * Slices are cut client-side from the whole volume; a frame recomputes only the panes whose
 * slice (or MIP slab) changed, through a 64k-entry HU -> grey lookup table, and paints at most
 * once per animation frame. Reading tools: slab MIP, orientation markers, a scale bar, an HU
 * probe and calipers (length, or long x short axis), all from the grid spacing. Each finding is
 * drawn as the contour of its DICOM SEG mask on the grid (`outlines.js`) on every pane its mask
 * crosses, or, when it has none, as a circle sized from its long axis (`markers.js`).
 */
import { ORIENTATION, drawOrientation, drawScaleBar } from "./annotations.js";
import { paintGridMarkers } from "./markers.js";
import { lineMm, measureText, nextMeasure, paintCalipers } from "./measure.js";
import { GridOutlines } from "./outlines.js";
import { slabMax, slabRange } from "./slab.js";
import { PRESETS, Windowed, recordRender } from "./windowing.js";

export { PRESETS };

const PLANES = /** @type {const} */ (["axial", "coronal", "sagittal"]);
/** @typedef {typeof PLANES[number]} Plane */
/** @typedef {{z: number, y: number, x: number}} Pos */
/**
 * @typedef {{id: string, index_zyx: number[], radius_vox: number[], label?: string,
 *   kind?: "finding" | "added", verdict?: string}} Marker
 */
/** @typedef {"window" | "pan" | "add" | "measure" | "bidirectional"} Tool */
/** @typedef {import("./measure.js").Measure} Measure */
/** @typedef {{plane: Plane, zyx: number[], hu: number, mipMm: number}} Probe */
/**
 * A kept caliper as the case view lists it: its pane, slice (1-based) of count, and text; from
 * the original series also the image it was drawn on (InstanceNumber, SOP Instance UID, frame)
 * and its end points in patient coordinates (LPS mm), long axis then short axis.
 * @typedef {{plane: Plane | "original", name: string, slice: number, count: number, text: string,
 *   image?: number | null, sopInstanceUid?: string, frameNumber?: number | null,
 *   lps?: {long: number[][], short: number[][] | null}}} MeasureEntry
 */

/** The volume axis across each plane's slices, as an index into (z, y, x). */
const DEPTH_AXIS = { axial: 0, coronal: 1, sagittal: 2 };

const LUNG_TINT = [
  [0, 0, 0, 0],
  [64, 160, 255, 0.28], // 1 right lung
  [255, 150, 60, 0.28], // 2 left lung
];


export class SliceViewer extends Windowed {
  /**
   * @param {HTMLElement} host
   * @param {{volume: Int16Array, shape: number[], spacing?: number[], mask?: Uint8Array | null,
   *   onChange?: (v: SliceViewer) => void, onPick?: (index: number[]) => void,
   *   onWindow?: (v: SliceViewer) => void, onMip?: (v: SliceViewer) => void,
   *   onProbe?: (probe: Probe | null) => void,
   *   onMeasure?: (entries: MeasureEntry[]) => void,
   *   outlines?: import("./outlines.js").GridOutlinesAnswer | null, outlinesError?: string | null}} options
   *   `shape` and `spacing` (mm) are (z, y, x); spacing defaults to 1 mm; `outlines`: the
   *   findings' masks on the grid (null: circles only), `outlinesError`: why they could not be
   *   loaded (said in the panes' labels)
   */
  constructor(host, options) {
    super(options.onWindow);
    this.host = host;
    this.volume = options.volume;
    this.mask = options.mask || null;
    const [nz, ny, nx] = options.shape;
    this.shape = { nz, ny, nx };
    this.onChange = options.onChange || (() => {});
    this.onPick = options.onPick || (() => {});
    this.onMip = options.onMip || (() => {});
    this.onProbe = options.onProbe || (() => {});
    this.onMeasure = options.onMeasure || (() => {});
    const [sz, sy, sx] = options.spacing || [1, 1, 1];
    this.spacing = { z: sz, y: sy, x: sx };
    this.mip = false;
    this.slabMm = 10;
    /** where the pointer is over a pane's image, for the HU probe @type {null | {p: any, c: number, r: number}} */
    this.probeAt = null;
    /** @type {Pos} */
    this.pos = { z: Math.floor(nz / 2), y: Math.floor(ny / 2), x: Math.floor(nx / 2) };
    this.overlays = { mask: false, nodules: true, crosshair: true }; // the lung tint is opt-in
    /** @type {Tool} */
    this.tool = "window";
    /** @type {Marker[]} */
    this.markers = [];
    /** @type {string | null} */
    this.selected = null;
    this.outlines = new GridOutlines(options.outlines || null, options.shape);
    this.outlinesError = options.outlinesError || null;
    this.tints = LUNG_TINT.map(([r, g, b, a]) => {
      const table = new Uint32Array(256);
      for (let v = 0; v < 256; v++) {
        const mix = (/** @type {number} */ c) => Math.round(v * (1 - a) + c * a);
        table[v] = a ? (255 << 24) | (mix(b) << 16) | (mix(g) << 8) | mix(r) : (255 << 24) | (v << 16) | (v << 8) | v;
      }
      return table;
    });
    this.panes = PLANES.map((plane) => this.makePane(plane));
    this.frame = 0;
    this.resizer = new ResizeObserver(() => this.invalidate(true));
    for (const p of this.panes) this.resizer.observe(p.canvas);
    this.invalidate(true);
  }

  /** @param {Plane} plane */
  makePane(plane) {
    const { nz, ny, nx } = this.shape;
    const [w, h] = plane === "axial" ? [nx, ny] : plane === "coronal" ? [nx, nz] : [ny, nz];
    const names = { axial: "Axial", coronal: "Coronal", sagittal: "Sagittal" };
    const canvas = document.createElement("canvas");
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${names[plane]} slice. Mouse wheel or arrow keys: change slice; ` +
      "drag: window/level, pan or measure; + and -: zoom; 0: reset; L and M: lung and mediastinum window; " +
      "P: slab maximum intensity projection.");
    const label = document.createElement("div");
    label.className = "pane-label";
    const el = document.createElement("div");
    el.className = `pane pane-${plane}`;
    el.dataset.plane = plane;
    el.append(canvas, label);
    this.host.append(el);
    const off = document.createElement("canvas");
    off.width = w;
    off.height = h;
    const offCtx = /** @type {CanvasRenderingContext2D} */ (off.getContext("2d"));
    const image = offCtx.createImageData(w, h);
    const sp = this.spacing;
    // mm per pane pixel along its columns and rows, and between its slices
    const [colMm, rowMm, depthMm] = plane === "axial" ? [sp.x, sp.y, sp.z] : plane === "coronal" ? [sp.x, sp.z, sp.y] : [sp.y, sp.z, sp.x];
    const pane = { plane, name: names[plane], el, canvas, label, off, offCtx, image, pixels: new Uint32Array(image.data.buffer),
      w, h, zoom: 1, panX: 0, panY: 0, stale: true, dirty: true, colMm, rowMm, depthMm,
      mipHu: new Int16Array(w * h), mipKey: "", /** @type {Measure | null} */ measure: null,
      /** @type {number[] | null} */ draft: null };
    this.bindEvents(pane);
    return pane;
  }

  // -- state ----------------------------------------------------------------------------------
  /** @param {"mask" | "nodules" | "crosshair"} name @param {boolean} on */
  setOverlay(name, on) {
    this.overlays[name] = on;
    this.invalidate(name === "mask");
  }

  /** @param {Tool} tool */
  setTool(tool) {
    this.tool = tool;
    for (const p of this.panes) {
      p.el.classList.toggle("adding", tool === "add");
      p.el.classList.toggle("measuring", tool === "measure" || tool === "bidirectional");
    }
  }

  /**
   * Slab MIP on or off, and its thickness: each pane shows the maximum HU over `mm` centred on
   * its slice. @param {boolean} on @param {number} [mm]
   */
  setMip(on, mm = this.slabMm) {
    this.mip = on;
    this.slabMm = mm;
    this.invalidate(true);
    this.onMip(this);
  }

  /** The slab `[lo, hi]` of a pane along its axis. @param {any} p */
  slabOf(p) {
    const axis = DEPTH_AXIS[/** @type {Plane} */ (p.plane)];
    const { nz, ny, nx } = this.shape;
    const index = [this.pos.z, this.pos.y, this.pos.x][axis];
    return slabRange(index, [nz, ny, nx][axis], this.slabMm, p.depthMm);
  }

  /** The pane's slice index along its axis. @param {any} p */
  depthOf(p) {
    return [this.pos.z, this.pos.y, this.pos.x][DEPTH_AXIS[/** @type {Plane} */ (p.plane)]];
  }

  /** @param {Marker[]} markers */
  setMarkers(markers) {
    this.markers = markers;
    this.invalidate(false);
  }

  /** @param {Partial<Pos>} pos */
  setPosition(pos) {
    const { nz, ny, nx } = this.shape;
    const clamp = (/** @type {number} */ v, /** @type {number} */ n) => Math.max(0, Math.min(n - 1, Math.round(v)));
    const next = { z: clamp(pos.z ?? this.pos.z, nz), y: clamp(pos.y ?? this.pos.y, ny), x: clamp(pos.x ?? this.pos.x, nx) };
    const changed = { axial: next.z !== this.pos.z, coronal: next.y !== this.pos.y, sagittal: next.x !== this.pos.x };
    this.pos = next;
    for (const p of this.panes) {
      if (changed[p.plane]) p.stale = true;
      p.dirty = true;
    }
    this.schedule();
  }

  /**
   * Move every plane to a point of the grid and select a marker; a zoomed pane pans so that
   * the point is in its middle (unzoomed, the whole slice is in view and stays centred).
   * @param {number[]} zyx @param {string | null} [id]
   */
  jumpTo(zyx, id = null) {
    this.selected = id;
    this.setPosition({ z: zyx[0], y: zyx[1], x: zyx[2] });
    const dpr = devicePixelRatio || 1;
    for (const p of this.panes) {
      p.panX = p.panY = 0;
      if (p.zoom <= 1) continue;
      const { c, r } = this.pixelOf(p, zyx);
      const { s } = this.transform(p);
      p.panX = ((p.w / 2 - c - 0.5) * s) / dpr;
      p.panY = ((p.h / 2 - r - 0.5) * s) / dpr;
    }
  }

  /** @param {Plane} plane @param {number} step */
  scroll(plane, step) {
    const axis = plane === "axial" ? "z" : plane === "coronal" ? "y" : "x";
    // Screen-down is inferior on axial and posterior/left on the others: move the index so that
    // the wheel "down" walks caudally through axial slices.
    const sign = plane === "axial" ? -1 : 1;
    this.setPosition({ [axis]: this.pos[axis] + sign * step });
  }

  /** @param {number} factor @param {Plane} [plane] */
  zoomBy(factor, plane) {
    for (const p of this.panes) {
      if (plane && p.plane !== plane) continue;
      p.zoom = Math.max(0.5, Math.min(16, p.zoom * factor));
      p.dirty = true;
    }
    this.schedule();
  }

  resetView() {
    for (const p of this.panes) {
      p.zoom = 1;
      p.panX = p.panY = 0;
    }
    this.window = { ...PRESETS.lung };
    this.windowChanged();
  }

  /** @param {boolean} pixels recompute slice pixels too */
  invalidate(pixels) {
    for (const p of this.panes) {
      p.dirty = true;
      if (pixels) p.stale = true;
    }
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resizer.disconnect();
    this.host.replaceChildren();
  }

  /** 1-based slice number and count of a pane. @param {Plane} plane @param {number} [index] */
  sliceOf(plane, index) {
    const { nz, ny, nx } = this.shape;
    if (plane === "axial") return [nz - (index ?? this.pos.z), nz]; // cranial first, as PACS number them
    if (plane === "coronal") return [(index ?? this.pos.y) + 1, ny];
    return [(index ?? this.pos.x) + 1, nx];
  }

  // -- reading tools --------------------------------------------------------------------------
  /**
   * Keep a drawn caliper: a new length, or with the bidirectional tool the short axis of the
   * pane's long axis on this slice. @param {any} p @param {number[]} line pane pixel units
   */
  commitMeasure(p, line) {
    p.measure = nextMeasure(p.measure, line, lineMm(line, p.colMm, p.rowMm), this.depthOf(p), this.tool === "bidirectional",
      p.colMm, p.rowMm);
    this.measureChanged();
  }

  clearMeasurements() {
    for (const p of this.panes) p.measure = null;
    this.measureChanged();
  }

  measureChanged() {
    for (const p of this.panes) {
      const m = /** @type {Measure | null} */ (p.measure);
      if (m) p.el.dataset.measureMm = m.longMm.toFixed(1);
      else delete p.el.dataset.measureMm;
      if (m?.shortMm != null) p.el.dataset.measureShortMm = m.shortMm.toFixed(1);
      else delete p.el.dataset.measureShortMm;
    }
    this.invalidate(false);
    this.onMeasure(this.measurements());
  }

  /** The kept calipers, one per pane at most. @returns {MeasureEntry[]} */
  measurements() {
    return this.panes.filter((p) => p.measure).map((p) => {
      const m = /** @type {Measure} */ (p.measure);
      const [slice, count] = this.sliceOf(p.plane, m.index);
      return { plane: p.plane, name: p.name, slice, count, text: measureText(m.longMm, m.shortMm) };
    });
  }

  /**
   * HU shown at a voxel of a pane: the voxel's, or in MIP mode the slab's maximum through it.
   * @param {any} p @param {number[]} zyx
   */
  huAt(p, zyx) {
    const { ny, nx } = this.shape;
    const at = (/** @type {number[]} */ v) => this.volume[(v[0] * ny + v[1]) * nx + v[2]];
    if (!this.mip) return at(zyx);
    const axis = DEPTH_AXIS[/** @type {Plane} */ (p.plane)];
    const [lo, hi] = this.slabOf(p);
    const v = [...zyx];
    let max = -32768;
    for (let i = lo; i <= hi; i++) {
      v[axis] = i;
      max = Math.max(max, at(v));
    }
    return max;
  }

  reportProbe() {
    const at = this.probeAt;
    if (!at) {
      this.onProbe(null);
      return;
    }
    const zyx = this.voxelAt(at.p, at.c, at.r);
    this.onProbe({ plane: at.p.plane, zyx, hu: this.huAt(at.p, zyx), mipMm: this.mip ? this.slabMm : 0 });
  }

  // -- geometry -------------------------------------------------------------------------------
  /** Voxel (z, y, x) of pane pixel (c, r). @param {any} p @param {number} c @param {number} r */
  voxelAt(p, c, r) {
    const { nz } = this.shape;
    if (p.plane === "axial") return [this.pos.z, r, c];
    if (p.plane === "coronal") return [nz - 1 - r, this.pos.y, c];
    return [nz - 1 - r, c, this.pos.x];
  }

  /** Pane pixel (c, r) and depth along the slice axis of a voxel. @param {any} p @param {number[]} zyx */
  pixelOf(p, zyx) {
    const { nz } = this.shape;
    const [z, y, x] = zyx;
    if (p.plane === "axial") return { c: x, r: y, depth: z - this.pos.z };
    if (p.plane === "coronal") return { c: x, r: nz - 1 - z, depth: y - this.pos.y };
    return { c: y, r: nz - 1 - z, depth: x - this.pos.x };
  }

  /** Canvas-pixel transform of a pane. @param {any} p */
  transform(p) {
    const cw = p.canvas.width;
    const ch = p.canvas.height;
    const s = Math.min(cw / p.w, ch / p.h) * p.zoom;
    return { s, ox: (cw - p.w * s) / 2 + p.panX * devicePixelRatio, oy: (ch - p.h * s) / 2 + p.panY * devicePixelRatio };
  }

  // -- rendering ------------------------------------------------------------------------------
  render() {
    this.frame = 0;
    const t0 = performance.now();
    for (const p of this.panes) {
      if (!p.dirty) continue;
      if (p.stale) this.fill(p);
      this.paint(p);
      p.dirty = false;
    }
    const ms = performance.now() - t0;
    recordRender(ms);
    if (this.probeAt) this.reportProbe(); // the slice under a still pointer may have changed
    this.onChange(this);
  }

  /** Cut the pane's slice into its ImageData. @param {any} p */
  fill(p) {
    const { nz, ny, nx } = this.shape;
    const vol = this.volume;
    const mask = this.overlays.mask ? this.mask : null;
    const out = p.pixels;
    const grey = this.grey;
    const tints = this.tints;
    const plain = tints[0];
    const sliceStride = ny * nx;
    /** @type {Int16Array | null} */
    let mip = null;
    if (this.mip) { // the slab's maxima, recomputed only when the slab moves (not for W/L)
      const [lo, hi] = this.slabOf(p);
      const key = `${lo} ${hi}`;
      if (p.mipKey !== key) slabMax(vol, this.shape, p.plane, lo, hi, p.mipHu);
      p.mipKey = key;
      mip = p.mipHu;
    }
    let i = 0;
    if (p.plane === "axial") {
      const base = this.pos.z * sliceStride;
      for (let k = 0; k < sliceStride; k++) {
        const g = grey[(mip ? mip[k] : vol[base + k]) + 32768];
        out[i++] = mask && mask[base + k] ? tints[mask[base + k]][g] : plain[g];
      }
    } else if (p.plane === "coronal") {
      const yOff = this.pos.y * nx;
      for (let r = 0; r < nz; r++) {
        const base = (nz - 1 - r) * sliceStride + yOff;
        for (let x = 0; x < nx; x++) {
          const k = base + x;
          const g = grey[(mip ? mip[i] : vol[k]) + 32768];
          out[i++] = mask && mask[k] ? tints[mask[k]][g] : plain[g];
        }
      }
    } else {
      const xOff = this.pos.x;
      for (let r = 0; r < nz; r++) {
        const base = (nz - 1 - r) * sliceStride + xOff;
        for (let y = 0; y < ny; y++) {
          const k = base + y * nx;
          const g = grey[(mip ? mip[i] : vol[k]) + 32768];
          out[i++] = mask && mask[k] ? tints[mask[k]][g] : plain[g];
        }
      }
    }
    p.offCtx.putImageData(p.image, 0, 0);
    p.stale = false;
  }

  /** Blit the slice with zoom/pan and draw the overlays. @param {any} p */
  paint(p) {
    const canvas = p.canvas;
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
    const { s, ox, oy } = this.transform(p);
    ctx.imageSmoothingEnabled = s < 3;
    ctx.drawImage(p.off, ox, oy, p.w * s, p.h * s);
    const X = (/** @type {number} */ c) => ox + (c + 0.5) * s;
    const Y = (/** @type {number} */ r) => oy + (r + 0.5) * s;
    if (this.overlays.crosshair) {
      const here = this.pixelOf(p, [this.pos.z, this.pos.y, this.pos.x]);
      ctx.strokeStyle = "rgba(120, 220, 120, 0.45)";
      ctx.lineWidth = dpr;
      ctx.beginPath();
      ctx.moveTo(X(here.c), oy);
      ctx.lineTo(X(here.c), oy + p.h * s);
      ctx.moveTo(ox, Y(here.r));
      ctx.lineTo(ox + p.w * s, Y(here.r));
      ctx.stroke();
    }
    delete p.el.dataset.selectedAt;
    if (this.overlays.nodules) paintGridMarkers(this, p, ctx, X, Y, s, dpr);
    const screen = (/** @type {number[]} */ l) => [ox + l[0] * s, oy + l[1] * s, ox + l[2] * s, oy + l[3] * s];
    const draft = p.draft ? { line: p.draft, mm: lineMm(p.draft, p.colMm, p.rowMm) } : null;
    paintCalipers(ctx, p.measure, draft, p.measure?.index === this.depthOf(p), screen, dpr);
    p.el.dataset.orientation = drawOrientation(ctx, ORIENTATION[/** @type {Plane} */ (p.plane)], cw, ch, dpr).join(" ");
    const bar = drawScaleBar(ctx, cw, ch, s / p.colMm, dpr);
    // the scale bar in CSS px of the pane: its length and mm, left end and middle row (tests)
    Object.assign(p.el.dataset, { scaleMm: String(bar.mm), scalePx: (bar.px / dpr).toFixed(2),
      scaleAt: `${(bar.x / dpr).toFixed(1)} ${(bar.y / dpr).toFixed(1)}` });
    const [n, count] = this.sliceOf(p.plane);
    p.el.dataset.slice = String(n);
    if (this.mip) p.el.dataset.mip = String(this.slabMm);
    else delete p.el.dataset.mip;
    const mip = this.mip ? `  MIP ${this.slabMm} mm` : "";
    p.label.textContent = `${p.name} ${n}/${count}${mip}  W ${this.window.width} L ${this.window.level}` +
      (this.outlinesError ? `  Outlines unavailable: ${this.outlinesError}` : "");
  }

  // -- input ----------------------------------------------------------------------------------
  /** @param {any} p */
  bindEvents(p) {
    const canvas = p.canvas;
    // on the pane, not only the canvas: the label over the image must not swallow the wheel
    p.el.addEventListener("wheel", (e) => {
      e.preventDefault();
      if (e.ctrlKey || e.metaKey) this.zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15, p.plane);
      else this.scroll(p.plane, e.deltaY > 0 ? 1 : -1);
    }, { passive: false });
    canvas.addEventListener("keydown", (e) => {
      const keys = /** @type {Record<string, () => void>} */ ({
        ArrowDown: () => this.scroll(p.plane, 1), ArrowUp: () => this.scroll(p.plane, -1),
        PageDown: () => this.scroll(p.plane, 10), PageUp: () => this.scroll(p.plane, -10),
        Home: () => this.scroll(p.plane, -1e6), End: () => this.scroll(p.plane, 1e6),
        "+": () => this.zoomBy(1.25, p.plane), "=": () => this.zoomBy(1.25, p.plane),
        "-": () => this.zoomBy(0.8, p.plane), "0": () => this.resetView(),
        l: () => this.setPreset("lung"), m: () => this.setPreset("mediastinum"),
        p: () => this.setMip(!this.mip),
      });
      const action = keys[e.key];
      if (action && !e.altKey && !e.ctrlKey) {
        e.preventDefault();
        action();
      }
    });
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    /** Pane pixel units (u, v) under a pointer event. @param {MouseEvent} e */
    const imageAt = (e) => {
      const rect = canvas.getBoundingClientRect();
      const { s, ox, oy } = this.transform(p);
      return { u: ((e.clientX - rect.left) * devicePixelRatio - ox) / s, v: ((e.clientY - rect.top) * devicePixelRatio - oy) / s };
    };
    let drag = /** @type {null | {x: number, y: number, moved: boolean, button: number, w: number, l: number}} */ (null);
    canvas.addEventListener("pointerdown", (e) => {
      canvas.focus({ preventScroll: true }); // scrolling now would move the image under the pointer
      canvas.setPointerCapture(e.pointerId);
      drag = { x: e.clientX, y: e.clientY, moved: false, button: e.button, w: this.window.width, l: this.window.level };
      if ((this.tool === "measure" || this.tool === "bidirectional") && e.button === 0 && !e.shiftKey) {
        const { u, v } = imageAt(e);
        p.draft = [u, v, u, v];
      }
    });
    canvas.addEventListener("pointermove", (e) => {
      const { u, v } = imageAt(e);
      const c = Math.floor(u);
      const r = Math.floor(v);
      this.probeAt = c >= 0 && r >= 0 && c < p.w && r < p.h ? { p, c, r } : null;
      this.reportProbe();
      if (!drag) return;
      if (p.draft) {
        p.draft[2] = u;
        p.draft[3] = v;
        p.dirty = true;
        this.schedule();
      }
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 3) return;
      drag.moved = true;
      if (p.draft) return;
      const pan = this.tool === "pan" || drag.button === 1 || drag.button === 2 || e.shiftKey;
      if (pan) {
        p.panX += e.movementX;
        p.panY += e.movementY;
        p.dirty = true;
        this.schedule();
      } else if (this.tool === "window") {
        this.setWindow(drag.w + dx * 4, drag.l + dy * 2);
      }
    });
    canvas.addEventListener("pointerleave", () => {
      if (drag || this.probeAt?.p !== p) return;
      this.probeAt = null;
      this.reportProbe();
    });
    canvas.addEventListener("pointercancel", () => {
      drag = null;
      p.draft = null;
      p.dirty = true;
      this.schedule();
    });
    canvas.addEventListener("pointerup", (e) => {
      const click = drag && !drag.moved && drag.button === 0;
      const moved = !!drag?.moved;
      drag = null;
      const line = p.draft;
      if (line) {
        p.draft = null;
        p.dirty = true;
        this.schedule();
        if (moved) {
          const { u, v } = imageAt(e);
          line[2] = u;
          line[3] = v;
          this.commitMeasure(p, line);
          return;
        }
      }
      if (!click) return;
      const { u, v } = imageAt(e);
      const c = Math.floor(u);
      const r = Math.floor(v);
      if (c < 0 || r < 0 || c >= p.w || r >= p.h) return;
      const zyx = this.voxelAt(p, c, r);
      if (this.tool === "add") this.onPick(zyx);
      else this.setPosition({ z: zyx[0], y: zyx[1], x: zyx[2] });
    });
  }
}
