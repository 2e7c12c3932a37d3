// Downloads a file off the page's main thread: the browser peer runs here and receives every
// piece; a second worker checks each piece's SHA-1 and stores the good ones: write-worker.js
// (WebCrypto, in place into the Origin Private File System) or, on a page that is not a secure
// context, idb-write-worker.js (WebAssembly SHA-1, into IndexedDB). So receiving, and checking
// and writing, run on two cores, and the page stays responsive. Message in: {start: {document,
// file, storage}} (the .mtorrent's bytes, the private file's name or the download's IndexedDB
// key, and "opfs" or "indexeddb"); the page stops a download by ending this worker. Out:
// {event} (the peer's events), {done, file} (`file`: the finished `File` when the writer made it,
// as the IndexedDB one does), {error}.

import init, { BrowserPeer, MtorrentSummary, pieceSize } from "./pkg/mtorrent_web_peer.js";

/** The writing worker of each kind of storage. */
const WRITERS = { opfs: "write-worker.js", indexeddb: "idb-write-worker.js" };

const ready = init();
let peer;

/** The writing worker, as calls that resolve when it has done what was asked. */
function startWriter(storage) {
  const worker = new Worker(new URL(WRITERS[storage], import.meta.url), { type: "module" });
  const waiting = new Map();
  let next = 0;
  let failure;
  const fail = (error) => {
    failure ??= error;
    for (const { reject } of waiting.values()) reject(failure);
    waiting.clear();
  };
  worker.onmessage = ({ data }) => {
    if ("fatal" in data) return fail(new Error(data.fatal));
    const call = waiting.get(data.id);
    waiting.delete(data.id);
    if ("error" in data) call?.reject(new Error(data.error || "the writer failed"));
    else call?.resolve("file" in data ? data.file : data.matched);
  };
  worker.onerror = (event) => fail(new Error(`the writer stopped: ${event.message || "it could not start"}`));
  worker.onmessageerror = () => fail(new Error("the writer's answer could not be read"));
  const call = (message, transfer = []) => new Promise((resolve, reject) => {
    if (failure) return reject(failure);
    const id = next++;
    waiting.set(id, { resolve, reject });
    worker.postMessage({ id, ...message }, transfer);
  });
  return { call, terminate: () => worker.terminate() };
}

async function download({ document, file, storage }) {
  const summary = MtorrentSummary.parse(document);
  const size = summary.size;
  const name = summary.name;
  summary.free();
  const writer = startWriter(storage);
  // The writer opens its storage while the peer finds peers; it handles writes in order after
  // `open`.
  const opened = writer.call({ open: { file, name, size, pieceSize: pieceSize() } });
  try {
    const store = {
      read: () => Promise.reject(new Error("a download is read only once it is complete")),
      write: () => Promise.reject(new Error("writeIfHashIs is used")),
      // A piece's blocks move to the writer in the buffers they arrived in: this thread, which
      // receives them, copies none.
      writeIfHashIs: (offset, blocks, sha1) => writer.call({ write: { offset, blocks, sha1 } }, blocks.map((block) => block.buffer)),
    };
    await Promise.all([opened, peer.download(document, store)]);
    return await writer.call({ close: true });
  } catch (e) {
    // Let go of the file before the writer goes, so a new try can open it at once; an `open`
    // still under way would take it after the abort.
    await opened.catch(() => {});
    await writer.call({ abort: true }).catch(() => {});
    throw e;
  } finally {
    writer.terminate();
  }
}

self.onmessage = async (event) => {
  try {
    await ready;
    peer ??= new BrowserPeer((peerEvent) => self.postMessage({ event: peerEvent }));
    // The IndexedDB writer hands back the finished file; the page opens a private file itself.
    self.postMessage({ done: true, file: await download(event.data.start) });
  } catch (e) {
    self.postMessage({ error: String(e.message ?? e) });
  }
};
