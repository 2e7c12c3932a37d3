// Downloads kept in IndexedDB, for pages that have no Origin Private File System (a page that
// is not a secure context: plain http from another machine). Verified pieces are stored a batch
// at a time: one record per batch, keyed by [download key, its first piece's index], holding one
// Blob of the batch's pieces and where each is in it (the browser stores fewer, larger Blobs
// much faster than one per piece). A finished file is a Blob made of slices of those Blobs,
// which the browser keeps on disk, so the file is never held in memory whole: the writing worker
// slices each record as it commits, so the file is ready when the last one has. A record per
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

/** Stores verified pieces of download `key`, `[{index, parts}]` (`parts`: the piece's bytes, as
 * Blob parts), as one record, in one transaction; resolves, once it has committed, with the
 * record's key. */
export async function putPieces(db, key, pieces) {
  const blob = new Blob(pieces.flatMap((piece) => piece.parts));
  const lengths = pieces.map((piece) => piece.parts.reduce((sum, part) => sum + (part.byteLength ?? part.size), 0));
  const record = { blob, indexes: pieces.map((piece) => piece.index), lengths };
  const recordKey = [key, Math.min(...record.indexes)];
  // Relaxed durability: a piece lost to a power cut is fetched again, and the browser need not
  // flush the disk for every batch.
  const transaction = db.transaction([PIECES, DOWNLOADS], "readwrite", { durability: "relaxed" });
  transaction.objectStore(PIECES).put(record, recordKey);
  transaction.objectStore(DOWNLOADS).put({ touched: Date.now() }, key);
  await committed(transaction);
  return recordKey;
}

/** The pieces of the stored record at `recordKey`, as `[index, Blob]` pairs: slices of the
 * stored Blob, which stay on disk. */
export async function storedPieces(db, recordKey) {
  const record = await result(db.transaction(PIECES).objectStore(PIECES).get(recordKey));
  if (!record) throw new Error("a stored record is missing");
  return slices(record);
}

/** A record's pieces, as `[index, Blob]` pairs. */
function slices({ blob, indexes, lengths }) {
  let at = 0;
  return indexes.map((index, i) => {
    const piece = [index, blob.slice(at, at + lengths[i])];
    at += lengths[i];
    return piece;
  });
}

/** `pieces` (Blobs, in order) as a `File` named `name`, which must hold `size` bytes. */
export function fileOf(pieces, name, size) {
  if (pieces.includes(undefined)) throw new Error("a stored piece is missing");
  const file = new File(pieces, name);
  if (file.size !== size) throw new Error(`the stored pieces hold ${file.size} bytes, not ${size}`);
  return file;
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
  const records = await result(db.transaction(PIECES).objectStore(PIECES).getAll(piecesOf(key)));
  const pieces = [];
  for (const record of records) {
    for (const [index, piece] of slices(record)) pieces[index] = piece;
  }
  return fileOf(pieces, name, size);
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
