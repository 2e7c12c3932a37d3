// Checks a download's pieces and stores the good ones in IndexedDB (www/piece-db.js), for
// pages that are not a secure context and so have neither the Origin Private File System nor
// WebCrypto: pieces are hashed with the peer's WebAssembly SHA-1, four at a time, and good ones
// are stored in batches, one record each: up to BATCH_PIECES pieces, or what came within
// BATCH_MS. A piece is answered once it is checked, while fewer than BACKLOG_BYTES of checked
// pieces wait to commit; past that, answers wait for commits. So the download goes on while the
// browser stores, and the pieces held here stay bounded. Each batch, once committed, is read back
// and sliced into its pieces, so the file is ready as soon as the last batch has committed. The
// same messages as write-worker.js, each with an `id`: {open: {file, name, size, pieceSize}}
// (`file` is the download's key, `name` the file's), {write: {offset, blocks, sha1}} (store the
// piece made of `blocks`, in order, if its SHA-1 is `sha1`), {close: true} (once every stored
// piece has committed) and {abort: true} (later writes fail). Out: {id} once done ({id, matched}
// for a write, {id, file} for `close`: the finished `File`, whose parts stay on disk), {id,
// error}, or {fatal} (a piece could not be stored: the download fails).

import init, { piecesMatch } from "./pkg/mtorrent_web_peer.js";
import { fileOf, openPieceDb, putPieces, startDownload, storedPieces } from "./piece-db.js";

/** The most pieces stored in one record (16 MiB). */
const BATCH_PIECES = 32;
/** How long a batch waits for more pieces once it has one. Pieces are answered before they
 * are stored, so the wait holds up nothing; it lets a batch fill (32 pieces come in about
 * 170 ms at 100 MB/s), and the browser stores a few large Blobs with much less work per byte
 * than many small ones. */
const BATCH_MS = 200;
/** The most bytes of checked pieces not yet committed before answers wait for commits. */
const BACKLOG_BYTES = 64 << 20;
/** Pieces are checked four at a time, which the WebAssembly SHA-1 does in about half the time
 * of four one at a time; a piece waits at most CHECK_WAIT_MS for three more. */
const CHECK_GROUP = 4;
const CHECK_WAIT_MS = 20;

const ready = init();
let db, key, name, size, pieceBytes;
/** The stored pieces so far, by index: slices of the stored Blobs. */
let assembled = [];
/** The pieces waiting for the next transaction, and its commit. */
let batch;
/** Every transaction not yet committed. */
const pending = new Set();
/** Bytes of checked pieces not yet committed, and the answers waiting for room. */
let backlog = 0;
let held = [];
/** Why storing failed, once it has. */
let failure;
/** Pieces waiting to be checked: [{write, resolve, reject}], and the timer that checks them. */
let unchecked = [];
let checkTimer;

async function open({ file, name: fileName, size: fileSize, pieceSize }) {
  await ready;
  db = await openPieceDb();
  key = file;
  name = fileName;
  size = fileSize;
  pieceBytes = pieceSize;
  assembled = [];
  await startDownload(db, key);
}

/** Stores the piece made of `blocks` at `offset` if its SHA-1 is `sha1`; resolves with whether
 * it was, once the backlog has room for it. */
function writeIfHashIs(write) {
  if (failure) return Promise.reject(failure);
  if (!db) return Promise.reject(new Error("the download's storage is closed"));
  return new Promise((resolve, reject) => {
    unchecked.push({ write, resolve, reject });
    if (unchecked.length >= CHECK_GROUP) checkWaiting();
    else checkTimer ??= setTimeout(checkWaiting, CHECK_WAIT_MS);
  });
}

/** Checks the pieces waiting, and stores the good ones. */
function checkWaiting() {
  clearTimeout(checkTimer);
  checkTimer = undefined;
  const group = unchecked;
  unchecked = [];
  if (group.length === 0) return;
  let matched;
  try {
    const sha1s = new Uint8Array(group.length * 20);
    group.forEach(({ write }, i) => sha1s.set(write.sha1, i * 20));
    matched = piecesMatch(group.map(({ write }) => write.blocks), sha1s);
  } catch (e) {
    // The pieces cannot be checked: the download fails rather than waiting for them.
    for (const { reject } of group) reject(e);
    fail(new Error(`cannot check the pieces: ${e?.message ?? e}`));
    return;
  }
  group.forEach(({ write, resolve }, i) => resolve(matched[i] === 1 && store(write)));
}

/** Keeps the checked piece made of `blocks` at `offset`: pieces that come within BATCH_MS
 * share one transaction. Resolves with true once the backlog has room for it. */
function store({ offset, blocks }) {
  if (failure) return Promise.reject(failure);
  if (!db) return Promise.reject(new Error("the download's storage is closed"));
  if (!batch) {
    const pieces = [];
    let full;
    const stored = new Promise((resolve) => {
      full = resolve;
      setTimeout(resolve, BATCH_MS);
    }).then(() => {
      if (batch?.pieces === pieces) batch = undefined;
      if (!db) throw new Error("the download's storage is closed");
      const stored = putPieces(db, key, pieces);
      // The Blob holds the pieces' bytes now: their buffers go.
      for (const piece of pieces) piece.parts = undefined;
      return stored;
    }).then(async (recordKey) => {
      committed(pieces);
      for (const [index, piece] of await storedPieces(db, recordKey)) assembled[index] = piece;
    });
    batch = { pieces, stored, full };
    pending.add(stored);
    stored.catch((e) => fail(new Error(`the browser could not store the download: ${e?.message ?? e}`)))
      .finally(() => pending.delete(stored));
  }
  const bytes = blocks.reduce((sum, block) => sum + block.byteLength, 0);
  batch.pieces.push({ index: offset / pieceBytes, parts: blocks, bytes });
  backlog += bytes;
  if (batch.pieces.length >= BATCH_PIECES) {
    batch.full();
    batch = undefined;
  }
  if (backlog <= BACKLOG_BYTES) return Promise.resolve(true);
  return new Promise((resolve, reject) => held.push({ resolve: () => resolve(true), reject }));
}

/** A batch has committed: its bytes leave the backlog, and waiting answers go if there is room. */
function committed(pieces) {
  backlog -= pieces.reduce((sum, piece) => sum + piece.bytes, 0);
  if (backlog > BACKLOG_BYTES) return;
  for (const { resolve } of held) resolve();
  held = [];
}

/** Storing failed: every waiting answer fails, and the download worker hears it at once. */
function fail(error) {
  if (failure) return;
  failure = error;
  rejectWaiting();
  self.postMessage({ fatal: failure.message });
}

/** Fails every answer still waiting (for a check, or for room in the backlog) with `failure`. */
function rejectWaiting() {
  clearTimeout(checkTimer);
  checkTimer = undefined;
  for (const { reject } of [...held, ...unchecked]) reject(failure);
  held = [];
  unchecked = [];
}

/** Resolves, once every piece has committed, with the finished file. */
async function close() {
  checkWaiting();
  batch?.full();
  await Promise.all(pending);
  if (failure) throw failure;
  const file = fileOf(assembled, name, size);
  assembled = [];
  db.close();
  db = undefined;
  return file;
}

function abort() {
  failure ??= new Error("the download's storage is closed");
  rejectWaiting();
  assembled = [];
  db?.close();
  db = undefined;
}

let queue = Promise.resolve();

/** Answers message `id` once `work` settles, with what it resolved to under `field`. */
const answer = (id, work, field) => work.then(
  (value) => self.postMessage({ id, [field]: value }),
  (e) => self.postMessage({ id, error: String(e.message ?? e) }),
);

self.onmessage = ({ data }) => {
  if (data.abort) {
    abort();
    self.postMessage({ id: data.id });
  } else if (data.write) {
    // Checked at once, in order after `open`; answered once the backlog has room.
    queue = queue.then(() => { answer(data.id, new Promise((resolve) => resolve(writeIfHashIs(data.write))), "matched"); });
  } else {
    const work = queue.then(() => (data.open ? open(data.open) : close()));
    queue = work.catch(() => {});
    answer(data.id, work, "file");
  }
};

self.onmessageerror = () => self.postMessage({ fatal: "a piece could not be handed to the writer" });
