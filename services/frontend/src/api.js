// @ts-check
/**
 * The API client. Authentication is the HttpOnly session cookie set by `POST /v1/session`:
 * the API key typed at sign-in is sent once and never stored (not in localStorage, not in a
 * variable after the request), and scripts cannot read the cookie. Unsafe requests carry the
 * session's CSRF token (kept in memory only; re-read from `GET /v1/session` after a reload).
 */

/** @type {string | null} */
let csrf = null;

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} detail */
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

/** @param {Response} response */
async function problemOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  const b = /** @type {any} */ (body);
  const error = new ApiError(response.status, b.code || "http_error", b.detail || response.statusText);
  if (response.status === 401) window.dispatchEvent(new CustomEvent("lungcad:signed-out"));
  return error;
}

/**
 * @param {string} path
 * @param {{method?: string, json?: any}} [options]
 */
export async function request(path, options = {}) {
  const method = options.method || "GET";
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  if (csrf && !["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = csrf;
  let body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { method, headers, body, credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw await problemOf(response);
  return response.status === 204 ? null : response.json();
}

/** @param {string} apiKey @param {string} reader */
export async function signIn(apiKey, reader) {
  const session = await request("/v1/session", { method: "POST", json: { api_key: apiKey, reader: reader || null } });
  csrf = session.csrf_token;
  return session;
}

/** The current session, or null when signed out. */
export async function currentSession() {
  try {
    const session = await request("/v1/session");
    csrf = session.csrf_token;
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function signOut() {
  await request("/v1/session", { method: "DELETE" });
  csrf = null;
}

/**
 * Upload a study with progress (XMLHttpRequest: fetch cannot report upload progress).
 * @param {File[]} files
 * @param {Record<string, string>} fields
 * @param {(loaded: number, total: number) => void} onProgress
 * @returns {Promise<any>} the job
 */
export function uploadStudy(files, fields, onProgress) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) if (v) form.append(k, v);
  for (const file of files) form.append("files", file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/jobs");
    xhr.withCredentials = true;
    if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onerror = () => reject(new ApiError(0, "network_error", "The upload failed: network error."));
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      const b = /** @type {any} */ (body);
      if (xhr.status >= 200 && xhr.status < 300) resolve(b);
      else reject(new ApiError(xhr.status, b.code || "http_error", b.detail || `HTTP ${xhr.status}`));
    };
    xhr.send(form);
  });
}
