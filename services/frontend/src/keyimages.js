// @ts-check
/**
 * Key images, fetched on demand: only when scrolled into view (IntersectionObserver), at most
 * a few at a time, each through fetchWithRetry (so a 429 waits its Retry-After). A click opens
 * one full size in a dialog.
 */
import { fetchWithRetry } from "./api.js";
import { h } from "./dom.js";

const CONCURRENCY = 3;

export class KeyImages {
  constructor() {
    /** @type {Array<() => Promise<void>>} */
    this.queue = [];
    this.active = 0;
    /** @type {string[]} */
    this.urls = [];
    this.closed = false;
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        this.observer.unobserve(entry.target);
        const img = /** @type {HTMLImageElement} */ (entry.target);
        this.queue.push(() => this.load(img));
      }
      this.pump();
    }, { rootMargin: "150px" });
  }

  /** A figure whose image loads when it comes into view. @param {string} url @param {string} alt @param {string} caption */
  figure(url, alt, caption) {
    const img = /** @type {HTMLImageElement} */ (h("img", { alt, dataset: { src: url, state: "waiting" } }));
    const open = h("button", { type: "button", class: "key-image", "aria-label": `${alt}: open full size` }, img);
    open.addEventListener("click", () => { if (img.src) showFullSize(img.src, alt, caption); });
    this.observer.observe(img);
    return h("figure", {}, open, h("figcaption", { text: caption }));
  }

  pump() {
    while (!this.closed && this.active < CONCURRENCY && this.queue.length) {
      const job = /** @type {() => Promise<void>} */ (this.queue.shift());
      this.active++;
      job().finally(() => { this.active--; this.pump(); });
    }
  }

  /** @param {HTMLImageElement} img */
  async load(img) {
    img.dataset.state = "loading";
    try {
      const response = await fetchWithRetry(img.dataset.src || "");
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      if (this.closed) return;
      const url = URL.createObjectURL(blob);
      this.urls.push(url);
      img.src = url;
      await img.decode().catch(() => {});
      img.dataset.state = "loaded";
    } catch (error) {
      img.dataset.state = "failed";
      img.alt = `${img.alt} (could not be loaded: ${/** @type {Error} */ (error).message})`;
    }
  }

  destroy() {
    this.closed = true;
    this.observer.disconnect();
    this.queue = [];
    for (const url of this.urls) URL.revokeObjectURL(url);
    for (const dialog of document.querySelectorAll("dialog.key-image-full")) dialog.remove();
  }
}

/** @param {string} src @param {string} alt @param {string} caption */
function showFullSize(src, alt, caption) {
  const close = h("button", { type: "button", class: "close", text: "Close" });
  const dialog = /** @type {HTMLDialogElement} */ (h("dialog", { class: "key-image-full", "aria-label": alt },
    h("img", { src, alt }), h("p", {}, h("span", { text: caption }), " ", close)));
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}
