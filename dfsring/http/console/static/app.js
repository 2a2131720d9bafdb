// The dfsring console: one module, no build step, no third-party code. It talks only to the
// node that served it, with the session cookie (HttpOnly) and, on changing requests, the
// X-Csrf-Token header read from the dfs_csrf cookie (double submit). What the key may not do
// is hidden here and refused by the server anyway.

const POLL_MS = 2000;          // the cluster page's bounded polling rate
const HISTORY = 90;            // chart points kept (three minutes)
const ROLES = { read: 1, write: 2, owner: 3 };
const $ = (sel, root = document) => root.querySelector(sel);
const state = { me: null, page: "", bucket: "", prefix: "", history: [], timer: 0, buckets: [] };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : String(c));
  return node;
}

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)dfs_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

function say(text, error = false) {
  const s = $("#status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

class ApiError extends Error {
  constructor(status, doc) {
    super(doc && (doc.detail || doc.title) ? `${doc.title || "Error"}: ${doc.detail || ""} (${status})` : `HTTP ${status}`);
    this.status = status;
    this.doc = doc;
  }
}

async function api(method, path, { body, headers = {}, raw = false, accept = [200, 201, 202, 204] } = {}) {
  const h = { ...headers };
  if (method !== "GET" && method !== "HEAD") h["X-Csrf-Token"] = csrf();
  if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
    h["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers: h, body, credentials: "same-origin" });
  if (resp.status === 401 && state.me) { state.me = null; show("login"); }
  if (!accept.includes(resp.status)) {
    let doc = null;
    try { doc = await resp.json(); } catch { /* not JSON */ }
    throw new ApiError(resp.status, doc);
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

const enc = (s) => s.split("/").map(encodeURIComponent).join("/");
const fileUrl = (bucket, path) => `/v1/files/${encodeURIComponent(bucket)}/${enc(path)}`;

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function seconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function role(bucket) {
  if (!state.me) return 0;
  if (state.me.admin) return 3;
  return ROLES[state.me.grants[bucket]] || 0;
}

// Hide what the key may not do: [data-needs=admin] and, per bucket, [data-needs=write].
function applyNeeds() {
  for (const node of document.querySelectorAll("[data-needs]")) {
    const need = node.dataset.needs;
    node.hidden = need === "admin" ? !(state.me && state.me.admin) : role(state.bucket) < ROLES[need];
  }
}

// --- pages -----------------------------------------------------------------------------------

const PAGES = ["login", "cluster", "files", "kv", "admin"];

function show(page) {
  for (const p of PAGES) $(`#page-${p}`).hidden = p !== page;
  $("#nav").hidden = page === "login";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  state.page = page;
  clearTimeout(state.timer);
  if (page === "cluster") pollCluster();
  if (page === "files") loadBuckets();
  if (page === "admin") loadKeys();
  if (page === "login") $("#login-access").focus();
  applyNeeds();
}

function route() {
  const page = (location.hash || "#cluster").slice(1);
  if (!state.me) return show("login");
  if (page === "admin" && !state.me.admin) return show("cluster");
  show(PAGES.includes(page) && page !== "login" ? page : "cluster");
}

async function start() {
  try {
    state.me = await api("GET", "/v1/console/session");
    $("#who").textContent = `${state.me.access_key}${state.me.admin ? " (admin)" : ""} on ${state.me.node_id}`;
  } catch {
    state.me = null;
  }
  route();
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#login-error").textContent = "";
  try {
    await api("POST", "/v1/console/login", {
      body: { access_key: $("#login-access").value.trim(), secret_key: $("#login-secret").value } });
    $("#login-secret").value = "";
    await start();
  } catch (err) {
    $("#login-error").textContent = err.status === 401 ? "Those credentials were not accepted." : err.message;
  }
});

$("#logout").addEventListener("click", async () => {
  try { await api("POST", "/v1/console/logout"); } catch { /* gone anyway */ }
  state.me = null;
  show("login");
});

window.addEventListener("hashchange", route);

// --- cluster ---------------------------------------------------------------------------------

const CHARTS = [
  ["requests_per_s", "Requests/s", (v) => v.toFixed(1)],
  ["p99_ms", "p99 latency", (v) => `${v.toFixed(0)} ms`],
  ["bytes_in_per_s", "Bytes in/s", bytes],
  ["bytes_out_per_s", "Bytes out/s", bytes],
  ["repairs_per_s", "Repairs/s", (v) => v.toFixed(2)],
];

function drawCharts() {
  const box = $("#charts");
  box.replaceChildren();
  for (const [key, title, fmt] of CHARTS) {
    const values = state.history.map((t) => t[key] ?? 0);
    const last = state.history.length ? state.history[state.history.length - 1][key] : null;
    const max = Math.max(1e-9, ...values);
    const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * 100},${30 - (v / max) * 28}`).join(" ");
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 100 30");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${title} over the last ${values.length} samples`);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts);
    svg.append(line);
    box.append(el("div", { class: "chart" }, el("div", {}, title),
      el("div", { class: "value" }, last === null || last === undefined ? "–" : fmt(last)), svg));
  }
}

function memberRow(m) {
  const f = m.figures || {};
  const disk = f.disk ? `${bytes(f.disk.used)} of ${bytes(f.disk.total)}` : "–";
  return el("tr", { "data-node": m.node_id },
    el("th", { scope: "row" }, m.node_id, m.self ? " (this node)" : ""),
    el("td", {}, el("span", { class: `badge ${m.status}`, "data-liveness": m.status }, m.status)),
    el("td", {}, m.zone || "–"), el("td", {}, m.partitions),
    el("td", {}, f.keys ?? "–"), el("td", {}, disk), el("td", {}, f.hints_pending ?? "–"),
    el("td", {}, seconds(f.repair_age_s)), el("td", {}, m.error || ""),
    el("td", {}, memberActions(m)));
}

// Admin only: this node may leave; a member down in this node's view may be removed. Both
// only request a change (202); the transfers it starts show below.
function memberActions(m) {
  if (!(state.me && state.me.admin) || !m.in_ring) return "";
  if (m.self) {
    return el("button", { type: "button", class: "danger", "aria-label": `Leave: make ${m.node_id} leave the cluster`,
      onclick: () => changeMember(`Make ${m.node_id} leave? Its data is handed off first.`, "/v1/cluster/leave") }, "Leave");
  }
  if (m.liveness !== "down") return "";
  return el("button", { type: "button", class: "danger", "aria-label": `Remove ${m.node_id}`,
    onclick: () => changeMember(`Remove ${m.node_id}? Its data is re-replicated; the id cannot come back.`,
      `/v1/cluster/remove/${encodeURIComponent(m.node_id)}`) }, "Remove");
}

async function changeMember(question, path) {
  if (!window.confirm(question)) return;
  try {
    await api("POST", path);
    say("Requested; the transfers it starts show below.");
  } catch (err) {
    say(`Refused: ${err.message}`, true);
  }
}

function transferBlock(m) {
  const t = m.figures && m.figures.transfers;
  if (!t || !t.incoming || !t.incoming.partitions_total) return null;
  const inc = t.incoming;
  return el("div", {},
    el("label", { for: `tr-${m.node_id}` }, `${m.node_id}: ${inc.partitions_done}/${inc.partitions_total} partitions, ` +
      `${bytes(inc.bytes_done)} at ${bytes(inc.bytes_per_s)}/s, ETA ${seconds(inc.eta_s)}`),
    el("progress", { id: `tr-${m.node_id}`, max: inc.partitions_total, value: inc.partitions_done }));
}

async function pollCluster() {
  if (state.page !== "cluster") return;
  try {
    const d = await api("GET", "/v1/cluster/dashboard");
    state.history.push(d.totals);
    if (state.history.length > HISTORY) state.history.shift();
    $("#ring-line").textContent = `Ring epoch ${d.ring.epoch}, ${d.ring.partitions} partitions, ` +
      `${d.ring.in_transition ? "in transition" : "settled"}; ${d.liveness.up} up, ` +
      `${d.liveness.suspect} suspect, ${d.liveness.down} down.`;
    $("#members tbody").replaceChildren(...d.members.map(memberRow));
    const blocks = d.members.map(transferBlock).filter(Boolean);
    $("#transfers").replaceChildren(...(blocks.length ? blocks : [el("p", {}, "None.")]));
    drawCharts();
    say(`Updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    say(`The dashboard could not be read: ${err.message}`, true);
  }
  if (state.page === "cluster") state.timer = setTimeout(pollCluster, document.hidden ? POLL_MS * 5 : POLL_MS);
}

// --- files -----------------------------------------------------------------------------------

async function loadBuckets() {
  try {
    const doc = await api("GET", "/v1/console/buckets");
    state.buckets = doc.buckets.map((b) => b.name);
  } catch (err) {
    say(`Buckets could not be listed: ${err.message}`, true);
  }
  const sel = $("#bucket-select");
  sel.replaceChildren(...state.buckets.map((b) => el("option", { value: b }, b)));
  if (state.bucket && state.buckets.includes(state.bucket)) sel.value = state.bucket;
  state.bucket = sel.value || "";
  await listFiles();
}

$("#bucket-select").addEventListener("change", () => {
  state.bucket = $("#bucket-select").value;
  state.prefix = "";
  listFiles();
});

$("#bucket-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("#bucket-new").value.trim();
  if (!name) return;
  try {
    await api("PUT", `/v1/buckets/${encodeURIComponent(name)}`, { body: {} });
    $("#bucket-new").value = "";
    state.bucket = name;
    state.prefix = "";
    say(`Bucket ${name} created.`);
    await loadBuckets();
  } catch (err) {
    say(`The bucket could not be created: ${err.message}`, true);
  }
});

function crumbs() {
  const parts = state.prefix.split("/").filter(Boolean);
  const nav = $("#crumbs");
  const link = (label, prefix) => el("button", { type: "button", class: "secondary",
    onclick: () => { state.prefix = prefix; listFiles(); } }, label);
  const items = [link(state.bucket || "(no bucket)", "")];
  parts.forEach((p, i) => items.push(" / ", link(p, parts.slice(0, i + 1).join("/") + "/")));
  nav.replaceChildren(...items);
}

async function listFiles() {
  applyNeeds();
  crumbs();
  const body = $("#files tbody");
  if (!state.bucket) { body.replaceChildren(); return; }
  let files = [];
  try {
    let cursor = null;
    for (let page = 0; page < 10; page++) {  // at most 10 000 entries per folder view
      const q = new URLSearchParams({ prefix: state.prefix, limit: "1000" });
      if (cursor) q.set("cursor", cursor);
      const doc = await api("GET", `/v1/files/${encodeURIComponent(state.bucket)}?${q}`);
      files = files.concat(doc.files);
      cursor = doc.cursor;
      if (!cursor) break;
    }
  } catch (err) {
    say(`Files could not be listed: ${err.message}`, true);
    body.replaceChildren();
    return;
  }
  const folders = new Set();
  const rows = [];
  for (const f of files) {
    const rest = f.path.slice(state.prefix.length);
    const slash = rest.indexOf("/");
    if (slash >= 0) { folders.add(rest.slice(0, slash + 1)); continue; }
    rows.push(fileRow(f, rest));
  }
  const folderRows = [...folders].sort().map((d) => el("tr", {},
    el("th", { scope: "row" }, el("button", { type: "button", class: "secondary",
      onclick: () => { state.prefix += d; listFiles(); } }, `📁 ${d}`)),
    el("td", {}, "–"), el("td", {}, "–"), el("td", {})));
  body.replaceChildren(...folderRows, ...rows);
}

function fileRow(f, name) {
  const url = fileUrl(state.bucket, f.path);
  const actions = [el("a", { class: "button secondary", href: url, download: name, "aria-label": `Download ${name}` }, "Download"),
    " ", el("button", { type: "button", class: "secondary", "aria-label": `Versions of ${name}`, onclick: () => showVersions(f.path) }, "Versions")];
  if (role(state.bucket) >= ROLES.write) {
    actions.push(" ", el("button", { type: "button", class: "danger", "aria-label": `Delete ${name}`, onclick: () => deleteFile(f.path) }, "Delete"));
  }
  return el("tr", { "data-path": f.path }, el("th", { scope: "row" }, name), el("td", {}, bytes(f.size)),
    el("td", {}, f.modified), el("td", {}, actions));
}

async function deleteFile(path) {
  if (!window.confirm(`Delete ${path}? Its older versions stay available.`)) return;
  try {
    await api("DELETE", fileUrl(state.bucket, path));
    say(`${path} deleted.`);
    await listFiles();
  } catch (err) {
    say(`${path} could not be deleted: ${err.message}`, true);
  }
}

async function showVersions(path) {
  const box = $("#versions");
  try {
    const doc = await api("GET", `${fileUrl(state.bucket, path)}?versions`);
    $("#versions-title").textContent = `Versions of ${path}`;
    $("#versions-list").replaceChildren(...doc.versions.map((v) => {
      const href = `${fileUrl(state.bucket, path)}?version=${encodeURIComponent(v.version)}`;
      const item = el("li", { "data-version": v.version },
        `${v.modified} — ${v.deleted ? "deleted" : bytes(v.size)}${v.current ? " (current)" : ""} `);
      if (!v.deleted) {
        item.append(el("a", { class: "button secondary", href, download: path.split("/").pop() }, "Download"), " ",
          el("button", { type: "button", class: "secondary", "aria-label": `Chunks of the version of ${v.modified}`,
            onclick: () => showChunks(path, v.version) }, "Chunks"));
        if (!v.current && role(state.bucket) >= ROLES.write) {
          item.append(" ", el("button", { type: "button", onclick: () => restore(path, href) }, "Restore"));
        }
      }
      return item;
    }));
    box.hidden = false;
    $("#versions-close").focus();
  } catch (err) {
    say(`Versions could not be read: ${err.message}`, true);
  }
}

$("#versions-close").addEventListener("click", () => { $("#versions").hidden = true; $("#chunkmap").hidden = true; });

// Metadata and chunk map of one version: which chunks, their owners, and their health as
// this node sees it (owners up, and whether this node holds a copy).
async function showChunks(path, version) {
  try {
    const q = new URLSearchParams({ version });
    const d = await api("GET", `/v1/console/chunks/${encodeURIComponent(state.bucket)}/${enc(path)}?${q}`);
    const meta = Object.entries(d.metadata).map(([k, v]) => `${k}=${v}`).join(", ") || "none";
    $("#chunkmap-summary").textContent = `${path}: ${bytes(d.size)}, ${d.content_type}, SHA-256 ${d.sha256}, ` +
      `metadata: ${meta}; ${d.inline ? "stored inline (no chunks)" : `${d.chunks_total} chunks, ${d.replicas} replicas each`}` +
      `${d.chunks.length < d.chunks_total ? ` (first ${d.chunks.length} shown)` : ""}.`;
    $("#chunkmap tbody").replaceChildren(...d.chunks.map((c) => el("tr", {},
      el("th", { scope: "row" }, c.index), el("td", {}, el("code", {}, c.digest.slice(0, 16))),
      el("td", {}, bytes(c.size)), el("td", {}, c.owners.join(", ")),
      el("td", {}, `${c.owners_up} of ${c.owners.length} up${c.owners_up < c.owners.length ? " ⚠" : ""}`),
      el("td", {}, c.here ? "yes" : "no"))));
    $("#chunkmap").hidden = false;
  } catch (err) {
    say(`The chunk map could not be read: ${err.message}`, true);
  }
}

// Restore = write the old version's bytes as the newest version (history is kept).
async function restore(path, href) {
  try {
    const resp = await api("GET", href, { raw: true });
    const blob = await resp.blob();
    await api("PUT", fileUrl(state.bucket, path), { body: blob,
      headers: { "Content-Type": resp.headers.get("Content-Type") || "application/octet-stream" } });
    say(`${path} restored.`);
    await listFiles();
    await showVersions(path);
  } catch (err) {
    say(`${path} could not be restored: ${err.message}`, true);
  }
}

function upload(file, path) {
  const li = el("li", { "data-upload": path });
  const bar = el("progress", { max: file.size || 1, value: 0, "aria-label": `Upload of ${path}` });
  const text = el("span", { class: "help" }, "starting…");
  const xhr = new XMLHttpRequest();
  const cancel = el("button", { type: "button", class: "secondary", onclick: () => xhr.abort() }, `Cancel ${file.name}`);
  li.append(el("span", {}, path), el("span", {}, bar, " ", text), cancel);
  $("#uploads").append(li);
  const started = performance.now();
  return new Promise((resolve) => {
    xhr.upload.onprogress = (ev) => {
      const secs = (performance.now() - started) / 1000;
      const rate = ev.loaded / Math.max(secs, 0.001);
      bar.value = ev.loaded;
      if (ev.loaded > 0 && ev.loaded < ev.total) li.dataset.partial = "seen";  // the bar moved
      text.textContent = `${bytes(ev.loaded)} of ${bytes(ev.total)}, ${bytes(rate)}/s, ETA ${seconds((ev.total - ev.loaded) / Math.max(rate, 1))}`;
    };
    const done = (outcome) => {
      cancel.remove();
      li.dataset.state = outcome;
      resolve(outcome);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        bar.value = bar.max;
        const secs = (performance.now() - started) / 1000;
        li.dataset.seconds = secs.toFixed(3);
        text.textContent = `done: ${bytes(file.size)} in ${secs.toFixed(1)} s (${bytes(file.size / Math.max(secs, 0.001))}/s)`;
        done("done");
      } else {
        let why = `HTTP ${xhr.status}`;
        try { const d = JSON.parse(xhr.responseText); why = `${d.title}: ${d.detail || ""} (${xhr.status})`; } catch { /* not JSON */ }
        text.textContent = `failed: ${why}`;
        text.className = "error";
        done("failed");
      }
    };
    xhr.onerror = () => { text.textContent = "failed: the node could not be reached"; text.className = "error"; done("failed"); };
    xhr.onabort = () => { text.textContent = "cancelled"; done("cancelled"); };
    xhr.open("PUT", fileUrl(state.bucket, path));
    xhr.setRequestHeader("X-Csrf-Token", csrf());
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    xhr.send(file);
  });
}

async function uploadAll(entries) {
  if (!state.bucket) { say("Choose or create a bucket first.", true); return; }
  const results = await Promise.all(entries.map(([file, rel]) => upload(file, state.prefix + rel)));
  const ok = results.filter((r) => r === "done").length;
  say(`${ok} of ${results.length} uploads done.`, ok !== results.length);
  await listFiles();
}

// Folders dropped: walk them (webkitGetAsEntry), keeping relative paths.
async function walk(entry, base, out) {
  if (entry.isFile) {
    out.push([await new Promise((res, rej) => entry.file(res, rej)), base + entry.name]);
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) break;
      for (const e of batch) await walk(e, `${base}${entry.name}/`, out);
    }
  }
}

const drop = $("#drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const items = [...(ev.dataTransfer.items || [])].filter((i) => i.kind === "file");
  const entries = [];
  for (const item of items) {  // a folder comes as an entry to walk; a plain file as itself
    const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    if (entry && entry.isDirectory) await walk(entry, "", entries);
    else {
      const f = item.getAsFile();
      if (f) entries.push([f, f.name]);
    }
  }
  await uploadAll(entries);
});
drop.addEventListener("click", () => $("#file-input").click());
drop.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("#file-input").click(); }
});
$("#file-input").addEventListener("change", async (ev) => {
  const files = [...ev.target.files];
  ev.target.value = "";
  await uploadAll(files.map((f) => [f, f.name]));
});

// --- key/value -------------------------------------------------------------------------------

const kvUrl = (bucket, key) => `/v1/kv/${encodeURIComponent(bucket)}/${enc(key)}`;

$("#kv-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const bucket = $("#kv-bucket").value.trim();
  const q = new URLSearchParams({ prefix: $("#kv-prefix").value, limit: "1000" });
  try {
    const doc = await api("GET", `/v1/kv/${encodeURIComponent(bucket)}?${q}`);
    $("#kv-keys").replaceChildren(...doc.keys.map((k) => el("li", {},
      el("button", { type: "button", class: "secondary", onclick: () => showKey(bucket, k) }, k))));
    say(`${doc.keys.length} keys${doc.cursor ? " (more not shown)" : ""}.`);
  } catch (err) {
    say(`Keys could not be listed: ${err.message}`, true);
  }
});

function b64bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function render(bytesArr) {
  const view = document.querySelector("input[name=kv-view]:checked").value;
  if (view === "hex") return [...bytesArr].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytesArr);
  if (view === "json") {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return `(not JSON) ${text}`; }
  }
  return text;
}

let current = null;

async function showKey(bucket, key) {
  const resp = await api("GET", kvUrl(bucket, key), { raw: true, accept: [200, 300, 404] });
  const context = resp.headers.get("Dfs-Context") || "";
  let siblings = [];
  if (resp.status === 300) {
    const doc = await resp.json();
    siblings = doc.siblings.map((s) => ({ value: b64bytes(s.value_b64), type: s.content_type, modified: s.modified }));
  } else if (resp.status === 200) {
    siblings = [{ value: new Uint8Array(await resp.arrayBuffer()), type: resp.headers.get("Content-Type"), modified: resp.headers.get("Last-Modified") }];
  }
  current = { bucket, key, context, siblings };
  drawKey();
}

function drawKey() {
  if (!current) return;
  const { bucket, key, context, siblings } = current;
  $("#kv-key-title").textContent = `${bucket}/${key}${siblings.length > 1 ? ` — ${siblings.length} siblings` : ""}`;
  const canWrite = role(bucket) >= ROLES.write;
  $("#kv-siblings").replaceChildren(...siblings.map((s, i) => {
    const box = el("div", { class: "sibling", "data-sibling": i },
      el("p", { class: "help" }, `${s.type || ""} ${s.modified || ""} (${s.value.length} bytes)`),
      el("pre", {}, render(s.value)));
    if (siblings.length > 1 && canWrite) {
      box.append(el("button", { type: "button", onclick: () => resolve(bucket, key, context, s) }, `Keep sibling ${i + 1}`));
    }
    return box;
  }));
  if (!siblings.length) $("#kv-siblings").replaceChildren(el("p", {}, "No live value."));
  $("#kv-value").hidden = false;
}

for (const r of document.querySelectorAll("input[name=kv-view]")) r.addEventListener("change", drawKey);

// Resolve: write the chosen value back with the context read, which covers every sibling.
async function resolve(bucket, key, context, sibling) {
  try {
    await api("PUT", kvUrl(bucket, key), { body: new Blob([sibling.value]),
      headers: { "Dfs-Context": context, "Content-Type": sibling.type || "application/octet-stream" } });
    say(`${key} resolved.`);
    await showKey(bucket, key);
  } catch (err) {
    say(`${key} could not be resolved: ${err.message}`, true);
  }
}

// --- admin -----------------------------------------------------------------------------------

async function loadKeys() {
  try {
    const doc = await api("GET", "/v1/admin/keys");
    const keys = Array.isArray(doc) ? doc : doc.keys || [];
    $("#keys tbody").replaceChildren(...keys.map((k) => el("tr", {},
      el("th", { scope: "row" }, k.access_key), el("td", {}, k.name || ""),
      el("td", {}, k.disabled ? "disabled" : "enabled"),
      el("td", {}, Object.entries(k.grants || {}).map(([b, r]) => `${b}: ${r}`).join(", ")),
      el("td", {}, el("button", { type: "button", class: "secondary",
        onclick: () => keyAction(k.access_key, k.disabled ? "enable" : "disable") }, k.disabled ? "Enable" : "Disable"),
      " ", el("button", { type: "button", class: "danger", onclick: () => deleteKey(k.access_key) }, "Delete")))));
  } catch (err) {
    say(`Keys could not be listed: ${err.message}`, true);
  }
}

async function keyAction(key, action) {
  try { await api("POST", `/v1/admin/keys/${encodeURIComponent(key)}/${action}`, { body: {} }); await loadKeys(); }
  catch (err) { say(`${action} failed: ${err.message}`, true); }
}

async function deleteKey(key) {
  if (!window.confirm(`Delete the key ${key}? Its sessions end.`)) return;
  try { await api("DELETE", `/v1/admin/keys/${encodeURIComponent(key)}`); await loadKeys(); }
  catch (err) { say(`Delete failed: ${err.message}`, true); }
}

$("#key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const doc = await api("POST", "/v1/admin/keys", { body: { name: $("#key-name").value.trim() } });
    $("#key-secret").textContent = `Created ${doc.access_key}; its secret, shown once: ${doc.secret_key}`;
    await loadKeys();
  } catch (err) { say(`The key could not be created: ${err.message}`, true); }
});

$("#grant-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const b = $("#grant-bucket").value.trim();
  const k = $("#grant-key").value.trim();
  try {
    await api("PUT", `/v1/buckets/${encodeURIComponent(b)}/grants/${encodeURIComponent(k)}`, { body: { role: $("#grant-role").value } });
    say(`${k} may now ${$("#grant-role").value} ${b}.`);
    await loadKeys();
  } catch (err) { say(`The grant failed: ${err.message}`, true); }
});

start();
