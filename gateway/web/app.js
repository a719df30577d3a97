// camswarm web UI: log in, pick a camera, watch live, scrub back through the day, replay or export a range.
"use strict";

const $ = (id) => document.getElementById(id);
const DAY_MS = 86400000;
const state = { csrf: "", camera: null, hls: null, mode: "", dayStart: 0, spans: [], periods: [], view: null, fragments: [] };

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

function showError(message) { $("error").textContent = message || ""; }

function utcDay(ms) { return new Date(ms).toISOString().slice(0, 10); }

async function start() {
  try {
    const me = await (await api("/api/me")).json();
    enter(me);
  } catch (_) {
    $("login").hidden = false;
  }
}

function enter(me) {
  state.csrf = me.csrf;
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = `${me.username} (${me.role})`;
  $("day").value = utcDay(Date.now());
  loadCameras();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const response = await api("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("username").value, password: $("password").value }),
    });
    $("password").value = "";
    enter(await response.json());
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("/api/logout", { method: "POST" }); } finally { location.reload(); }
});

// The camera list is refreshed in the background: a camera appears once it has recorded,
// and its live/offline badge follows the catalog. Sooner while the list is still empty.
let camerasTimer = null;
async function loadCameras() {
  clearTimeout(camerasTimer);
  let cameras = [];
  try {
    cameras = (await (await api("/api/cameras")).json()).cameras;
  } catch (error) {
    if (error.status === 401) { location.reload(); return; }
    showError(`cameras: ${error.message}`);
  }
  const list = $("cameras");
  list.replaceChildren();
  for (const camera of cameras) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    const name = `${camera.factory}/${camera.device}`;
    button.textContent = name;
    button.dataset.camera = name;
    button.classList.toggle("selected", state.camera !== null && name === base());
    const badge = document.createElement("span");
    badge.className = "state";
    badge.textContent = camera.live ? "live" : "offline";
    button.append(badge);
    button.addEventListener("click", () => selectCamera(camera));
    item.append(button);
    list.append(item);
  }
  if (cameras.length && !state.camera) selectCamera(cameras[0]);
  if (!cameras.length) $("title").textContent = "No camera you may watch has recorded yet";
  camerasTimer = setTimeout(loadCameras, cameras.length ? 15000 : 2000);
}

function selectCamera(camera) {
  state.camera = camera;
  for (const button of document.querySelectorAll("#cameras button")) {
    button.classList.toggle("selected", button.dataset.camera === `${camera.factory}/${camera.device}`);
  }
  $("title").textContent = `${camera.factory}/${camera.device}`;
  for (const id of ["go-live", "play-range", "export"]) $(id).disabled = false;
  goLive();
  loadTimeline();
}

function base() { return `${state.camera.factory}/${state.camera.device}`; }

// Play an HLS URL. `startAt(fragments)`, when given, picks the starting position (seconds) from the
// playlist's fragments once it has loaded; loading waits for it, so hls.js does not start at the
// live edge of an EVENT playlist and jump there afterwards.
function play(url, mode, startAt) {
  showError("");
  state.mode = mode;
  $("mode").textContent = mode;
  const video = $("video");
  if (state.hls) { state.hls.destroy(); state.hls = null; }
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls({ liveSyncDurationCount: 2, autoStartLoad: !startAt });
    state.hls = hls;
    let started = !startAt;
    hls.on(Hls.Events.LEVEL_LOADED, (_, data) => {
      state.fragments = data.details.fragments.map((f) => ({ start: f.start, duration: f.duration, pdt: f.programDateTime }));
      if (!started) {
        started = true;
        const position = startAt(state.fragments);
        hls.startLoad(position === null ? -1 : position);
      }
    });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;  // hls.js recovers from those itself
      if (mode === "live" && data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        // A camera that just appeared may have no live playlist at this mirror yet, or a gateway
        // is restarting: keep trying, as a monitoring wall would.
        $("mode").textContent = `live: ${data.details}, retrying`;
        setTimeout(() => { if (state.hls === hls) play(url, mode, startAt); }, 2000);
        return;
      }
      showError(`playback: ${data.details}`);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else {
    video.src = url;  // Safari plays HLS natively; PROGRAM-DATE-TIME is not exposed there
    if (startAt) video.addEventListener("loadedmetadata", () => {
      const position = startAt([]);
      if (position !== null) video.currentTime = position;
    }, { once: true });
  }
  video.play().catch(() => { /* autoplay may need a click; the controls are there */ });
}

function goLive() {
  $("day").value = utcDay(Date.now());
  play(`/live/${base()}.m3u8`, "live");
}

// Seek back within a day: the day playlist, from the fragment holding that wall-clock time
// (the first recorded one when the time is before it).
function seekTo(ms) {
  const day = utcDay(ms);
  $("day").value = day;
  play(`/live/${base()}/day.m3u8?day=${day}`, `day ${day}, from ${new Date(ms).toISOString().slice(11, 19)} UTC`, (fragments) => {
    const dated = fragments.filter((f) => f.pdt);
    const hit = dated.find((f) => ms < f.pdt + f.duration * 1000) || dated[dated.length - 1];
    return hit ? hit.start + Math.max(0, Math.min(hit.duration, (ms - hit.pdt) / 1000)) : null;
  });
}

// The timeline shows a window of the chosen day: all of it, or the last hour or ten minutes of what
// has been recorded (ending now for today), so that recent footage is wide enough to click.
function timelineView() {
  const zoom = Number($("zoom").value) || DAY_MS;
  const dayEnd = state.dayStart + DAY_MS;
  if (zoom >= DAY_MS) return { from: state.dayStart, to: dayEnd };
  const lastEnd = state.spans.length ? Date.parse(state.spans[state.spans.length - 1].end) : state.dayStart;
  const recent = utcDay(Date.now()) === utcDay(state.dayStart) ? Date.now() : lastEnd;
  const to = Math.min(dayEnd, Math.max(state.dayStart + zoom, recent));
  return { from: to - zoom, to };
}

function clock(ms, seconds) { return new Date(ms).toISOString().slice(11, seconds ? 19 : 16); }

function drawTimeline() {
  const view = timelineView();
  state.view = view;
  const width = view.to - view.from;
  const bar = $("timeline-bar");
  bar.replaceChildren();
  for (const span of state.spans) {
    const from = Math.max(0, (Date.parse(span.start) - view.from) / width);
    const to = Math.min(1, (Date.parse(span.end) - view.from) / width);
    if (to <= 0 || from >= 1) continue;
    const piece = document.createElement("span");
    piece.style.left = `${(from * 100).toFixed(3)}%`;
    piece.style.width = `${Math.max(0.05, (to - from) * 100).toFixed(3)}%`;
    piece.title = `${span.start} - ${span.end}`;
    bar.append(piece);
  }
  const anchors = $("anchors");
  anchors.replaceChildren();
  for (const period of state.periods) {
    const from = Math.max(0, (Date.parse(period.start) - view.from) / width);
    const to = Math.min(1, (Date.parse(period.end) - view.from) / width);
    if (to <= 0 || from >= 1) continue;
    const piece = document.createElement("span");
    piece.className = period.state;
    piece.dataset.state = period.state;
    piece.style.left = `${(from * 100).toFixed(3)}%`;
    piece.style.width = `${Math.max(0.05, (to - from) * 100).toFixed(3)}%`;
    piece.title = `${clock(Date.parse(period.start))}-${clock(Date.parse(period.end))} UTC: ${period.state}, ` +
      `${period.segments} segments, root ${period.root.slice(0, 16)}...` + (period.tx ? `, tx ${period.tx}` : "");
    anchors.append(piece);
  }
  const labels = $("timeline-labels");
  labels.replaceChildren();
  for (let i = 0; i <= 4; i++) {
    const label = document.createElement("span");
    const at = view.from + (i * width) / 4;
    label.textContent = width >= DAY_MS && i === 4 ? "24:00" : clock(at, width < 3600000);
    if (i === 4) label.textContent += " UTC";
    labels.append(label);
  }
}

async function loadTimeline() {
  if (!state.camera) return;
  const day = $("day").value || utcDay(Date.now());
  try {
    const timeline = await (await api(`/api/timeline/${base()}?day=${day}`)).json();
    state.dayStart = Date.parse(`${timeline.day}T00:00:00Z`);
    state.spans = timeline.spans;
    state.periods = timeline.periods || [];
    drawTimeline();
  } catch (error) {
    showError(`timeline: ${error.message}`);
  }
}

$("timeline").addEventListener("click", (event) => {
  if (!state.camera || !state.view) return;
  const box = $("timeline").getBoundingClientRect();
  const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  const ms = state.view.from + fraction * (state.view.to - state.view.from);
  if (ms > Date.now() - 5000) goLive();  // nothing recorded after now: the live edge is the closest
  else seekTo(ms);
});

$("day").addEventListener("change", loadTimeline);
$("zoom").addEventListener("change", drawTimeline);
$("go-live").addEventListener("click", goLive);

setInterval(() => {  // the cursor shows where the picture is, in wall-clock time
  const video = $("video");
  const fragment = state.fragments.find((f) => f.pdt && video.currentTime < f.start + f.duration);
  if (!fragment || !state.view) return;
  const ms = fragment.pdt + (video.currentTime - fragment.start) * 1000;
  const at = (ms - state.view.from) / (state.view.to - state.view.from);
  $("timeline-cursor").hidden = at < 0 || at > 1;
  $("timeline-cursor").style.left = `${(Math.min(1, Math.max(0, at)) * 100).toFixed(3)}%`;
}, 500);
// Today's timeline grows while the camera records (the zoomed windows slide with it).
setInterval(() => { if (state.camera && $("day").value === utcDay(Date.now())) loadTimeline(); }, 10000);

function rangeQuery() {
  const start = $("start").value, end = $("end").value;
  if (!start || !end) throw new Error("choose a start and an end");
  const iso = (value) => new Date(`${value.length === 16 ? value + ":00" : value}Z`).toISOString();
  return `start=${encodeURIComponent(iso(start))}&end=${encodeURIComponent(iso(end))}`;
}

$("replay").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const url = `/replay/${base()}.m3u8?${rangeQuery()}`;
    await api(url);  // a clear error (range too long, nothing recorded) before the player tries
    play(url, `replay ${$("start").value} - ${$("end").value} UTC`);
  } catch (error) {
    showError(`replay: ${error.message}`);
  }
});

$("export").addEventListener("click", async () => {
  const progress = $("export-progress");
  try {
    const response = await api(`/export/${base()}.mp4?${rangeQuery()}`);
    const estimate = Number(response.headers.get("X-Camswarm-Estimated-Bytes")) || 0;
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    progress.hidden = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      progress.value = estimate ? Math.min(0.99, received / estimate) : 0;
      $("export-status").textContent = `${(received / 1e6).toFixed(1)} MB`;
    }
    progress.value = 1;
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob(chunks, { type: "video/mp4" }));
    link.download = name ? name[1] : "camswarm.mp4";
    link.click();
    $("export-status").textContent = `exported ${(received / 1e6).toFixed(1)} MB; fetching its proof`;
    // The sidecar proof: segment CIDs, their period roots and anchor transactions, the clip's hash.
    // Check it with: camswarm verify --config anchor.toml --proof FILE --clip FILE
    const proof = await api(`/export/${base()}.proof.json?${rangeQuery()}`);
    const proofLink = document.createElement("a");
    proofLink.href = URL.createObjectURL(await proof.blob());
    proofLink.download = (link.download || "camswarm.mp4").replace(/\.mp4$/, ".proof.json");
    proofLink.click();
    $("export-status").textContent = `exported ${(received / 1e6).toFixed(1)} MB and its proof`;
  } catch (error) {
    showError(`export: ${error.message}`);
  }
});

start();
