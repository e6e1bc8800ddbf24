// @ts-check
/** Sign-in: the API key is exchanged for an HttpOnly session cookie and then forgotten. */
import { signIn } from "./api.js";
import { h, replace } from "./dom.js";

/** @param {HTMLElement} root @param {() => void} done */
export function showSignIn(root, done) {
  const key = /** @type {HTMLInputElement} */ (h("input", { type: "password", id: "api-key", required: true, autocomplete: "off", spellcheck: "false" }));
  const reader = /** @type {HTMLInputElement} */ (h("input", { type: "text", id: "reader", autocomplete: "name", maxlength: 100 }));
  const error = h("p", { class: "error-text", role: "alert" });
  const submit = h("button", { type: "submit", text: "Sign in" });
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title", text: "Sign in" }),
    h("label", { for: "api-key", text: "API key" }), key,
    h("label", { for: "reader", text: "Your name (recorded with your reviews)" }), reader,
    submit, error,
    h("p", { class: "muted", text: "The key is sent once to start a session and is not stored in this browser; the session cookie cannot be read by scripts and ends after 8 hours or when you sign out." }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      await signIn(key.value.trim(), reader.value.trim());
      key.value = "";
      done();
    } catch (err) {
      error.textContent = /** @type {Error} */ (err).message;
      key.focus();
    }
  });
  replace(root, form);
  key.focus();
}
