// Checks a download's pieces and writes the good ones in place into a file of the Origin
// Private File System, through a synchronous access handle (which only a worker may hold).
// Messages in, each with an `id`: {open: {file, size}}, {write: {offset, data, sha1}} (write
// `data` at `offset` if its SHA-1 is `sha1`), {close: true}. Out: {id} once done ({id,
// matched, buffer} for a write, handing `data`'s buffer back for reuse), or {id, error}.
// Messages are handled in the order they come.

let handle;

async function open({ file, size }) {
  const root = await navigator.storage.getDirectory();
  handle = await (await root.getFileHandle(file, { create: true })).createSyncAccessHandle();
  // A fresh file of the full size: no old bytes, and no growing it piece by piece.
  handle.truncate(0);
  handle.truncate(size);
}

/** Writes `data` at `offset` if its SHA-1 is `sha1`; whether it was. */
async function writeIfHashIs({ offset, data, sha1 }) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", data));
  if (!digest.every((byte, i) => byte === sha1[i])) return false;
  for (let done = 0; done < data.byteLength;) {
    done += handle.write(data.subarray(done), { at: offset + done });
  }
  return true;
}

function close() {
  handle.flush();
  handle.close();
  handle = undefined;
}

let queue = Promise.resolve();

self.onmessage = ({ data }) => {
  // `open` is asynchronous: later messages wait for it.
  queue = queue.then(async () => {
    try {
      if (data.write) {
        const matched = await writeIfHashIs(data.write);
        const { buffer } = data.write.data;
        self.postMessage({ id: data.id, matched, buffer }, [buffer]);
        return;
      }
      if (data.open) await open(data.open);
      else if (data.close) close();
      self.postMessage({ id: data.id });
    } catch (e) {
      self.postMessage({ id: data.id, error: String(e.message ?? e) });
    }
  });
};
