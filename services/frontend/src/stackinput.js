// @ts-check
/**
 * Pointer and keyboard input of the original-series viewer (`stack.js`): wheel and arrow keys
 * step through the images, Ctrl+wheel and +/- zoom, drag adjusts window/level or pans (Pan tool,
 * middle or right button, Shift), draws a caliper with the measuring tools, and a click with
 * "Add missed nodule" picks a point; the HU probe follows the pointer.
 */
import { imageToWorld } from "./original.js";

/** @param {import("./stack.js").StackViewer} viewer */
export function bindStackInput(viewer) {
  const canvas = viewer.canvas;
  viewer.el.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey || e.metaKey) viewer.zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15);
    else {
      viewer.stopCine();
      viewer.setImage(viewer.k + (e.deltaY > 0 ? 1 : -1));
    }
  }, { passive: false });
  canvas.addEventListener("keydown", (e) => {
    const keys = /** @type {Record<string, () => void>} */ ({
      ArrowDown: () => viewer.setImage(viewer.k + 1), ArrowUp: () => viewer.setImage(viewer.k - 1),
      ArrowRight: () => viewer.setImage(viewer.k + 1), ArrowLeft: () => viewer.setImage(viewer.k - 1),
      PageDown: () => viewer.setImage(viewer.k + 10), PageUp: () => viewer.setImage(viewer.k - 10),
      Home: () => viewer.setImage(0), End: () => viewer.setImage(viewer.shape.n - 1),
      "+": () => viewer.zoomBy(1.25), "=": () => viewer.zoomBy(1.25), "-": () => viewer.zoomBy(0.8),
      "0": () => viewer.resetView(), l: () => viewer.setPreset("lung"), m: () => viewer.setPreset("mediastinum"),
      c: () => viewer.toggleCine(), p: () => viewer.setMip(!viewer.mip),
    });
    const action = keys[e.key];
    if (action && !e.altKey && !e.ctrlKey) {
      e.preventDefault();
      if (e.key !== "c") viewer.stopCine();
      action();
    }
  });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  /** Image pixel (column, row) under a pointer event, fractional. @param {MouseEvent} e */
  const imageAt = (e) => {
    const rect = canvas.getBoundingClientRect();
    const { sx, sy, ox, oy } = viewer.transform();
    const dpr = devicePixelRatio || 1;
    return { u: ((e.clientX - rect.left) * dpr - ox) / sx, v: ((e.clientY - rect.top) * dpr - oy) / sy };
  };
  let drag = /** @type {null | {x: number, y: number, moved: boolean, button: number, w: number, l: number}} */ (null);
  canvas.addEventListener("pointerdown", (e) => {
    canvas.focus({ preventScroll: true }); // scrolling now would move the image under the pointer
    canvas.setPointerCapture(e.pointerId);
    drag = { x: e.clientX, y: e.clientY, moved: false, button: e.button, w: viewer.window.width, l: viewer.window.level };
    if ((viewer.tool === "measure" || viewer.tool === "bidirectional") && e.button === 0 && !e.shiftKey) {
      const { u, v } = imageAt(e);
      viewer.draft = [u, v, u, v];
    }
  });
  canvas.addEventListener("pointermove", (e) => {
    const { u, v } = imageAt(e);
    const c = Math.floor(u);
    const r = Math.floor(v);
    const inside = c >= 0 && r >= 0 && c < viewer.shape.columns && r < viewer.shape.rows && viewer.hasImage(viewer.k);
    viewer.onProbe(inside ? { plane: "original", zyx: [viewer.k + 1, r, c], image: viewer.series.images[viewer.k].instance_number,
      hu: viewer.huAt(r, c), mipMm: viewer.mip ? viewer.slabMm : 0 } : null);
    if (!drag) return;
    if (viewer.draft) {
      viewer.draft[2] = u;
      viewer.draft[3] = v;
      viewer.invalidate(false);
    }
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 3) return;
    drag.moved = true;
    if (viewer.draft) return;
    if (viewer.tool === "pan" || drag.button === 1 || drag.button === 2 || e.shiftKey) {
      viewer.panX += e.movementX;
      viewer.panY += e.movementY;
      viewer.invalidate(false);
    } else if (viewer.tool === "window") {
      viewer.setWindow(drag.w + dx * 4, drag.l + dy * 2);
    }
  });
  canvas.addEventListener("pointerleave", () => { if (!drag) viewer.onProbe(null); });
  canvas.addEventListener("pointercancel", () => {
    drag = null;
    viewer.draft = null;
    viewer.invalidate(false);
  });
  canvas.addEventListener("pointerup", (e) => {
    const click = drag && !drag.moved && drag.button === 0;
    const moved = !!drag?.moved;
    drag = null;
    const line = viewer.draft;
    if (line) {
      viewer.draft = null;
      viewer.invalidate(false);
      if (moved) {
        const { u, v } = imageAt(e);
        viewer.commitMeasure([line[0], line[1], u, v]);
        return;
      }
    }
    if (!click || viewer.tool !== "add") return;
    const { u, v } = imageAt(e);
    if (u < 0 || v < 0 || u >= viewer.shape.columns || v >= viewer.shape.rows) return;
    viewer.onPick(imageToWorld(viewer.series, viewer.k, u - 0.5, v - 0.5));
  });
}
