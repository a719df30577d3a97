// camswarm web UI: log in, pick a camera, watch live, scrub back through the day, replay or export a range.
"use strict";

const $ = (id) => document.getElementById(id);
const DAY_MS = 86400000;
const state = { csrf: "", camera: null, hls: null, mode: "", dayStart: 0, fragments: [] };

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

async function loadCameras() {
  const { cameras } = await (await api("/api/cameras")).json();
  const list = $("cameras");
  list.replaceChildren();
  for (const camera of cameras) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.textContent = `${camera.factory}/${camera.device}`;
    button.dataset.camera = `${camera.factory}/${camera.device}`;
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

function play(url, mode, onReady) {
  showError("");
  state.mode = mode;
  $("mode").textContent = mode;
  const video = $("video");
  if (state.hls) { state.hls.destroy(); state.hls = null; }
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls({ liveSyncDurationCount: 2 });
    state.hls = hls;
    hls.on(Hls.Events.LEVEL_LOADED, (_, data) => {
      state.fragments = data.details.fragments.map((f) => ({ start: f.start, duration: f.duration, pdt: f.programDateTime }));
      if (onReady) { const ready = onReady; onReady = null; ready(); }
    });
    hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) showError(`playback: ${data.details}`); });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else {
    video.src = url;  // Safari plays HLS natively
    if (onReady) video.addEventListener("loadedmetadata", onReady, { once: true });
  }
  video.play().catch(() => { /* autoplay may need a click; the controls are there */ });
}

function goLive() {
  $("day").value = utcDay(Date.now());
  play(`/live/${base()}.m3u8`, "live");
}

// Seek back within a day: the day playlist, then the fragment holding that wall-clock time.
function seekTo(ms) {
  const day = utcDay(ms);
  $("day").value = day;
  play(`/live/${base()}/day.m3u8?day=${day}`, `day ${day}, from ${new Date(ms).toISOString().slice(11, 19)} UTC`, () => {
    const fragments = state.fragments.filter((f) => f.pdt);
    const hit = fragments.find((f) => ms < f.pdt + f.duration * 1000) || fragments[fragments.length - 1];
    if (!hit) return;
    $("video").currentTime = hit.start + Math.max(0, (ms - hit.pdt) / 1000);
  });
}

async function loadTimeline() {
  if (!state.camera) return;
  const day = $("day").value || utcDay(Date.now());
  try {
    const timeline = await (await api(`/api/timeline/${base()}?day=${day}`)).json();
    state.dayStart = Date.parse(`${timeline.day}T00:00:00Z`);
    const bar = $("timeline-bar");
    bar.replaceChildren();
    for (const span of timeline.spans) {
      const piece = document.createElement("span");
      const from = (Date.parse(span.start) - state.dayStart) / DAY_MS;
      const to = (Date.parse(span.end) - state.dayStart) / DAY_MS;
      piece.style.left = `${(from * 100).toFixed(3)}%`;
      piece.style.width = `${Math.max(0.05, (to - from) * 100).toFixed(3)}%`;
      piece.title = `${span.start} - ${span.end}`;
      bar.append(piece);
    }
  } catch (error) {
    showError(`timeline: ${error.message}`);
  }
}

$("timeline").addEventListener("click", (event) => {
  if (!state.camera) return;
  const box = $("timeline").getBoundingClientRect();
  const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  seekTo(state.dayStart + fraction * DAY_MS);
});

$("day").addEventListener("change", loadTimeline);
$("go-live").addEventListener("click", goLive);

setInterval(() => {  // the cursor shows where the picture is, in wall-clock time
  const video = $("video");
  const fragment = state.fragments.find((f) => f.pdt && video.currentTime < f.start + f.duration);
  if (!fragment || !state.dayStart) return;
  const ms = fragment.pdt + (video.currentTime - fragment.start) * 1000;
  $("timeline-cursor").style.left = `${(((ms - state.dayStart) / DAY_MS) * 100).toFixed(3)}%`;
}, 500);
setInterval(() => { if (state.camera && state.mode === "live") loadTimeline(); }, 30000);

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
    $("export-status").textContent = `exported ${(received / 1e6).toFixed(1)} MB`;
  } catch (error) {
    showError(`export: ${error.message}`);
  }
});

start();
