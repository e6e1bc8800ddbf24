// @ts-check
/** Upload: drop a DICOM folder, files or a zip; upload progress, then the job's stages. */
import { request, uploadStudy } from "./api.js";
import { h, progressBar, replace, size } from "./dom.js";

/** @type {number | undefined} */
let timer;

export function leaveUpload() {
  clearTimeout(timer);
}

/**
 * All files under dropped items, folders walked recursively.
 * @param {DataTransfer} transfer
 * @returns {Promise<File[]>}
 */
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...transfer.files];
  /** @type {File[]} */
  const files = [];
  /** @param {any} entry */
  async function walk(entry) {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  }
  for (const entry of entries) await walk(entry);
  return files.filter((f) => !f.name.startsWith("."));
}

/** @param {HTMLElement} root */
export function showUpload(root) {
  leaveUpload();
  /** @type {File[]} */
  let files = [];
  const picked = h("p", { class: "muted", role: "status", text: "No files chosen." });
  const fileInput = /** @type {HTMLInputElement} */ (h("input", { type: "file", id: "up-files", multiple: true }));
  const folderInput = /** @type {HTMLInputElement} */ (h("input", { type: "file", id: "up-folder", webkitdirectory: true }));
  const age = /** @type {HTMLInputElement} */ (h("input", { type: "number", id: "up-age", min: 0, max: 130 }));
  const sex = /** @type {HTMLSelectElement} */ (h("select", { id: "up-sex" }, ["", "F", "M", "O"].map((s) => h("option", { value: s, text: s || "—" }))));
  const submit = /** @type {HTMLButtonElement} */ (h("button", { type: "submit", disabled: true, text: "Upload and analyse" }));
  const uploadBar = progressBar("Upload progress");
  const jobBar = progressBar("Analysis progress");
  const result = h("div", { class: "upload-result", "aria-live": "polite" });
  const zone = h("div", { class: "dropzone", tabindex: 0, role: "button", "aria-label": "Drop a DICOM folder, DICOM files or a zip here, or press Enter to choose files" },
    h("p", { text: "Drop a DICOM folder, DICOM files or a .zip here" }), h("p", { class: "muted", text: "or choose below" }));

  /** @param {File[]} chosen */
  function choose(chosen) {
    files = chosen;
    const total = files.reduce((n, f) => n + f.size, 0);
    picked.textContent = files.length ? `${files.length} file(s), ${size(total)}` : "No files chosen.";
    submit.disabled = !files.length;
  }
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer) choose(await droppedFiles(e.dataTransfer));
  });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } });
  fileInput.addEventListener("change", () => choose([...(fileInput.files || [])]));
  folderInput.addEventListener("change", () => choose([...(folderInput.files || [])]));

  const form = h("form", { class: "upload" }, zone,
    h("div", { class: "fields" },
      h("label", { for: "up-files", text: "Files or a zip" }), fileInput,
      h("label", { for: "up-folder", text: "A DICOM folder" }), folderInput,
      h("label", { for: "up-age", text: "Patient age (optional, for Brock)" }), age,
      h("label", { for: "up-sex", text: "Patient sex (optional)" }), sex),
    picked, submit, uploadBar.el, jobBar.el, result);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    replace(result);
    let job;
    try {
      job = await uploadStudy(files, { patient_age: age.value, patient_sex: sex.value },
        (loaded, total) => uploadBar.set(total ? (loaded / total) * 100 : 0, `Uploaded ${size(loaded)}${total ? ` of ${size(total)}` : ""}`));
    } catch (error) {
      uploadBar.set(0, "Upload refused");
      replace(result, h("p", { class: "error-text", role: "alert", text: /** @type {Error} */ (error).message }));
      submit.disabled = false;
      return;
    }
    uploadBar.set(100, "Uploaded");
    follow(job.id);
  });

  /** @param {string} id */
  async function follow(id) {
    let job;
    try {
      job = await request(`/v1/jobs/${encodeURIComponent(id)}`);
    } catch (error) {
      replace(result, h("p", { class: "error-text", text: /** @type {Error} */ (error).message }));
      return;
    }
    jobBar.set(job.progress, `${job.state}: ${job.stage} (${job.progress} %)`);
    if (job.state === "succeeded" || job.state === "inferring") {
      replace(result, h("a", { class: "button", href: `#/case/${job.id}`, text: "Open the case" }));
    }
    if (job.state === "failed" || job.state === "canceled") {
      replace(result, h("p", { class: "error-text", role: "alert", text: `${job.error_code}: ${job.error_message}` }));
    }
    if (!["succeeded", "failed", "canceled"].includes(job.state) && root.contains(form)) {
      timer = window.setTimeout(() => follow(id), 1500);
    }
  }

  replace(root, h("section", {}, h("h1", { text: "Upload a study" }), form));
}
