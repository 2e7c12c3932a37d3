// Writes a download into the Origin Private File System with a synchronous access handle:
// writes land in place, at once, off the page's main thread (the page's own writable streams
// go through a temporary copy of the file). Messages: {open: name} → {opened}; {offset, data}
// (data transferred, not copied) → {written: offset} or {error}; {close} → {closed}.

let handle;

self.onmessage = async (event) => {
  const message = event.data;
  try {
    if (message.open) {
      const root = await navigator.storage.getDirectory();
      const file = await root.getFileHandle(message.open, { create: true });
      handle = await file.createSyncAccessHandle();
      handle.truncate(0);
      self.postMessage({ opened: true });
    } else if (message.close) {
      handle.flush();
      handle.close();
      handle = undefined;
      self.postMessage({ closed: true });
    } else {
      const data = new Uint8Array(message.data);
      let done = 0;
      while (done < data.byteLength) {
        done += handle.write(data.subarray(done), { at: message.offset + done });
      }
      self.postMessage({ written: message.offset });
    }
  } catch (e) {
    self.postMessage({ error: String(e.message ?? e) });
  }
};
