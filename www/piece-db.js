// Downloads kept in IndexedDB, for pages that have no Origin Private File System (a page that
// is not a secure context: plain http from another machine). Each verified piece is one record,
// a Blob, keyed by [download key, piece index]; a finished file is a Blob made of those Blobs,
// which the browser keeps on disk, so the file is never held in memory whole. A record per
// download says when it was last worked on, so a page can tell a download another tab is running
// from one a closed page left behind. Used by the page and by its writing worker.

const NAME = "mtorrent-downloads";
const PIECES = "pieces";
const DOWNLOADS = "downloads";

/** Resolves with an IDBRequest's result. */
const result = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

/** Resolves once a transaction has committed. */
const committed = (transaction) => new Promise((resolve, reject) => {
  transaction.oncomplete = () => resolve();
  transaction.onerror = () => reject(transaction.error);
  transaction.onabort = () => reject(transaction.error ?? new Error("the browser's storage refused the write"));
});

/** Every piece of download `key`. */
const piecesOf = (key) => IDBKeyRange.bound([key, 0], [key, Infinity]);

/** Opens the database, creating it on first use. */
export function openPieceDb() {
  const request = indexedDB.open(NAME, 1);
  request.onupgradeneeded = () => {
    request.result.createObjectStore(PIECES);
    request.result.createObjectStore(DOWNLOADS);
  };
  return result(request);
}

/** Starts download `key` afresh: no piece of an earlier try is kept. */
export function startDownload(db, key) {
  const transaction = db.transaction([PIECES, DOWNLOADS], "readwrite");
  transaction.objectStore(PIECES).delete(piecesOf(key));
  transaction.objectStore(DOWNLOADS).put({ touched: Date.now() }, key);
  return committed(transaction);
}

/** Stores verified pieces of download `key`, `[{index, blob}]`, in one transaction. */
export function putPieces(db, key, pieces) {
  // Relaxed durability: a piece lost to a power cut is fetched again, and the browser need not
  // flush the disk for every batch.
  const transaction = db.transaction([PIECES, DOWNLOADS], "readwrite", { durability: "relaxed" });
  const store = transaction.objectStore(PIECES);
  for (const { index, blob } of pieces) store.put(blob, [key, index]);
  transaction.objectStore(DOWNLOADS).put({ touched: Date.now() }, key);
  return committed(transaction);
}

/** Records that download `key` is still being worked on. */
export function touchDownload(db, key) {
  const transaction = db.transaction(DOWNLOADS, "readwrite");
  transaction.objectStore(DOWNLOADS).put({ touched: Date.now() }, key);
  return committed(transaction);
}

/** The file of `size` bytes made of download `key`'s pieces, in order, as a `File` named
 * `name` whose parts stay on disk. */
export async function storedFile(db, key, name, size) {
  const pieces = await result(db.transaction(PIECES).objectStore(PIECES).getAll(piecesOf(key)));
  const file = new File(pieces, name);
  if (file.size !== size) throw new Error(`the stored pieces hold ${file.size} bytes, not ${size}`);
  return file;
}

/** Deletes download `key`'s pieces and record. A `File` built from them before stays readable:
 * the browser keeps the bytes until nothing refers to them. */
export function discardDownload(db, key) {
  const transaction = db.transaction([PIECES, DOWNLOADS], "readwrite");
  transaction.objectStore(PIECES).delete(piecesOf(key));
  transaction.objectStore(DOWNLOADS).delete(key);
  return committed(transaction);
}

/** Deletes every download nobody has worked on for `maxAgeMs` (left by a page that closed);
 * resolves with how many. */
export async function discardAbandoned(db, maxAgeMs) {
  const store = db.transaction(DOWNLOADS).objectStore(DOWNLOADS);
  const [keys, records] = await Promise.all([result(store.getAllKeys()), result(store.getAll())]);
  const old = keys.filter((_, i) => !(Date.now() - records[i].touched < maxAgeMs));
  await Promise.all(old.map((key) => discardDownload(db, key)));
  return old.length;
}
