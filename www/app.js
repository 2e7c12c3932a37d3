// The tracker's page: lists the files shared through this tracker (over the tracker's own
// WebSocket protocol) and offers each one's .mtorrent, and shows the tracker's statistics.

const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

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

function humanSize(bytes) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

async function saveMtorrent(file) {
  const reply = await ask({ type: "get_metainfo", info_hash: file.info_hash });
  if (reply.type !== "metainfo") throw new Error(reply.message ?? "the tracker has no such file");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([reply.metainfo], { type: "application/json" }));
  link.download = `${file.name}.mtorrent`;
  link.click();
  URL.revokeObjectURL(link.href);
}

async function showFiles() {
  const status = document.getElementById("files-status");
  const table = document.getElementById("files");
  const body = table.querySelector("tbody");
  try {
    const reply = await ask({ type: "list_files" });
    if (reply.type !== "files") throw new Error(reply.message ?? "unexpected reply");
    body.replaceChildren(...reply.files.map((file) => {
      const row = document.createElement("tr");
      for (const [text, numeric] of [[file.name, false], [humanSize(file.size), true], [file.seeders, true], [file.leechers, true]]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (numeric) cell.className = "number";
        row.append(cell);
      }
      const action = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary";
      button.textContent = "Save .mtorrent";
      button.setAttribute("aria-label", `Save ${file.name}.mtorrent`);
      button.onclick = () => saveMtorrent(file).catch((e) => { status.textContent = e.message; status.className = "error"; });
      action.append(button);
      row.append(action);
      return row;
    }));
    table.hidden = reply.files.length === 0;
    status.className = "";
    status.textContent = reply.files.length === 0 ? "No file is shared here yet." : `${reply.files.length} file(s).`;
  } catch (e) {
    status.className = "error";
    status.textContent = `Cannot list files: ${e.message}`;
  }
}

async function showStats() {
  const list = document.getElementById("stats");
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

document.getElementById("refresh").addEventListener("click", () => { showFiles(); showStats(); });
showFiles();
showStats();
