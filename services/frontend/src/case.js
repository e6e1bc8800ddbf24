// @ts-check
/** The case view: the slice viewer, the findings table, feedback, key images and downloads. */
import { request } from "./api.js";
import { dicomDate, fmt, h, pct, progressBar, replace, size } from "./dom.js";
import { KeyImages } from "./keyimages.js";
import { findingImage } from "./original.js";
import { readingTools } from "./reading.js";
import { LABELS, MANAGEMENT, caseRisk, locationText } from "./risk.js";
import { SeriesLoader } from "./series.js";
import { StackViewer } from "./stack.js";
import { PRESETS, SliceViewer } from "./viewer.js";
import { fetchArray } from "./volume.js";

/**
 * Where a review entry lies in the original series: its image number (InstanceNumber) when the
 * series carried one, else its 1-based slice position; with column and row.
 * @param {any} d a feedback entry
 */
export function originalPlace(d) {
  if (!d.center_voxel) return "";
  const [column, row, k] = d.center_voxel;
  const where = d.instance_number != null ? `image ${d.instance_number}` : `slice ${k + 1}`;
  return ` at ${where} (column ${column}, row ${row})`;
}

/** What a mouse tool does, said when it is picked. @type {Record<string, string>} */
const TOOL_HINTS = {
  add: "Click the missed nodule's centre on any plane (one click adds one).",
  measure: "Drag across a structure to measure its length; the last measurement on each plane stays.",
  bidirectional: "Drag the long axis, then the short axis (kept perpendicular), on the same slice.",
};

/** The two reading modes: the original DICOM series, or the 1 mm three-plane reconstruction. */
export const VIEWS = { original: "Original series", reconstruction: "1 mm reconstruction" };
/** @typedef {keyof typeof VIEWS} View */

/** @type {SliceViewer | StackViewer | null} */
let current = null;
/** @type {KeyImages | null} */
let keyImageLoader = null;
let generation = 0; // a case left while it loads must not draw over the next page

export function leaveCase() {
  generation++;
  current?.destroy();
  current = null;
  keyImageLoader?.destroy();
  keyImageLoader = null;
}

/**
 * @param {HTMLElement} root @param {Error} error @param {() => void} retry
 * @param {{label: string, go: () => void}} [other] another way to read the case
 */
function showLoadError(root, error, retry, other) {
  const again = h("button", { type: "button", class: "retry", text: "Retry" });
  again.addEventListener("click", retry);
  const instead = other ? h("button", { type: "button", class: "other-view", text: other.label }) : null;
  if (instead && other) instead.addEventListener("click", other.go);
  replace(root, h("section", { class: "error-panel", role: "alert" },
    h("h1", { text: "This case cannot be shown" }), h("p", { text: error.message }),
    h("p", {}, again, " ", instead, instead ? " " : null, h("a", { href: "#/worklist", text: "Back to the worklist" }))));
  again.focus();
}

/** @param {string} jobId @param {View} view */
export function caseHash(jobId, view) {
  return `#/case/${jobId}?view=${view}`;
}

/**
 * The findings' outlines (original series or 1 mm grid); a failure is kept as its message (the
 * viewer then draws circles and says why), not thrown: the images can be read without them.
 * @param {string | undefined} url
 */
async function loadOutlines(url) {
  if (!url) return { outlines: null, outlinesError: null };
  try {
    return { outlines: await request(url), outlinesError: null };
  } catch (error) {
    return { outlines: null, outlinesError: /** @type {Error} */ (error).message || String(error) };
  }
}

/**
 * Fetch what a reading mode draws: the original series (metadata, its pixel stack and the
 * findings' outlines), or the 1 mm volume, lung mask and the findings' masks on it.
 * @param {any} info @param {View} view @param {(fraction: number) => void} onProgress
 */
async function loadView(info, view, onProgress) {
  if (view === "original") {
    const series = await request(info.original.url);
    // the image shown first (the first finding's, else the middle one) loads alone, the rest behind it
    const finding = info.findings[0]?.finding;
    const loader = new SeriesLoader(series, finding ? findingImage(series, finding) : Math.floor(series.images.length / 2));
    const [, outlines] = await Promise.all([loader.start().then(() => onProgress(1)),
      loadOutlines(info.original.outlines_url)]);
    return { series, loader, ...outlines };
  }
  const fractions = [0, 0];
  const show = () => onProgress((fractions[0] * 3 + fractions[1]) / 4);
  const [volume, mask, outlines] = await Promise.all([
    fetchArray(info.volume.url, (f) => { fractions[0] = f; show(); }),
    info.mask ? fetchArray(info.mask.url, (f) => { fractions[1] = f; show(); }) : Promise.resolve(null),
    loadOutlines(info.outlines_url),
  ]);
  return { volume, mask, ...outlines };
}

/**
 * Open a case in a reading mode: `view` from the address, else the original series when the
 * job has one, else the 1 mm reconstruction.
 * @param {HTMLElement} root @param {string} jobId @param {View | null} [view]
 */
export async function showCase(root, jobId, view = null) {
  leaveCase();
  const mine = generation;
  const t0 = performance.now();
  const status = progressBar("Loading the images");
  replace(root, h("section", { class: "case-loading" }, h("h1", { text: "Opening case…" }), status.el));
  /** @type {any} */
  let info;
  /** @type {any} */
  let data;
  /** @type {View} */
  let mode = view || "reconstruction";
  try {
    info = await request(`/v1/jobs/${encodeURIComponent(jobId)}/viewer`);
    mode = info.original && view !== "reconstruction" ? "original" : "reconstruction";
    data = await loadView(info, mode, (f) => status.set(f * 100, "Loading the images…"));
  } catch (error) {
    if (mine !== generation) return;
    const other = mode === "original"
      ? { label: `Show the ${VIEWS.reconstruction}`, go: () => { location.hash = caseHash(jobId, "reconstruction"); } }
      : undefined;
    showLoadError(root, /** @type {Error} */ (error), () => showCase(root, jobId, view), other);
    return;
  }
  if (mine !== generation) return;
  keyImageLoader = new KeyImages();
  const layout = buildLayout(root, info, keyImageLoader);
  layout.show(mode, data);
  let switching = 0; // a later switch supersedes one still loading
  /** Switch the reading mode in place (the address follows, without reopening the case). @param {View} next */
  layout.onSwitch = async (next) => {
    const token = ++switching;
    current?.destroy();
    current = null;
    const loading = h("p", { class: "view-loading", role: "status", text: `Loading the ${VIEWS[next]}…` });
    layout.viewport.replaceChildren(loading);
    try {
      const loaded = await loadView(info, next, (f) => { loading.textContent = `Loading the ${VIEWS[next]}… ${Math.round(f * 100)} %`; });
      if (mine !== generation || token !== switching) return;
      history.replaceState(null, "", caseHash(jobId, next));
      layout.show(next, loaded);
      await loaded.loader?.done.catch(() => {}); // the pane says what failed
      if (mine !== generation || token !== switching) return;
      root.dataset.view = next;
      layout.refreshMarkers(await loadFeedback(info, layout));
      if (layout.selected) layout.select(layout.selected);
    } catch (error) {
      if (mine !== generation || token !== switching) return;
      const again = h("button", { type: "button", class: "retry", text: "Retry" });
      again.addEventListener("click", () => layout.onSwitch(next));
      layout.viewport.replaceChildren(h("div", { class: "error-panel", role: "alert" },
        h("p", { text: `The ${VIEWS[next]} cannot be shown: ${/** @type {Error} */ (error).message}` }), again));
    }
  };
  const feedback = await loadFeedback(info, layout);
  if (mine !== generation) return;
  layout.refreshMarkers(feedback);
  const first = info.findings[0];
  if (first) layout.select(first.finding.id);
  await data.loader?.done.catch(() => {}); // ready once every image is in (the pane says what failed)
  if (mine !== generation) return;
  requestAnimationFrame(() => {
    const perf = /** @type {any} */ (window).__lungcadPerf;
    perf.openMs = performance.now() - t0;
    root.dataset.view = mode;
    root.dataset.ready = "true";
  });
}

/** @param {HTMLElement} root @param {any} info @param {KeyImages} loader */
function buildLayout(root, info, loader) {
  const job = info.job;
  const viewport = h("div", { class: "viewport", "aria-label": "Slice viewer" });
  const presetButtons = Object.entries(PRESETS).map(([name, p]) =>
    h("button", { type: "button", class: "preset", dataset: { preset: name }, "aria-pressed": name === "lung" ? "true" : "false", text: p.label }));
  const toolButtons = [["window", "Window/level"], ["pan", "Pan"], ["measure", "Measure"], ["bidirectional", "Bidirectional"],
    ["add", "Add missed nodule"]].map(([tool, label]) =>
    h("button", { type: "button", class: "tool", dataset: { tool }, "aria-pressed": tool === "window" ? "true" : "false", text: label }));
  /** @param {string} name @param {string} label */
  const toggle = (name, label) => h("label", { class: "toggle" },
    h("input", { type: "checkbox", checked: name !== "mask", dataset: { overlay: name }, "aria-label": label }), label);
  const zoomIn = h("button", { type: "button", "aria-label": "Zoom in", text: "+" });
  const zoomOut = h("button", { type: "button", "aria-label": "Zoom out", text: "−" });
  const reset = h("button", { type: "button", text: "Reset view" });
  const reading = readingTools();
  const viewButtons = info.original ? Object.entries(VIEWS).map(([name, label]) =>
    h("button", { type: "button", class: "view", dataset: { view: name }, "aria-pressed": "false", text: label })) : [];
  const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Viewer tools" },
    viewButtons.length ? h("span", { class: "group", role: "group", "aria-label": "Reading mode" }, viewButtons) : null,
    h("span", { class: "group", role: "group", "aria-label": "Window presets" }, presetButtons),
    h("span", { class: "group", role: "group", "aria-label": "Mouse tool" }, toolButtons),
    reading.group,
    h("span", { class: "group" }, zoomOut, zoomIn, reset),
    h("span", { class: "group", role: "group", "aria-label": "Overlays" },
      toggle("nodules", "Nodule outlines"), toggle("mask", "Lung mask"), toggle("crosshair", "Crosshair")));
  const findingsBody = h("tbody");
  const trail = h("ol", { class: "trail", "aria-live": "polite" });
  const keyImages = h("div", { class: "key-images" });
  const message = h("p", { class: "message", role: "status" });
  const detail = h("div", { class: "finding-detail", "aria-live": "polite" });
  const summary = info.case
    ? h("div", { class: "case-summary" }, caseRisk(info),
      info.model ? h("p", { class: "muted", text: `Model ${info.model.name} ${info.model.version}` }) : null)
    : h("p", { class: "muted", text: job.state === "succeeded" ? "No findings document." : `Findings are not ready (job ${job.state}).` });
  const downloads = h("ul", { class: "downloads" }, info.downloads.length
    ? info.downloads.map((/** @type {any} */ d) => h("li", {}, h("a", { href: d.url, download: d.name, text: d.name }), ` (${size(d.size)})`))
    : h("li", { class: "muted", text: "No report files yet." }));

  replace(root, h("section", { class: "case" },
    h("div", { class: "case-head" },
      h("h1", {}, "Patient ", h("span", { class: "patient-id", text: job.patient_id || "—" })),
      h("p", { class: "muted" }, `Study ${dicomDate(job.study_date)} · `, h("span", { class: "series", text: job.series_description || "—" }),
        ` · ${info.geometry.shape_zyx.join(" × ")} voxels, ${info.geometry.spacing_zyx_mm[0]} mm`),
      h("p", { class: "notice-inline", role: "note", text: "Research use, not for clinical diagnosis. Every finding must be checked by a radiologist." })),
    toolbar,
    h("div", { class: "case-body" },
      h("div", { class: "viewer-column" }, viewport, reading.probe, reading.list),
      h("aside", { class: "side" },
        summary,
        h("h2", { text: "Findings" }),
        h("table", { class: "findings" },
          h("caption", { class: "sr-only", text: "Findings; select a row to show the nodule" }),
          h("thead", {}, h("tr", {}, [["ID"], ["Image", LABELS.imageHelp], ["Diam. mm"], ["Vol. mm³"], ["Type"], ["Location"],
            ["Lung-RADS", "Lung-RADS v2022 category"], ["Brock risk", LABELS.brockHelp],
            ["Model score", LABELS.scoreHelp], ["Review"]]
            .map(([t, help]) => h("th", { scope: "col", text: t, title: help })))),
          findingsBody),
        h("p", { class: "legend muted" }, `Brock risk: ${LABELS.brockHelp} Model score: ${LABELS.scoreHelp}`),
        detail,
        message,
        h("h2", { text: "Key images" }), keyImages,
        h("h2", { text: "Downloads" }), downloads,
        h("h2", { text: "Review trail" }), trail))));

  /** @type {SliceViewer | StackViewer | null} */
  let viewer = null;
  /** @type {string | null} */
  let selectedId = null;
  /** @type {{verdicts: Record<string, string>, data: any[]}} */
  let lastFeedback = { verdicts: {}, data: [] };
  /** @type {Record<string, string>} */
  let verdicts = {};
  /** @type {any[]} */
  let added = [];

  const rows = info.findings.map((/** @type {any} */ vf) => {
    const f = vf.finding;
    const accept = h("button", { type: "button", class: "accept", "aria-label": `Accept finding ${f.id}`, title: "Accept", text: "✓" });
    const reject = h("button", { type: "button", class: "reject", "aria-label": `Reject finding ${f.id}`, title: "Reject", text: "✗" });
    const row = h("tr", { tabindex: 0, dataset: { finding: f.id }, "aria-label": `Finding ${f.id}: show it` },
      h("th", { scope: "row", text: f.id }),
      h("td", { class: "image-number", text: f.instance_number ?? "—" }),
      h("td", { text: fmt(f.diameter_mm) }), h("td", { text: fmt(f.volume_mm3, 0) }), h("td", { text: f.type }),
      h("td", { text: locationText(f.location) }),
      h("td", { class: `rads rads-${f.lung_rads.category}`, text: f.lung_rads.category }),
      h("td", { text: pct(f.brock_probability) }), h("td", { text: pct(f.malignancy_probability) }),
      h("td", { class: "review" }, accept, reject));
    const go = () => select(f.id);
    row.addEventListener("click", (e) => { if (!(/** @type {HTMLElement} */ (e.target)).closest("button")) go(); });
    row.addEventListener("keydown", (e) => { if ((e.key === "Enter" || e.key === " ") && e.target === row) { e.preventDefault(); go(); } });
    accept.addEventListener("click", () => sendVerdict(f.id, "accept"));
    reject.addEventListener("click", () => sendVerdict(f.id, "reject"));
    findingsBody.append(row);
    for (const url of vf.key_images) {
      keyImages.append(loader.figure(url, `Key image of finding ${f.id}`, `${f.id}: ${fmt(f.diameter_mm)} mm ${f.type}`));
    }
    return row;
  });
  if (!rows.length) findingsBody.append(h("tr", {}, h("td", { colspan: 10, class: "muted", text: "No findings." })));
  if (!keyImages.childElementCount) keyImages.append(h("p", { class: "muted", text: "No key images." }));

  /** @param {string} id */
  function select(id) {
    const vf = info.findings.find((/** @type {any} */ x) => x.finding.id === id);
    if (!vf || !viewer) return;
    selectedId = id;
    if (viewer instanceof StackViewer) viewer.jumpToFinding(vf.finding);
    else viewer.jumpTo(vf.index_zyx, id);
    for (const r of rows) {
      r.classList.toggle("selected", r.dataset.finding === id);
      if (r.dataset.finding === id) r.setAttribute("aria-current", "true");
      else r.removeAttribute("aria-current");
    }
    const f = vf.finding;
    replace(detail, h("p", {}, h("strong", { text: f.id }), ` · ${fmt(f.diameter_mm)} mm ${f.type}, ${locationText(f.location)}`),
      h("p", {}, "Lung-RADS v2022 ", h("strong", { text: f.lung_rads.category }), ": ", f.lung_rads.rule),
      h("p", {}, h("span", { class: "muted", text: "Management: " }), MANAGEMENT[f.lung_rads.category] || "—"),
      h("p", { class: "muted" }, `${LABELS.brock} ${pct(f.brock_probability)} · model score ${pct(f.malignancy_probability)}`));
  }

  /** @param {string} id @param {"accept" | "reject"} action */
  async function sendVerdict(id, action) {
    try {
      await request(`/v1/jobs/${encodeURIComponent(job.id)}/feedback`, { method: "POST", json: { action, finding_id: id } });
      message.textContent = `Finding ${id} ${action === "accept" ? "accepted" : "rejected"}.`;
      refreshMarkers(await loadFeedback(info, api));
    } catch (error) {
      message.textContent = `Could not save: ${/** @type {Error} */ (error).message}`;
    }
  }

  /** @param {{verdicts: Record<string, string>, data: any[]}} fb */
  function refreshMarkers(fb) {
    lastFeedback = fb;
    verdicts = fb.verdicts;
    const withdrawn = new Set(fb.data.filter((d) => d.action === "withdraw").map((d) => d.finding_id));
    added = fb.data.filter((d) => d.action === "add" && d.index_zyx && !withdrawn.has(d.finding_id));
    for (const r of rows) {
      const v = verdicts[r.dataset.finding || ""];
      r.dataset.verdict = v || "";
      r.querySelector(".accept")?.setAttribute("aria-pressed", v === "accept" ? "true" : "false");
      r.querySelector(".reject")?.setAttribute("aria-pressed", v === "reject" ? "true" : "false");
    }
    replace(trail, fb.data.length ? fb.data.map((d) => h("li", {},
      h("time", { datetime: d.created_at, text: new Date(d.created_at).toLocaleString() }), " ",
      h("strong", { text: d.actor }), ` ${d.action} ${d.finding_id || ""}`,
      originalPlace(d))) :
      h("li", { class: "muted", text: "No review yet." }));
    if (viewer instanceof StackViewer) {
      viewer.setMarkers([
        ...info.findings.map((/** @type {any} */ vf) => ({ id: vf.finding.id, center_mm: vf.finding.center_mm,
          diameter_mm: vf.finding.diameter_mm, verdict: verdicts[vf.finding.id] })),
        ...added.map((d) => ({ id: d.finding_id, center_mm: d.center_mm, diameter_mm: 6, kind: /** @type {const} */ ("added") })),
      ]);
      return;
    }
    viewer?.setMarkers([
      ...info.findings.map((/** @type {any} */ vf) => ({ id: vf.finding.id, index_zyx: vf.index_zyx, radius_vox: vf.radius_vox, verdict: verdicts[vf.finding.id] })),
      ...added.map((d) => ({ id: d.finding_id, index_zyx: d.index_zyx, radius_vox: [3, 3, 3], kind: /** @type {const} */ ("added") })),
    ]);
  }

  /** @param {import("./viewer.js").Tool} tool */
  function setTool(tool) {
    viewer?.setTool(tool);
    for (const o of toolButtons) o.setAttribute("aria-pressed", String(o.dataset.tool === tool));
  }

  /**
   * One click records one missed nodule; the tool then disarms, and the entry can be undone.
   * @param {{index_zyx: number[]} | {center_mm: number[]}} where a 1 mm grid voxel, or an LPS point
   */
  async function addMissed(where) {
    setTool("window");
    try {
      const entry = await request(`/v1/jobs/${encodeURIComponent(job.id)}/feedback`,
        { method: "POST", json: { action: "add", ...where } });
      const undo = h("button", { type: "button", class: "undo", text: "Undo" });
      undo.addEventListener("click", () => withdraw(entry.finding_id));
      replace(message, `Missed nodule ${entry.finding_id} recorded. `, undo);
      refreshMarkers(await loadFeedback(info, api));
    } catch (error) {
      message.textContent = `Could not save: ${/** @type {Error} */ (error).message}`;
    }
  }

  /** @param {string} id */
  async function withdraw(id) {
    try {
      await request(`/v1/jobs/${encodeURIComponent(job.id)}/feedback`, { method: "POST", json: { action: "withdraw", finding_id: id } });
      refreshMarkers(await loadFeedback(info, api));
      message.textContent = `Missed nodule ${id} withdrawn.`;
    } catch (error) {
      message.textContent = `Could not undo: ${/** @type {Error} */ (error).message}`;
    }
  }

  for (const b of presetButtons) {
    b.addEventListener("click", () => viewer?.setPreset(/** @type {any} */ (b.dataset.preset)));
  }
  for (const b of toolButtons) {
    b.addEventListener("click", () => {
      setTool(/** @type {any} */ (b.dataset.tool));
      message.textContent = TOOL_HINTS[b.dataset.tool || ""] || "";
    });
  }
  for (const input of toolbar.querySelectorAll("input[data-overlay]")) {
    const box = /** @type {HTMLInputElement} */ (input);
    box.addEventListener("change", () => viewer?.setOverlay(/** @type {any} */ (box.dataset.overlay), box.checked));
  }
  for (const b of viewButtons) {
    b.addEventListener("click", () => {
      const next = /** @type {View} */ (b.dataset.view);
      if (b.getAttribute("aria-pressed") !== "true") api.onSwitch(next);
    });
  }
  reading.bind(() => viewer);
  zoomIn.addEventListener("click", () => viewer?.zoomBy(1.25));
  zoomOut.addEventListener("click", () => viewer?.zoomBy(0.8));
  reset.addEventListener("click", () => viewer?.resetView());

  /** The overlays that only the 1 mm grid has (lung tint, crosshair) are disabled in the original series. @param {View} mode */
  function controlsFor(mode) {
    for (const b of viewButtons) b.setAttribute("aria-pressed", String(b.dataset.view === mode));
    const gridOnly = [...toolbar.querySelectorAll("input[data-overlay=mask], input[data-overlay=crosshair]")];
    for (const el of gridOnly) {
      /** @type {HTMLButtonElement} */ (el).disabled = mode === "original";
      if (mode === "original") el.setAttribute("title", `Available in the ${VIEWS.reconstruction}`);
      else el.removeAttribute("title");
    }
  }

  const api = {
    viewport, message, trail, reading,
    refreshMarkers, select, addMissed,
    /** @type {(view: View) => void} set by showCase */
    onSwitch: (/** @type {View} */ view) => { void view; },
    get selected() { return selectedId; },
    /** The pressed preset follows the window: none after a drag to a custom one. */
    windowChanged() {
      const w = viewer?.window;
      for (const o of presetButtons) {
        const p = PRESETS[/** @type {keyof typeof PRESETS} */ (o.dataset.preset)];
        o.setAttribute("aria-pressed", String(!!w && p.width === w.width && p.level === w.level));
      }
    },
    /**
     * Draw a reading mode in the viewport, with what loadView fetched for it.
     * @param {View} mode @param {any} data
     */
    show(mode, data) {
      current?.destroy();
      viewport.replaceChildren();
      setTool("window");
      if (mode === "original") {
        viewer = new StackViewer(viewport, {
          pixels: data.loader.pixels, shape: data.loader.shape, series: data.series, loader: data.loader,
          outlines: data.outlines, outlinesError: data.outlinesError,
          onPick: (mm) => addMissed({ center_mm: mm }),
          onWindow: () => api.windowChanged(),
          onMip: (v) => reading.mipChanged(v),
          onProbe: (probe) => reading.showProbe(probe),
          onMeasure: (entries) => reading.showMeasurements(entries),
        });
      } else {
        viewer = new SliceViewer(viewport, {
          volume: /** @type {Int16Array} */ (data.volume.data), shape: data.volume.shape,
          spacing: info.geometry.spacing_zyx_mm,
          mask: data.mask ? /** @type {Uint8Array} */ (data.mask.data) : null,
          outlines: data.outlines, outlinesError: data.outlinesError,
          onPick: (zyx) => addMissed({ index_zyx: zyx }),
          onWindow: () => api.windowChanged(),
          onMip: (v) => reading.mipChanged(v),
          onProbe: (probe) => reading.showProbe(probe),
          onMeasure: (entries) => reading.showMeasurements(entries),
        });
      }
      for (const input of toolbar.querySelectorAll("input[data-overlay]")) {
        const box = /** @type {HTMLInputElement} */ (input);
        viewer.setOverlay(/** @type {any} */ (box.dataset.overlay), box.checked);
      }
      current = viewer;
      controlsFor(mode);
      reading.mipChanged(viewer);
      reading.showMeasurements([]);
      reading.showProbe(null);
      api.windowChanged();
      refreshMarkers(lastFeedback);
    },
  };
  return api;
}

/** @param {any} info @param {{message: HTMLElement}} layout */
async function loadFeedback(info, layout) {
  try {
    return await request(`/v1/jobs/${encodeURIComponent(info.job.id)}/feedback`);
  } catch (error) {
    layout.message.textContent = `Could not load the review trail: ${/** @type {Error} */ (error).message}`;
    return { data: [], verdicts: {} };
  }
}
