// The mtorrent page: a browser peer (the `shared` protocol core compiled to WebAssembly) that
// shares files and downloads them from native peers, and the list of files this tracker knows.

import init, { BrowserPeer, MtorrentSummary, buildMtorrent, pieceSize } from "./pkg/mtorrent_web_peer.js";
import { discard, discardAbandonedDownloads, downloadStorage, finishedFile, keepAlive, openWriter, storageLimit, storageName } from "./storage.js";

const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
/** At most this many workers hash a shared file, one per core. */
const MAX_HASH_WORKERS = 4;
/** How long a download waits without any peer before it says so. */
const NO_PEER_NOTICE_MS = 10000;

const $ = (id) => document.getElementById(id);

function humanSize(bytes) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

function setStatus(element, text, kind = "") {
  element.textContent = text;
  element.className = kind;
  element.dataset.state = kind;
}

/** Sends one message to the tracker and resolves with its reply. */
function ask(message) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl);
    const timer = setTimeout(() => { socket.close(); reject(new Error("the tracker did not answer")); }, 10000);
    socket.onopen = () => socket.send(JSON.stringify(message));
    socket.onmessage = (event) => { clearTimeout(timer); socket.close(); resolve(JSON.parse(event.data)); };
    socket.onerror = () => { clearTimeout(timer); reject(new Error("cannot reach the tracker")); };
  });
}

/** The two tracker URLs a new .mtorrent names: this tracker first, then its twin. A page
 * loaded over https names wss:// trackers only: it could not reach a ws:// one. */
async function trackerUrls() {
  try {
    const stats = await (await fetch("/stats")).json();
    const twin = stats.twin?.url ?? wsUrl;
    return [wsUrl, location.protocol === "https:" ? twin.replace(/^ws:\/\//i, "wss://") : twin];
  } catch {
    return [wsUrl, wsUrl];
  }
}

// A bug in the page or the peer must not pass silently.
window.addEventListener("error", (event) => setStatus($("page-status"), `Something went wrong: ${event.message}`, "error"));
window.addEventListener("unhandledrejection", (event) => setStatus($("page-status"), `Something went wrong: ${event.reason?.message ?? event.reason}`, "error"));

// --- The peer and its events ---

/** What each running file's panel wants to hear, by info hash. */
const listeners = new Map();
let peer;

/** The latest events, for whoever debugs the page (`mtorrentEvents` in the console). */
window.mtorrentEvents = [];

function onPeerEvent(event) {
  window.mtorrentEvents.push(event);
  if (window.mtorrentEvents.length > 50) window.mtorrentEvents.shift();
  const listener = event.info_hash ? listeners.get(event.info_hash) : undefined;
  if (listener) listener(event);
  else if (event.type === "warning") console.warn(event.message);
}

// --- Sharing ---

/** A row of the table of files this page shares: name, size, peers, bytes uploaded and the
 * link to save its .mtorrent. Returns the row, whose cells the file's events update. */
function sharedRow(file, summary, document_) {
  const row = document.createElement("tr");
  row.dataset.infoHash = summary.infoHash;
  const cells = {};
  for (const [key, text, numeric] of [["name", file.name, false], ["size", humanSize(file.size), true], ["peers", "0", true], ["uploaded", humanSize(0), true]]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    cell.className = numeric ? `number ${key}` : key;
    cells[key] = cell;
    row.append(cell);
  }
  const link = document.createElement("a");
  link.className = "button mtorrent";
  link.textContent = "Save the .mtorrent";
  link.setAttribute("aria-label", `Save ${file.name}.mtorrent`);
  link.href = URL.createObjectURL(new Blob([document_], { type: "application/json" }));
  link.download = `${file.name}.mtorrent`;
  link.dataset.document = document_;
  const actions = document.createElement("td");
  actions.append(link);
  row.append(actions);
  return { row, cells };
}

async function share(file) {
  const status = $("share-status");
  const progress = $("share-progress");
  progress.hidden = false;
  progress.value = 0;
  try {
    const [tracker1, tracker2] = await trackerUrls();
    const started = performance.now();
    const onProgress = (bytes) => {
      progress.value = file.size === 0 ? 1 : bytes / file.size;
      setStatus(status, `Hashing ${file.name}: ${Math.floor(progress.value * 100)}%`);
    };
    const document_ = await hashFile(file, tracker1, tracker2, onProgress, crypto.subtle ? "webcrypto" : "wasm");
    const seconds = (performance.now() - started) / 1000;
    const summary = MtorrentSummary.parse(new TextEncoder().encode(document_));
    const { row, cells } = sharedRow(file, summary, document_);
    const body = $("shared").querySelector("tbody");
    // Sharing the same file again replaces its row.
    body.querySelector(`tr[data-info-hash="${summary.infoHash}"]`)?.remove();
    const store = {
      read: async (offset, length) => new Uint8Array(await file.slice(offset, offset + length).arrayBuffer()),
      write: async () => { throw new Error("a shared file is never written"); },
    };
    listeners.set(summary.infoHash, (event) => {
      if (event.type === "progress") {
        cells.peers.textContent = event.peers;
        cells.uploaded.textContent = humanSize(event.uploaded);
      } else if (event.type === "warning") {
        // A peer going away is part of seeding: say it on the console, not as a failure.
        console.warn(`${file.name}: ${event.message}`);
      }
    });
    peer.seed(document_, store);
    body.append(row);
    $("shared").hidden = false;
    setStatus(status, `Seeding ${file.name} (${humanSize(file.size)}, hashed in ${seconds.toFixed(1)} s). Keep this page open while others download it.`, "seeding");
    status.dataset.seconds = String(seconds);
    showFiles();
  } catch (e) {
    setStatus(status, `Cannot share ${file.name}: ${e.message ?? e}`, "error");
  } finally {
    progress.hidden = true;
  }
}

/** Hashes `file` into its .mtorrent with one worker (www/hash-worker.js) per core, each on its
 * own run of pieces, so reading the file and hashing it use every core. `engine` is
 * "webcrypto" (the browser's SHA-1), "wasm" (the peer's own SHA-1, for pages without
 * WebCrypto) or "read-only" (reads without hashing, and returns no .mtorrent: the benchmark's
 * bound on hashing). */
async function hashFile(file, tracker1, tracker2, onProgress, engine) {
  const pieceBytes = pieceSize();
  const pieces = Math.ceil(file.size / pieceBytes);
  const workers = Math.max(1, Math.min(MAX_HASH_WORKERS, navigator.hardwareConcurrency || 2, pieces));
  const piecesEach = Math.ceil(pieces / workers);
  let done = 0;
  const started = [];
  const parts = Array.from({ length: workers }, (_, i) => new Promise((resolve, reject) => {
    const worker = new Worker("hash-worker.js", { type: "module" });
    started.push(worker);
    worker.onmessage = ({ data }) => {
      if (data.progress) onProgress((done += data.progress));
      else if (data.hashes) resolve(data.hashes);
      else reject(new Error(data.error));
    };
    worker.onerror = (event) => reject(new Error(event.message || "the hashing worker failed"));
    const start = Math.min(file.size, i * piecesEach * pieceBytes);
    const end = Math.min(file.size, (i + 1) * piecesEach * pieceBytes);
    worker.postMessage({ file, start, end, engine, pieceSize: pieceBytes });
  }));
  let hashes;
  try {
    hashes = await Promise.all(parts);
  } finally {
    // Done, or one part failed: every worker stops.
    for (const worker of started) worker.terminate();
  }
  if (engine === "read-only") return null;
  const all = new Uint8Array(pieces * 20);
  let at = 0;
  for (const part of hashes) {
    all.set(part, at);
    at += part.byteLength;
  }
  return buildMtorrent(file.name, file.size, all, tracker1, tracker2);
}

/** The page's hashing, for the browser benchmark and the tests. */
window.mtorrentHashing = { hashFile };

const dropZone = $("drop-zone");
$("share-file").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) share(file);
});
dropZone.addEventListener("dragover", (event) => { event.preventDefault(); dropZone.classList.add("dragging"); });
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  const [file] = event.dataTransfer.files;
  if (file) share(file);
});

// --- Downloading ---

/** Downloads `bytes` (a .mtorrent) in a worker, off the page's main thread, into the page's
 * storage under `key` (storage.js); the peer's events go to `onPeerEvent`. Returns {finished:
 * Promise<File> (the file, named `name`, of `size` bytes), stop}. */
function workerDownload(bytes, key, name, size) {
  const worker = new Worker("download-worker.js", { type: "module" });
  let stop;
  const finished = new Promise((resolve, reject) => {
    stop = () => { worker.terminate(); reject(new Error("the download was stopped")); };
    worker.onmessage = async (event) => {
      const message = event.data;
      if (message.event) {
        onPeerEvent(message.event);
      } else if (message.done) {
        worker.terminate();
        finishedFile(key, name, size, message.file).then(resolve, reject);
      } else if (message.error) {
        worker.terminate();
        reject(new Error(message.error));
      }
    };
    worker.onerror = (event) => { worker.terminate(); reject(new Error(event.message)); };
  });
  worker.postMessage({ start: { document: bytes, file: key, storage: downloadStorage } });
  return { finished, stop };
}

/** The same on the page's main thread, for browsers without module workers. */
function pageDownload(bytes, key, name, size) {
  let stopped = false;
  const infoHash = MtorrentSummary.parse(bytes).infoHash;
  const finished = (async () => {
    const writer = await openWriter(key, pieceSize());
    let queue = Promise.resolve();
    try {
      await peer.download(bytes, {
        read: () => Promise.reject(new Error("a download is read only once it is complete")),
        write: (offset, data) => (queue = queue.then(() => writer.write(offset, data))),
      });
      await queue;
      await writer.close();
      return finishedFile(key, name, size);
    } catch (e) {
      await writer.abort().catch(() => {});
      throw e;
    }
  })();
  return { finished, stop: () => { if (!stopped) { stopped = true; peer.stop(infoHash); } } };
}

let currentDownload;

async function download(bytes) {
  const status = $("download-status");
  const progress = $("download-progress");
  const warnings = $("download-warnings");
  $("download-save").hidden = true;
  warnings.replaceChildren();
  let summary;
  try {
    summary = MtorrentSummary.parse(bytes);
  } catch (e) {
    setStatus(status, e.message ?? String(e), "error");
    return;
  }
  currentDownload?.stop();
  const name = summary.name;
  const size = summary.size;
  setStatus(status, `Looking for peers that have ${name} (${humanSize(size)})…`, "downloading");
  progress.hidden = false;
  progress.value = 0;
  $("download-stats").hidden = false;
  const started = performance.now();
  let lastBytes = 0, lastTime = started, peers = 0, seenPeer = false;
  /** Peers of the tracker's latest reply this page cannot reach, and one line saying why. */
  let skipped = 0;
  const skippedNotice = document.createElement("li");
  const unreachableOnly = () => `None of the ${skipped} peer(s) that have ${name} can be reached from this page: ` +
    "it is loaded over https, and they accept only unencrypted ws:// connections. Waiting for a peer this page can reach…";
  const noPeerTimer = setInterval(() => {
    if (peers === 0 && performance.now() - lastTime > NO_PEER_NOTICE_MS) {
      setStatus(status, skipped > 0 ? unreachableOnly() : seenPeer
        ? `Lost the connection to every peer of ${name}; waiting for one to come back…`
        : `No peer has ${name} right now; waiting for one to come online…`, "waiting");
    }
  }, 1000);
  warnIfTooLarge(size, warnings);
  listeners.set(summary.infoHash, (event) => {
    if (event.type === "progress") {
      peers = event.peers;
      seenPeer ||= peers > 0;
      progress.value = size === 0 ? 1 : event.bytes / size;
      $("download-peers").textContent = peers;
      const now = performance.now();
      if (now - lastTime >= 500) {
        $("download-speed").textContent = `${humanSize(((event.bytes - lastBytes) * 1000) / (now - lastTime))}/s`;
        lastBytes = event.bytes;
        lastTime = now;
      }
      if (peers > 0 && status.dataset.state !== "saving" && status.dataset.state !== "done") setStatus(status, `Downloading ${name}: ${Math.floor(progress.value * 100)}% from ${peers} peer(s)`, "downloading");
    } else if (event.type === "swarm" && event.seeders === 0 && peers === 0) {
      setStatus(status, `No peer has ${name} right now; waiting for one to come online…`, "waiting");
    } else if (event.type === "unreachable") {
      skipped = event.skipped;
      skippedNotice.textContent = `Skipped ${skipped} peer(s) of ${name}: ${event.reason}.`;
      skippedNotice.className = "skipped";
      if (!skippedNotice.isConnected) warnings.append(skippedNotice);
      if (event.reachable === 0 && peers === 0) setStatus(status, unreachableOnly(), "waiting");
    } else if (event.type === "warning") {
      const item = document.createElement("li");
      item.textContent = event.message;
      warnings.append(item);
    }
  });
  const key = `${summary.infoHash}.part`;
  const run = (window.Worker ? workerDownload : pageDownload)(bytes, key, name, size);
  run.key = key;
  currentDownload = run;
  const stopKeepingAlive = keepAlive(key);
  try {
    const file = await run.finished;
    const seconds = (performance.now() - started) / 1000;
    const save = $("download-save");
    save.href = URL.createObjectURL(file);
    save.download = name;
    save.hidden = false;
    progress.value = 1;
    setStatus(status, `Downloaded ${name} (${humanSize(size)}) in ${seconds.toFixed(1)} s, every piece verified. Seeding it while this page is open.`, "done");
    status.dataset.seconds = String(seconds);
    // Every peer uploads: the page now seeds what it downloaded.
    const decoder = new TextDecoder();
    peer.seed(decoder.decode(bytes), {
      read: async (offset, length) => new Uint8Array(await file.slice(offset, offset + length).arrayBuffer()),
      write: async () => { throw new Error("a downloaded file is never written again"); },
    });
  } catch (e) {
    // A download replaced by another one says nothing.
    if (currentDownload === run) setStatus(status, `The download of ${name} stopped: ${e.message ?? e}`, "error");
    // What it stored goes, unless a new download of the same file now uses it.
    if (currentDownload === run || currentDownload?.key !== key) discard(key).catch(() => {});
  } finally {
    clearInterval(noPeerTimer);
    stopKeepingAlive();
  }
}

/** Adds a warning to `warnings` if a file of `size` bytes does not fit in what the browser lets
 * the page keep. */
async function warnIfTooLarge(size, warnings) {
  const limit = await storageLimit();
  if (limit && size > limit.quota - limit.usage) {
    const item = document.createElement("li");
    item.textContent = `This file (${humanSize(size)}) is larger than the ${humanSize(limit.quota - limit.usage)} this browser lets the page keep: the download will stop when that is full.`;
    warnings.append(item);
  }
}

/** Says where downloads are kept and how much the browser lets the page keep. */
async function showStorage() {
  const element = $("storage-status");
  const limit = await storageLimit();
  element.dataset.storage = downloadStorage;
  element.dataset.quota = limit ? String(limit.quota) : "";
  const why = downloadStorage === "indexeddb"
    ? " (this page is not a secure context, so it has no private file system, and checks pieces with its own SHA-1)"
    : "";
  const room = limit
    ? `this browser lets the page keep up to ${humanSize(limit.quota)} (${humanSize(limit.usage)} in use).`
    : "this browser does not say how much it lets the page keep.";
  element.textContent = `Downloads are kept in ${storageName}${why} until you save them; ${room}`;
}

$("download-mtorrent").addEventListener("change", async (event) => {
  const [file] = event.target.files;
  if (file) download(new Uint8Array(await file.arrayBuffer()));
});

// --- The tracker's files and statistics ---

async function fetchMtorrent(file) {
  const reply = await ask({ type: "get_metainfo", info_hash: file.info_hash });
  if (reply.type !== "metainfo") throw new Error(reply.message ?? "the tracker has no such file");
  return reply.metainfo;
}

async function saveMtorrent(file) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([await fetchMtorrent(file)], { type: "application/json" }));
  link.download = `${file.name}.mtorrent`;
  link.click();
  URL.revokeObjectURL(link.href);
}

function button(text, label, action) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = "secondary";
  element.textContent = text;
  element.setAttribute("aria-label", label);
  element.onclick = action;
  return element;
}

/** Most files the page lists. */
const MAX_LISTED = 10000;

async function showFiles() {
  const status = $("files-status");
  const table = $("files");
  const body = table.querySelector("tbody");
  try {
    // The tracker lists its catalog a page at a time; the page shows the first MAX_LISTED.
    const files = [];
    let after;
    do {
      const reply = await ask(after ? { type: "list_files", after } : { type: "list_files" });
      if (reply.type !== "files") throw new Error(reply.message ?? "unexpected reply");
      files.push(...reply.files);
      after = reply.next;
    } while (after && files.length < MAX_LISTED);
    body.replaceChildren(...files.map((file) => {
      const row = document.createElement("tr");
      row.dataset.infoHash = file.info_hash;
      for (const [text, numeric] of [[file.name, false], [humanSize(file.size), true], [file.seeders, true], [file.leechers, true]]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (numeric) cell.className = "number";
        row.append(cell);
      }
      const fail = (e) => setStatus(status, e.message ?? String(e), "error");
      const actions = document.createElement("td");
      actions.append(
        button("Download", `Download ${file.name}`, () => fetchMtorrent(file).then((doc) => download(new TextEncoder().encode(doc))).catch(fail)),
        " ",
        button("Save .mtorrent", `Save ${file.name}.mtorrent`, () => saveMtorrent(file).catch(fail)),
      );
      row.append(actions);
      return row;
    }));
    table.hidden = files.length === 0;
    const more = after ? ` (the first ${files.length}; the tracker has more)` : "";
    setStatus(status, files.length === 0 ? "No file is shared here yet." : `${files.length} file(s)${more}.`);
  } catch (e) {
    setStatus(status, `Cannot list files: ${e.message}`, "error");
  }
}

async function showStats() {
  const list = $("stats");
  try {
    const stats = await (await fetch("/stats")).json();
    const rows = [["Swarms", stats.swarms], ["Peers", stats.peers], ["Seeders", stats.seeders], ["Connections", stats.connections], ["Messages/s", stats.messages_per_second], ["Twin tracker", `${stats.twin.url ?? "none configured"} (link ${stats.twin.link})`]];
    list.replaceChildren(...rows.flatMap(([term, value]) => {
      const dt = document.createElement("dt"); dt.textContent = term;
      const dd = document.createElement("dd"); dd.textContent = value;
      return [dt, dd];
    }));
  } catch (e) {
    list.textContent = `Cannot read statistics: ${e.message}`;
  }
}

$("refresh").addEventListener("click", () => { showFiles(); showStats(); });
showFiles();
showStats();
showStorage();
// Pieces a closed page left in IndexedDB go.
discardAbandonedDownloads().catch((e) => console.warn(`cannot clean the stored downloads: ${e.message ?? e}`));

try {
  await init();
  peer = new BrowserPeer(onPeerEvent);
  setStatus($("page-status"), "Ready: this page is a peer.", "ready");
} catch (e) {
  setStatus($("page-status"), `This browser cannot run the peer: ${e.message ?? e}`, "error");
}
