// @ts-check
/**
 * The original series' pixels, loaded progressively: the image shown first on its own, then the
 * rest in chunks ordered outward from it, a few requests at a time, each copied into one int16
 * stack `(n, rows, columns)` as it arrives (GET `pixels_url?start=&count=&layout=planes`, each
 * image's low bytes then its high bytes). The viewer draws an image as soon as it is in.
 */
import { fetchArray } from "./volume.js";

export const CHUNK = 24; // images per request after the first
export const PARALLEL = 3; // requests in flight

/**
 * Chunks `[start, count]` covering images 0 .. n - 1 except `first`, nearest to it first
 * (alternately after and before it). @param {number} n @param {number} first @param {number} chunk
 * @returns {number[][]}
 */
export function chunkOrder(n, first, chunk = CHUNK) {
  const after = [];
  for (let s = first + 1; s < n; s += chunk) after.push([s, Math.min(chunk, n - s)]);
  const before = [];
  for (let e = first; e > 0; e -= chunk) before.push([Math.max(0, e - chunk), Math.min(chunk, e)]);
  const out = [];
  for (let i = 0; i < Math.max(after.length, before.length); i++) {
    if (i < after.length) out.push(after[i]);
    if (i < before.length) out.push(before[i]);
  }
  return out;
}

/**
 * Interleave images laid out as byte planes (each image's low bytes, then its high bytes) into
 * int16 pixels. @param {Uint8Array} bytes `count * 2 * size` @param {number} count
 * @param {number} size rows * columns @param {Int16Array} into @param {number} offset first pixel
 */
export function joinPlanes(bytes, count, size, into, offset) {
  for (let i = 0; i < count; i++) {
    const base = i * 2 * size;
    const at = offset + i * size;
    for (let p = 0; p < size; p++) into[at + p] = bytes[base + p] | (bytes[base + size + p] << 8);
  }
}

export class SeriesLoader {
  /**
   * @param {import("./original.js").OriginalSeries} series
   * @param {number} first the stack index of the image shown first
   */
  constructor(series, first) {
    this.url = series.pixels_url;
    this.shape = [series.images.length, series.rows, series.columns];
    this.size = series.rows * series.columns;
    this.first = Math.max(0, Math.min(this.shape[0] - 1, first));
    this.pixels = new Int16Array(this.shape[0] * this.size);
    /** 1 where image k is in @type {Uint8Array} */
    this.loaded = new Uint8Array(this.shape[0]);
    this.count = 0;
    this.stopped = false;
    /** called with (start, count) as images arrive @type {(start: number, count: number) => void} */
    this.onImages = () => {};
    /** settles when every image is in (rejects with the first failure) @type {Promise<void>} */
    this.done = Promise.resolve();
  }

  get complete() {
    return this.count === this.shape[0];
  }

  /** Load the first image; the rest then loads in the background (`done`). */
  async start() {
    await this.fetchRange(this.first, 1);
    this.done = this.rest();
    this.done.catch(() => {}); // reported by whoever awaits it
    return this;
  }

  async rest() {
    const queue = chunkOrder(this.shape[0], this.first);
    const worker = async () => {
      while (queue.length && !this.stopped) {
        const [start, count] = /** @type {number[]} */ (queue.shift());
        await this.fetchRange(start, count);
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
  }

  /** @param {number} start @param {number} count */
  async fetchRange(start, count) {
    const array = await fetchArray(`${this.url}?start=${start}&count=${count}&layout=planes`);
    if (this.stopped) return;
    if (array.shape[0] !== count || array.shape[1] * array.shape[2] !== this.size) {
      throw new Error(`images ${start} to ${start + count - 1} came as ${array.shape.join(" x ")}`);
    }
    const bytes = new Uint8Array(array.data.buffer, array.data.byteOffset, array.data.byteLength);
    joinPlanes(bytes, count, this.size, this.pixels, start * this.size);
    this.loaded.fill(1, start, start + count);
    this.count += count;
    this.onImages(start, count);
  }

  /** Stop asking for more images (the viewer is gone). */
  stop() {
    this.stopped = true;
  }
}
