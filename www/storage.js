// Where the page keeps what it downloads until the user saves it. A secure context (https, or
// http on this machine) has the Origin Private File System, written in place, and WebCrypto's
// SHA-1; any other page (plain http from another machine) has neither, and keeps verified pieces
// in IndexedDB (www/piece-db.js), checked with the peer's WebAssembly SHA-1. Either way the page
// says which, and how much the browser lets it keep.

import { discardAbandoned, discardDownload, openPieceDb, putPieces, startDownload, storedFile, touchDownload } from "./piece-db.js";

/** A download nobody has worked on for this long was left by a page that closed. */
const ABANDONED_AFTER_MS = 60000;
/** How often a running download says it is still worked on. */
const TOUCH_EVERY_MS = 10000;

/** "opfs" or "indexeddb": where this page keeps downloads. */
export const downloadStorage =
  self.isSecureContext && navigator.storage?.getDirectory && self.crypto?.subtle ? "opfs" : "indexeddb";

/** The storage's name, for people. */
export const storageName = downloadStorage === "opfs" ? "the Origin Private File System" : "IndexedDB";

/** How much the browser lets this page keep, and how much it keeps now: {quota, usage} in
 * bytes, or null if the browser does not say. Pages that are not a secure context have no
 * `navigator.storage`; Chromium tells them through its older `webkitTemporaryStorage`. */
export async function storageLimit() {
  try {
    if (navigator.storage?.estimate) {
      const { quota, usage } = await navigator.storage.estimate();
      if (Number.isFinite(quota)) return { quota, usage: usage ?? 0 };
    }
    if (navigator.webkitTemporaryStorage?.queryUsageAndQuota) {
      return await new Promise((resolve, reject) =>
        navigator.webkitTemporaryStorage.queryUsageAndQuota((usage, quota) => resolve({ quota, usage }), reject));
    }
  } catch {
    // The browser would not say.
  }
  return null;
}

let db;
const database = () => (db ??= openPieceDb());

/** A writer of download `key`, for a download on the page's main thread (where no worker
 * runs it): {write(offset, data), close(), abort()}, each returning a promise; writes complete
 * in order. Pieces are `pieceBytes` long. */
export async function openWriter(key, pieceBytes) {
  if (downloadStorage === "opfs") {
    const root = await navigator.storage.getDirectory();
    const handle = await root.getFileHandle(key, { create: true });
    const writable = await handle.createWritable({ keepExistingData: false });
    return {
      write: (offset, data) => writable.write({ type: "write", position: offset, data }),
      close: () => writable.close(),
      abort: () => writable.abort(),
    };
  }
  const pieces = await database();
  await startDownload(pieces, key);
  return {
    write: (offset, data) => putPieces(pieces, key, [{ index: offset / pieceBytes, parts: [data] }]),
    close: async () => {},
    abort: () => discardDownload(pieces, key),
  };
}

/** The finished download `key` (the private file's name, or the IndexedDB key) as a `File`
 * named `name` of `size` bytes, ready to save and to seed from: `built` if the writer made it,
 * else made here. Pieces in IndexedDB are deleted once the file is built: the browser keeps
 * their bytes while the page holds the file, and frees them when it closes. */
export async function finishedFile(key, name, size, built) {
  if (downloadStorage === "opfs") {
    const root = await navigator.storage.getDirectory();
    return (await root.getFileHandle(key)).getFile();
  }
  const file = built ?? await storedFile(await database(), key, name, size);
  // The file is ready now; its records go in the background.
  discardDownload(await database(), key).catch((e) => console.warn(`cannot delete the stored pieces: ${e.message ?? e}`));
  return file;
}

/** Deletes what a stopped or failed download `key` stored (in IndexedDB; a private file is
 * overwritten by the next download of the same file). */
export async function discard(key) {
  if (downloadStorage === "indexeddb") await discardDownload(await database(), key);
}

/** While download `key` runs, marks it as worked on, so that no other page takes it for
 * abandoned; returns the function that stops that. */
export function keepAlive(key) {
  if (downloadStorage !== "indexeddb") return () => {};
  const timer = setInterval(async () => touchDownload(await database(), key).catch(() => {}), TOUCH_EVERY_MS);
  return () => clearInterval(timer);
}

/** Deletes the pieces of downloads a closed page left behind; resolves with how many. */
export async function discardAbandonedDownloads() {
  if (downloadStorage !== "indexeddb") return 0;
  return discardAbandoned(await database(), ABANDONED_AFTER_MS);
}
