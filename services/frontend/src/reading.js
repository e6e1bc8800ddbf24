// @ts-check
/**
 * The case view's reading-tool controls around the slice viewer: the slab MIP toggle and its
 * thickness, "Clear measurements", the HU probe's status line and the measurements listed as
 * text (for screen readers too).
 */
import { h, replace } from "./dom.js";
import { SLAB_MM } from "./slab.js";

const AXES = ["z", "y", "x"];

export function readingTools() {
  const mip = h("button", { type: "button", class: "mip", "aria-pressed": "false", title: "Slab maximum intensity projection (P)",
    "aria-keyshortcuts": "P", text: "MIP" });
  const slab = /** @type {HTMLSelectElement} */ (h("select", { class: "slab", "aria-label": "MIP slab thickness" },
    SLAB_MM.map((mm) => h("option", { value: String(mm), text: `${mm} mm` }))));
  slab.value = "10";
  const clear = h("button", { type: "button", class: "clear-measurements", text: "Clear measurements" });
  const probe = h("p", { class: "probe muted", role: "status", "aria-live": "off", text: "Point at the image to read HU." });
  const list = h("ul", { class: "measurements", "aria-live": "polite", "aria-label": "Measurements" });
  const group = h("span", { class: "group", role: "group", "aria-label": "Reading tools" }, mip, slab, clear);

  return {
    group, probe, list,
    /**
     * Bound once; the viewer is looked up on each use (the case view can switch viewers).
     * @param {() => {mip: boolean, setMip: (on: boolean, mm?: number) => void, clearMeasurements: () => void} | null} viewerOf
     */
    bind(viewerOf) {
      mip.addEventListener("click", () => { const v = viewerOf(); v?.setMip(!v.mip, Number(slab.value)); });
      slab.addEventListener("change", () => { const v = viewerOf(); v?.setMip(v.mip, Number(slab.value)); });
      clear.addEventListener("click", () => viewerOf()?.clearMeasurements());
    },
    /** The button and select follow the viewer (the P key toggles it too). @param {{mip: boolean, slabMm: number}} viewer */
    mipChanged(viewer) {
      mip.setAttribute("aria-pressed", String(viewer.mip));
      slab.value = String(viewer.slabMm);
    },
    /** @param {(import("./viewer.js").Probe & {image?: number | null}) | null} p */
    showProbe(p) {
      if (!p) {
        probe.textContent = "Point at the image to read HU.";
        for (const key of ["hu", "zyx", "plane", "mip"]) delete probe.dataset[key];
        return;
      }
      const what = p.mipMm ? `maximum of the ${p.mipMm} mm MIP slab` : "this slice";
      if (p.plane === "original") { // zyx: image (1-based stack position), row, column
        const hu = p.mipMm ? `${p.hu} HU (${what})` : `${p.hu} HU`;
        probe.textContent = `${hu} at image ${p.image ?? "—"} (${p.zyx[0]} of the stack), row ${p.zyx[1]}, column ${p.zyx[2]}`;
        Object.assign(probe.dataset, { hu: String(p.hu), zyx: p.zyx.join(" "), plane: p.plane, mip: String(p.mipMm) });
        return;
      }
      const where = p.zyx.map((v, i) => `${AXES[i]} ${v}`).join(", ");
      probe.textContent = `${p.hu} HU (${what}) at voxel ${where}, ${p.plane}`;
      Object.assign(probe.dataset, { hu: String(p.hu), zyx: p.zyx.join(" "), plane: p.plane, mip: String(p.mipMm) });
    },
    /**
     * One line per kept caliper; one from the original series names its image number and
     * carries its image and LPS end points (data-image, data-sop-instance-uid, data-lps).
     * @param {import("./viewer.js").MeasureEntry[]} entries
     */
    showMeasurements(entries) {
      replace(list, entries.map((m) => m.plane === "original"
        ? h("li", { dataset: { plane: m.plane, image: String(m.image ?? ""), sopInstanceUid: m.sopInstanceUid,
          lps: JSON.stringify(m.lps) }, text: `Image ${m.image ?? "—"} (${m.slice} of ${m.count}): ${m.text}` })
        : h("li", { dataset: { plane: m.plane }, text: `${m.name} ${m.slice}/${m.count}: ${m.text}` })));
    },
  };
}
