// Downloads a file off the page's main thread: the browser peer runs here, receives every
// piece, and writes it in place into the Origin Private File System with a synchronous access
// handle, so the page stays responsive. Messages in: {start: {document, file}} (the .mtorrent's
// bytes, the private file's name), {stop: infoHash}. Out: {event} (the peer's events), {done},
// {error}.

import init, { BrowserPeer } from "./pkg/mtorrent_web_peer.js";

const ready = init();
let peer;

async function download({ document, file }) {
  const root = await navigator.storage.getDirectory();
  const handle = await (await root.getFileHandle(file, { create: true })).createSyncAccessHandle();
  try {
    handle.truncate(0);
    const store = {
      read: () => Promise.reject(new Error("a download is read only once it is complete")),
      writeNow: (offset, data) => {
        for (let done = 0; done < data.byteLength;) {
          done += handle.write(data.subarray(done), { at: offset + done });
        }
      },
      write: () => Promise.reject(new Error("writeNow is used")),
    };
    await peer.download(document, store);
    handle.flush();
  } finally {
    handle.close();
  }
}

self.onmessage = async (event) => {
  try {
    await ready;
    peer ??= new BrowserPeer((peerEvent) => self.postMessage({ event: peerEvent }));
    if (event.data.start) {
      await download(event.data.start);
      self.postMessage({ done: true });
    } else if (event.data.stop) {
      peer.stop(event.data.stop);
    }
  } catch (e) {
    self.postMessage({ error: String(e.message ?? e) });
  }
};
