// @ts-check
/**
 * Fetch a viewer array: the gateway answers a raw DEFLATE stream of a NumPy `.npy` file, which
 * the browser inflates natively (DecompressionStream) straight into one preallocated buffer.
 */
import { ApiError, RETRY, fetchWithRetry, retryDelayMs, sleep } from "./api.js";

/**
 * @typedef {{data: Int16Array | Uint8Array, shape: number[]}} NdArray  C order, (z, y, x)
 */

/**
 * Fetch and parse an array; a transfer that breaks off midway is started again (with backoff)
 * like a failed request, up to RETRY.attempts times.
 * @param {string} url
 * @param {(fraction: number) => void} [onProgress]
 * @returns {Promise<NdArray>}
 */
export async function fetchArray(url, onProgress) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetchOnce(url, onProgress);
    } catch (error) {
      const broken = !(error instanceof ApiError); // the stream failed, not the request
      if (!broken || attempt + 1 >= RETRY.attempts) {
        throw broken ? new ApiError(0, "network_error", `The image transfer broke off (${/** @type {Error} */ (error).message}).`) : error;
      }
      await sleep(retryDelayMs(attempt, null));
    }
  }
}

/** @param {string} url @param {(fraction: number) => void} [onProgress] @returns {Promise<NdArray>} */
async function fetchOnce(url, onProgress) {
  const response = await fetchWithRetry(url);
  if (!response.ok || !response.body) {
    let detail = "";
    try {
      detail = (await response.json()).detail || "";
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, "array_unavailable",
      `The images could not be loaded (HTTP ${response.status}${detail ? `: ${detail}` : ""}).`);
  }
  const expected = Number(response.headers.get("X-LungCAD-Inflated-Length")) || 0;
  const stream = response.body.pipeThrough(new DecompressionStream("deflate-raw"));
  const reader = stream.getReader();
  let buffer = new Uint8Array(expected || 1 << 20);
  let used = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (used + value.length > buffer.length) {
      const bigger = new Uint8Array(Math.max(buffer.length * 2, used + value.length));
      bigger.set(buffer.subarray(0, used));
      buffer = bigger;
    }
    buffer.set(value, used);
    used += value.length;
    if (onProgress && expected) onProgress(used / expected);
  }
  return parseNpy(buffer.subarray(0, used));
}

/**
 * Parse a `.npy` (format 1-3) holding little-endian int16 or uint8 in C order.
 * @param {Uint8Array} bytes
 * @returns {NdArray}
 */
export function parseNpy(bytes) {
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== "NUMPY") throw new Error("not a .npy array");
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] || "";
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (fortran || shape.length !== 3) throw new Error(`unsupported array layout: ${header}`);
  const offset = bytes.byteOffset + start + headerLen;
  const count = shape[0] * shape[1] * shape[2];
  if (descr === "<i2") {
    // Aligned: numpy pads the header so the data starts on a 64-byte boundary.
    const aligned = offset % 2 === 0 ? bytes.buffer : bytes.slice(start + headerLen).buffer;
    return { data: new Int16Array(aligned, offset % 2 === 0 ? offset : 0, count), shape };
  }
  if (descr === "|u1" || descr === "<u1") return { data: new Uint8Array(bytes.buffer, offset, count), shape };
  throw new Error(`unsupported dtype ${descr}`);
}
