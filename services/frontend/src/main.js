// @ts-check
/** The dashboard's entry: session check and a hash router (#/worklist, #/upload, #/case/<id>[?view=original|reconstruction]). */
import { currentSession, signOut } from "./api.js";
import { leaveCase, showCase } from "./case.js";
import { h, replace } from "./dom.js";
import { showSignIn } from "./signin.js";
import { leaveUpload, showUpload } from "./upload.js";
import { leaveWorklist, showWorklist } from "./worklist.js";

const app = /** @type {HTMLElement} */ (document.getElementById("app"));
const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
/** @type {any} */
let session = null;

function leave() {
  leaveCase();
  leaveWorklist();
  leaveUpload();
  delete app.dataset.ready;
  delete app.dataset.view;
}

function renderNav() {
  if (!session) return replace(nav);
  const out = h("button", { type: "button", class: "link", text: "Sign out" });
  out.addEventListener("click", async () => {
    await signOut().catch(() => {});
    session = null;
    route();
  });
  const here = location.hash || "#/worklist";
  replace(nav,
    h("a", { href: "#/worklist", "aria-current": here.startsWith("#/worklist") ? "page" : null, text: "Worklist" }),
    h("a", { href: "#/upload", "aria-current": here.startsWith("#/upload") ? "page" : null, text: "Upload" }),
    h("span", { class: "who", text: `${session.actor} · ${session.tenant}` }), out);
}

async function route() {
  leave();
  if (!session) session = await currentSession().catch(() => null);
  renderNav();
  if (!session) {
    showSignIn(app, () => { session = null; route(); });
    return;
  }
  const hash = location.hash || "#/worklist";
  const caseMatch = /^#\/case\/([0-9a-f-]{36})(?:\?view=(original|reconstruction))?$/.exec(hash);
  if (caseMatch) await showCase(app, caseMatch[1], /** @type {any} */ (caseMatch[2]) || null);
  else if (hash === "#/upload") showUpload(app);
  else showWorklist(app);
}

window.addEventListener("hashchange", route);
window.addEventListener("lungcad:signed-out", () => {
  if (!session) return;
  session = null;
  route();
});
route();
