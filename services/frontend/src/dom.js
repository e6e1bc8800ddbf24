// @ts-check
/**
 * The one way this app builds DOM: text always goes in as text nodes (never innerHTML), so a
 * DICOM value such as a PatientName holding `<script>` is displayed, not run.
 */

/**
 * @param {string} tag
 * @param {Record<string, any> | null} [props] `class`, `text`, `on<event>` handlers, `dataset`,
 *   `style`, DOM properties (`value`, `checked`, `disabled`…) and any other attribute.
 * @param {...(Node | string | number | null | undefined | false | Array<Node | string>)} children
 * @returns {HTMLElement}
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = String(value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") Object.assign(el.style, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (["value", "checked", "disabled", "hidden", "tabIndex"].includes(key)) {
      /** @type {any} */ (el)[key] = value;
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** @param {Element} el @param {any[]} children */
export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. @param {Element} el @param {...any} children */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** @param {number | null | undefined} value @param {number} [digits] */
export function fmt(value, digits = 1) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

/** @param {number | null | undefined} p probability 0-1 */
export function pct(p) {
  return p === null || p === undefined ? "—" : `${(p * 100).toFixed(p < 0.1 ? 1 : 0)} %`;
}

/** DICOM DA `YYYYMMDD` to `YYYY-MM-DD`. @param {string | null | undefined} da */
export function dicomDate(da) {
  return da && /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : da || "—";
}

/** @param {number} bytes */
export function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(0)} kB`;
  return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
}

/** A labelled progress bar. @param {string} label */
export function progressBar(label) {
  const bar = /** @type {HTMLProgressElement} */ (h("progress", { max: 100, value: 0, "aria-label": label }));
  const text = h("span", { class: "progress-text", "aria-live": "polite" });
  const wrap = h("div", { class: "progress" }, bar, text);
  return {
    el: wrap,
    /** @param {number} percent @param {string} [message] */
    set(percent, message) {
      bar.value = Math.max(0, Math.min(100, percent));
      text.textContent = message ?? `${Math.round(percent)} %`;
    },
  };
}
