// @ts-check
/**
 * Window/level shared by the two viewers (the 1 mm three-plane `SliceViewer` and the
 * original-series `StackViewer`): presets, a 16-bit HU -> grey look-up table and the calls the
 * case view makes. A viewer extends `Windowed` and implements `invalidate(pixels)`.
 */

/** Per-frame timings of both viewers, read by the benchmark (bench/bench_viewer.py). */
const perf = /** @type {any} */ (window).__lungcadPerf || ((/** @type {any} */ (window)).__lungcadPerf = { renders: [] });

/** Record one frame's render time (ms). @param {number} ms */
export function recordRender(ms) {
  perf.renders.push(ms);
  if (perf.renders.length > 2000) perf.renders.splice(0, 1000);
  perf.lastRenderAt = performance.now();
}

export const PRESETS = {
  lung: { width: 1500, level: -600, label: "Lung" },
  mediastinum: { width: 350, level: 50, label: "Mediastinum" },
};

export class Windowed {
  /** @param {(v: any) => void} [onWindow] called after every window change */
  constructor(onWindow) {
    this.window = { ...PRESETS.lung };
    this.grey = new Uint8Array(65536); // grey value of HU i - 32768
    this.onWindow = onWindow || (() => {});
    this.updateLut();
  }

  updateLut() {
    const lo = this.window.level - this.window.width / 2;
    const scale = 255 / Math.max(1, this.window.width);
    for (let i = 0; i < 65536; i++) {
      const v = (i - 32768 - lo) * scale;
      this.grey[i] = v <= 0 ? 0 : v >= 255 ? 255 : v;
    }
  }

  /** @param {keyof typeof PRESETS} name */
  setPreset(name) {
    this.window = { ...PRESETS[name] };
    this.windowChanged();
  }

  /** @param {number} width @param {number} level */
  setWindow(width, level) {
    this.window = { width: Math.max(1, Math.round(width)), level: Math.round(level), label: "Custom" };
    this.windowChanged();
  }

  windowChanged() {
    this.updateLut();
    this.invalidate(true);
    this.onWindow(this);
  }

  /** Redraw (the subclass's). @param {boolean} _pixels recompute grey values too */
  invalidate(_pixels) {}
}
