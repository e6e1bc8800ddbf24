// @ts-check
/** The worklist: jobs with their findings summary; sort, filter, search, pages, live progress. */
import { request } from "./api.js";
import { dicomDate, h, pct, replace } from "./dom.js";
import { LABELS, MANAGEMENT } from "./risk.js";

const PAGE = 25;
const STATES = ["queued", "preprocessing", "inferring", "succeeded", "failed", "canceled"];
const RUNNING = new Set(["queued", "preprocessing", "inferring"]);
const COLUMNS = [
  ["patient_id", "Patient ID"], ["study_date", "Study date"], [null, "Series"], ["state", "State"],
  ["lung_rads", "Lung-RADS v2022"], ["brock_risk", LABELS.brock], ["malignancy_score", "Model score"],
  ["nodules", "Nodules"], ["created_at", "Received"],
];
/** @type {Record<string, string>} */
const HELP = { brock_risk: LABELS.brockHelp, malignancy_score: LABELS.scoreHelp };

const query = { q: "", state: "", lung_rads: "", sort: "created_at", order: "desc", offset: 0 };
/** @type {number | undefined} */
let timer;

export function leaveWorklist() {
  clearTimeout(timer);
}

/** @param {HTMLElement} root */
export function showWorklist(root) {
  leaveWorklist();
  const search = /** @type {HTMLInputElement} */ (h("input", { type: "search", id: "wl-search", value: query.q,
    placeholder: "Patient ID or series", autocomplete: "off" }));
  const state = /** @type {HTMLSelectElement} */ (h("select", { id: "wl-state" },
    h("option", { value: "", text: "Any state" }), STATES.map((s) => h("option", { value: s, text: s }))));
  state.value = query.state;
  const rads = /** @type {HTMLSelectElement} */ (h("select", { id: "wl-rads" },
    h("option", { value: "", text: "Any Lung-RADS" }), ["1", "2", "3", "4A", "4B", "4X"].map((c) => h("option", { value: c, text: c }))));
  rads.value = query.lung_rads;
  const head = h("tr");
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const status = h("p", { class: "muted", role: "status" });
  replace(root, h("section", { class: "worklist" },
    h("div", { class: "list-head" }, h("h1", { text: "Worklist" }), h("a", { class: "button", href: "#/upload", text: "Upload a study" })),
    h("form", { class: "filters", role: "search", onsubmit: (/** @type {Event} */ e) => e.preventDefault() },
      h("label", { for: "wl-search", text: "Search" }), search,
      h("label", { for: "wl-state", text: "State" }), state,
      h("label", { for: "wl-rads", text: "Lung-RADS" }), rads),
    h("table", { class: "jobs" }, h("caption", { class: "sr-only", text: "Jobs" }), h("thead", {}, head), body),
    h("p", { class: "legend muted" }, `${LABELS.brock}: ${LABELS.brockHelp} Model score: ${LABELS.scoreHelp}`),
    pager, status));

  /** @type {number | undefined} */
  let debounce;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = window.setTimeout(() => { query.q = search.value.trim(); query.offset = 0; load(); }, 250);
  });
  state.addEventListener("change", () => { query.state = state.value; query.offset = 0; load(); });
  rads.addEventListener("change", () => { query.lung_rads = rads.value; query.offset = 0; load(); });

  function header() {
    replace(head, COLUMNS.map(([key, label]) => {
      if (!key) return h("th", { scope: "col", text: label });
      const help = HELP[key] || null;
      const active = query.sort === key;
      const button = h("button", { type: "button", class: "sort", title: help, text: label + (active ? (query.order === "asc" ? " ▲" : " ▼") : "") });
      button.addEventListener("click", () => {
        query.order = active && query.order === "desc" ? "asc" : "desc";
        query.sort = key;
        load();
      });
      return h("th", { scope: "col", "aria-sort": active ? (query.order === "asc" ? "ascending" : "descending") : "none" }, button);
    }));
  }

  async function load() {
    clearTimeout(timer);
    header();
    const params = new URLSearchParams({ sort: query.sort, order: query.order, limit: String(PAGE), offset: String(query.offset) });
    if (query.q) params.set("q", query.q);
    if (query.state) params.set("state", query.state);
    if (query.lung_rads) params.set("lung_rads", query.lung_rads);
    let page;
    try {
      page = await request(`/v1/worklist?${params}`);
    } catch (error) {
      if (!root.contains(body)) return;
      const again = h("button", { type: "button", class: "retry", text: "Retry" });
      again.addEventListener("click", () => load());
      replace(status, `Could not load the worklist: ${/** @type {Error} */ (error).message} `, again);
      status.setAttribute("role", "alert");
      return;
    }
    if (!root.contains(body)) return;
    replace(body, page.data.length ? page.data.map(row) : h("tr", {}, h("td", { colspan: COLUMNS.length, class: "muted", text: "No jobs match." })));
    const last = Math.min(page.offset + page.data.length, page.count);
    const prev = h("button", { type: "button", disabled: page.offset === 0, text: "Previous" });
    const next = h("button", { type: "button", disabled: last >= page.count, text: "Next" });
    prev.addEventListener("click", () => { query.offset = Math.max(0, query.offset - PAGE); load(); });
    next.addEventListener("click", () => { query.offset += PAGE; load(); });
    replace(pager, prev, h("span", { text: page.count ? `${page.offset + 1}–${last} of ${page.count}` : "0 jobs" }), next);
    status.textContent = "";
    status.setAttribute("role", "status");
    if (page.data.some((/** @type {any} */ r) => RUNNING.has(r.job.state))) timer = window.setTimeout(load, 2000);
  }

  header();
  load();
}

/** @param {any} item */
function row(item) {
  const job = item.job;
  const progress = RUNNING.has(job.state)
    ? h("progress", { max: 100, value: job.progress, "aria-label": `Progress of ${job.patient_id || job.id}` })
    : null;
  const stateCell = h("td", { class: `state state-${job.state}` }, h("span", { text: job.state }), progress,
    job.error_message ? h("span", { class: "error-text", text: job.error_message }) : null,
    RUNNING.has(job.state) ? h("span", { class: "muted", text: ` ${job.stage}` }) : null);
  return h("tr", { dataset: { job: job.id } },
    h("td", {}, h("a", { href: `#/case/${job.id}`, class: "open-case", text: job.patient_id || job.id.slice(0, 8) })),
    h("td", { text: dicomDate(job.study_date) }),
    h("td", { class: "series", text: job.series_description || "—" }),
    stateCell,
    h("td", { class: item.lung_rads ? `rads rads-${item.lung_rads}` : "", title: MANAGEMENT[item.lung_rads] || null, text: item.lung_rads || "—" }),
    h("td", { class: "brock-risk", text: pct(item.brock_risk) }),
    h("td", { class: "model-score", text: pct(item.malignancy_score) }),
    h("td", { text: item.nodules ?? "—" }),
    h("td", { text: new Date(job.created_at).toLocaleString() }));
}
