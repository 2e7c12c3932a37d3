// Hashes one part of a shared file, off the page's main thread: reads it in Blob.slice chunks,
// a few at once, and hashes every 512 KiB piece with the browser's SHA-1 (WebCrypto) or, where
// the page has no WebCrypto (a plain-http page that is not on localhost), with the peer's
// WebAssembly SHA-1. The page runs one such worker per core, each on its own part, so reading
// and hashing use every core. Message in: {file, start, end, engine, pieceSize} (`start` on a
// piece boundary; `engine` "webcrypto", "wasm", or "read-only" to time the reading alone). Out:
// {progress} (bytes done since the last), then {hashes} (20 bytes per piece, concatenated), or
// {error}.

import init, { FileHasher } from "./pkg/mtorrent_web_peer.js";

/** Pieces read at a time: Chromium reads a `File` much faster in large slices. */
const PIECES_PER_READ = 32;
/** Chunks read ahead while one is hashed. */
const READ_AHEAD = 2;

async function hashPart({ file, start, end, engine, pieceSize }) {
  const wasm = engine === "wasm" ? (await init(), new FileHasher()) : null;
  const hashes = new Uint8Array(Math.ceil((end - start) / pieceSize) * 20);
  const reads = [];
  let next = start;
  const readNext = () => {
    if (next >= end) return;
    const from = next;
    next = Math.min(end, from + PIECES_PER_READ * pieceSize);
    reads.push(file.slice(from, next).arrayBuffer().then((buffer) => ({ from, buffer })));
  };
  for (let i = 0; i < READ_AHEAD; i++) readNext();
  while (reads.length > 0) {
    const { from, buffer } = await reads.shift();
    readNext();
    if (wasm) {
      wasm.update(new Uint8Array(buffer));
    } else if (engine === "webcrypto") {
      const digests = [];
      for (let at = 0; at < buffer.byteLength; at += pieceSize) {
        const piece = new Uint8Array(buffer, at, Math.min(pieceSize, buffer.byteLength - at));
        digests.push(crypto.subtle.digest("SHA-1", piece));
      }
      const first = (from - start) / pieceSize;
      (await Promise.all(digests)).forEach((digest, i) => hashes.set(new Uint8Array(digest), 20 * (first + i)));
    }
    self.postMessage({ progress: buffer.byteLength });
  }
  return wasm ? wasm.finishHashes() : hashes;
}

self.onmessage = async ({ data }) => {
  try {
    const hashes = await hashPart(data);
    self.postMessage({ hashes }, [hashes.buffer]);
  } catch (e) {
    self.postMessage({ error: String(e.message ?? e) });
  }
};
