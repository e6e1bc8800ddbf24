// @ts-check
/**
 * The API client. Authentication is the HttpOnly session cookie set by `POST /v1/session`:
 * the API key typed at sign-in is sent once and never stored (not in localStorage, not in a
 * variable after the request), and scripts cannot read the cookie. Unsafe requests carry the
 * session's CSRF token (kept in memory only; re-read from `GET /v1/session` after a reload).
 */

/** @type {string | null} */
let csrf = null;

/** Answers worth another try: rate limited, or the server (or a proxy) briefly unavailable. */
const TRANSIENT = new Set([429, 502, 503, 504]);
export const RETRY = { attempts: 4, rateLimitedAttempts: 10, baseMs: 500, maxWaitMs: 20_000, timeoutMs: 30_000 };
/** The rate limit is per key, so one 429 pauses every request of this page until Retry-After. */
let pausedUntil = 0;

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * How long to wait before attempt `attempt + 1`: the server's Retry-After (seconds) when it
 * sent one, else exponential backoff with jitter; never more than RETRY.maxWaitMs.
 * @param {number} attempt 0-based @param {Response | null} response
 */
export function retryDelayMs(attempt, response) {
  const header = Number(response?.headers.get("Retry-After"));
  const backoff = RETRY.baseMs * 2 ** attempt * (0.75 + Math.random() / 2);
  return Math.min(RETRY.maxWaitMs, Number.isFinite(header) && header >= 0 && response?.headers.has("Retry-After")
    ? header * 1000 + Math.random() * 250 : backoff);
}

/**
 * `fetch` with a timeout (until the answer's headers) and retries: a network error, a timeout
 * or a 502/503/504 answer is tried again with backoff (`Retry-After` honoured), up to
 * RETRY.attempts times in all; a 429 up to RETRY.rateLimitedAttempts times, and it holds back
 * the page's other requests until its Retry-After. Unsafe methods are retried on 429 only
 * (nothing was done).
 * Resolves with the last answer (which may be an error status); rejects with an ApiError
 * `network_error` when no answer came.
 * @param {string} url @param {RequestInit} [init]
 * @returns {Promise<Response>}
 */
export async function fetchWithRetry(url, init = {}) {
  const safe = ["GET", "HEAD"].includes((init.method || "GET").toUpperCase());
  let limited = 0;
  for (let attempt = 0; ; attempt++) {
    if (pausedUntil > Date.now()) await sleep(pausedUntil - Date.now());
    const last = attempt - limited + 1 >= RETRY.attempts || limited + 1 >= RETRY.rateLimitedAttempts;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), RETRY.timeoutMs);
    /** @type {Response | null} */
    let response = null;
    try {
      response = await fetch(url, { credentials: "same-origin", cache: "no-store", ...init, signal: abort.signal });
    } catch (error) {
      if (last || !safe) {
        throw new ApiError(0, "network_error", abort.signal.aborted
          ? `No answer from the server within ${RETRY.timeoutMs / 1000} s.`
          : `The server could not be reached (${/** @type {Error} */ (error).message}).`);
      }
    } finally {
      clearTimeout(timer);
    }
    if (response && (last || !TRANSIENT.has(response.status) || (!safe && response.status !== 429))) return response;
    if (response) await response.body?.cancel().catch(() => {});
    const wait = retryDelayMs(attempt - limited, response);
    if (response?.status === 429) {
      limited++;
      pausedUntil = Math.max(pausedUntil, Date.now() + wait);
    }
    await sleep(wait);
  }
}

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
  const response = await fetchWithRetry(path, { method, headers, body });
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
