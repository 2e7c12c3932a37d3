// Checks a download's pieces and writes the good ones in place into a file of the Origin
// Private File System, through a synchronous access handle (which only a worker may hold).
// Messages in, each with an `id`: {open: {file, size}}, {write: {offset, blocks, sha1}} (write
// the piece made of `blocks`, in order, at `offset` if its SHA-1 is `sha1`), {close: true},
// and {abort: true} (let go of the file now; later writes fail). Out: {id} once done ({id,
// matched} for a write), {id, error}, or {fatal} if a message could not be read. Messages but
// `abort` are handled in the order they come.

let handle;

/** How long `open` waits for a stopped download of the same file to let go of it. */
const OPEN_PATIENCE_MS = 3000;

async function open({ file, size }) {
  const root = await navigator.storage.getDirectory();
  const entry = await root.getFileHandle(file, { create: true });
  for (let waited = 0; ; waited += 100) {
    try {
      handle = await entry.createSyncAccessHandle();
      break;
    } catch (e) {
      // A download of this file stopped a moment ago may still hold it.
      if (e.name !== "NoModificationAllowedError" || waited >= OPEN_PATIENCE_MS) throw e;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  // A fresh file of the full size: no old bytes, and no growing it piece by piece.
  handle.truncate(0);
  handle.truncate(size);
}

/** Where a piece's blocks are put together, reused from piece to piece. */
let assembly = new Uint8Array(0);

/** The piece made of `blocks`: the one block itself, or the blocks copied together. */
function pieceOf(blocks) {
  if (blocks.length === 1) return blocks[0];
  const length = blocks.reduce((sum, block) => sum + block.byteLength, 0);
  if (assembly.byteLength !== length) assembly = new Uint8Array(length);
  let at = 0;
  for (const block of blocks) {
    assembly.set(block, at);
    at += block.byteLength;
  }
  return assembly;
}

/** Writes the piece made of `blocks` at `offset` if its SHA-1 is `sha1`; whether it was. */
async function writeIfHashIs({ offset, blocks, sha1 }) {
  const data = pieceOf(blocks);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", data));
  if (!digest.every((byte, i) => byte === sha1[i])) return false;
  for (let done = 0; done < data.byteLength;) {
    done += handle.write(data.subarray(done), { at: offset + done });
  }
  return true;
}

/** Lets go of the file. Its bytes are not flushed to the disk first: the file is read at once
 * from the system's cache, and a download cut short by a power cut starts again anyway. */
function close() {
  handle.close();
  handle = undefined;
}

/** Lets go of the file at once, without flushing: the download failed. */
function abort() {
  handle?.close();
  handle = undefined;
}

let queue = Promise.resolve();

self.onmessage = ({ data }) => {
  if (data.abort) {
    abort();
    self.postMessage({ id: data.id });
    return;
  }
  // `open` is asynchronous: later messages wait for it.
  queue = queue.then(async () => {
    try {
      let matched;
      if (data.open) await open(data.open);
      else if (data.write) matched = await writeIfHashIs(data.write);
      else if (data.close) close();
      self.postMessage({ id: data.id, matched });
    } catch (e) {
      self.postMessage({ id: data.id, error: String(e.message ?? e) });
    }
  });
};

self.onmessageerror = () => self.postMessage({ fatal: "a piece could not be handed to the writer" });
