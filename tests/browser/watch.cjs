// Drives the camswarm web UI in headless Chromium the way a factory operator uses it:
// log in, pick a camera, watch live, click the day timeline to go back, replay a range, export it.
//
//   node tests/browser/watch.cjs --url URL --user NAME --password-file FILE --camera F/D --out DIR
//
// playwright-core comes from gateway/web/node_modules (make deps); the browser is Debian's chromium.
// Every step prints one JSON line; the last line is {"step": "done", ...} or {"step": "failed", ...}.
// Exit status 0 only when every check held. Waiting is polling with a deadline, never a fixed sleep.
"use strict";

const path = require("path");
const fs = require("fs");
const { chromium } = require(path.join(__dirname, "../../gateway/web/node_modules/playwright-core"));

const DAY_MS = 86400000;

function options(argv) {
  const wanted = { url: "", user: "", "password-file": "", camera: "", out: "", chromium: "/usr/bin/chromium" };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in wanted) || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    wanted[key] = argv[i + 1];
  }
  for (const [key, value] of Object.entries(wanted)) if (!value) throw new Error(`--${key} is required`);
  return wanted;
}

const began = Date.now();
function report(step, fields = {}) {  // t: seconds since the driver started
  process.stdout.write(JSON.stringify({ step, t: (Date.now() - began) / 1000, ...fields }) + "\n");
}

// Poll `check` (async, returns a truthy value when satisfied) until it holds or the deadline passes.
async function until(what, check, timeoutMs, intervalMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

// The player's position: media time, and the wall-clock instant it shows (from the fragments' PROGRAM-DATE-TIME).
function position(page) {
  return page.evaluate(() => {
    const video = document.getElementById("video");
    const t = video.currentTime;
    const fragment = state.fragments.find((f) => f.pdt && t < f.start + f.duration);
    return {
      currentTime: t,
      paused: video.paused,
      mode: document.getElementById("mode").textContent,
      wallclock: fragment ? fragment.pdt + (t - fragment.start) * 1000 : null,
      error: document.getElementById("error").textContent,
    };
  });
}

// Wait until the video's currentTime has advanced by `seconds` in the current mode.
async function advances(page, seconds, timeoutMs) {
  const first = await until("the video to start", async () => {
    const p = await position(page);
    if (p.error) throw new Error(`player error: ${p.error}`);
    return p.currentTime > 0 ? p : null;
  }, timeoutMs);
  const later = await until(`currentTime to advance ${seconds} s`, async () => {
    const p = await position(page);
    if (p.error) throw new Error(`player error: ${p.error}`);
    return p.currentTime >= first.currentTime + seconds ? p : null;
  }, timeoutMs);
  return { first, later };
}

function localInput(ms) {  // the form's datetime-local fields are UTC
  return new Date(ms).toISOString().slice(0, 19);
}

async function main() {
  const args = options(process.argv);
  const password = fs.readFileSync(args["password-file"], "utf8").trim();
  fs.mkdirSync(args.out, { recursive: true });
  const shot = (name) => path.join(args.out, name);
  const browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    // The machine's network is closed: keep Chromium from calling home at start.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
  });
  const console_ = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    // Failed loads are expected on the way (the 401 of /api/me before login, the live playlist's 404
    // before a mirror has one); script errors are not.
    page.on("console", (message) => {
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) console_.push(message.text());
    });
    page.on("pageerror", (error) => console_.push(`pageerror: ${error.message}`));

    await page.goto(args.url, { waitUntil: "load" });
    const codecs = await page.evaluate(() => ({
      hls: typeof Hls !== "undefined" && Hls.isSupported(),
      h264: MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f"'),
    }));
    report("loaded", codecs);
    if (!codecs.hls || !codecs.h264) throw new Error(`this Chromium cannot play H.264 through MSE: ${JSON.stringify(codecs)}`);

    await page.fill("#username", args.user);
    await page.fill("#password", password);
    await page.click("#login button[type=submit]");
    await page.waitForSelector("#app:not([hidden])", { timeout: 15000 });
    const who = await page.textContent("#who");
    // On a fresh network a camera is listed once it has recorded; the list refreshes itself.
    await page.waitForSelector("#cameras button", { timeout: 60000 });
    const cameras = await page.$$eval("#cameras button", (buttons) => buttons.map((b) => b.dataset.camera));
    report("logged-in", { who, cameras });

    await page.click(`#cameras button[data-camera="${args.camera}"]`);
    const live = await advances(page, 3, 60000);
    await page.screenshot({ path: shot("live.png") });
    report("live", { mode: live.later.mode, from: live.first.currentTime, to: live.later.currentTime,
      behind_s: live.later.wallclock ? (Date.now() - live.later.wallclock) / 1000 : null, screenshot: shot("live.png") });

    // Seek back: zoom the timeline to the last 10 minutes and click just after the recording began,
    // once the recorded span is wide enough (>= 60 px, about half a minute) for that to be the past.
    await page.selectOption("#zoom", "600000");
    // The timeline redraws itself every few seconds, replacing its spans: scroll and measure in one
    // page-side step so no element handle is held across a redraw.
    const box = await until("a recorded span 60 px wide on the timeline", () => page.evaluate(() => {
      const span = document.querySelector("#timeline-bar span");
      if (!span) return null;
      span.scrollIntoView({ block: "nearest", inline: "nearest" });
      const rect = span.getBoundingClientRect();
      return rect.width >= 60 ? { x: rect.x, y: rect.y, width: rect.width, height: rect.height } : null;
    }), 90000, 1000);
    const clickedAt = Date.now();
    await page.mouse.click(box.x + 4, box.y + box.height / 2);
    await until("the day playlist", async () => (await position(page)).mode.startsWith("day "), 15000);
    const day = await advances(page, 2, 60000);
    const spanTitle = await page.getAttribute("#timeline-bar span", "title");
    const spanStart = Date.parse(spanTitle.split(" - ")[0]);
    await page.screenshot({ path: shot("seek.png") });
    report("seek", { mode: day.later.mode, wallclock: new Date(day.later.wallclock).toISOString(),
      span_start: new Date(spanStart).toISOString(), behind_live_s: (clickedAt - day.later.wallclock) / 1000,
      from: day.first.currentTime, to: day.later.currentTime, screenshot: shot("seek.png") });

    // Replay a 20 s range from the recording's start.
    const start = Math.ceil(spanStart / 1000) * 1000 + 4000;
    const end = start + 20000;
    await page.fill("#start", localInput(start));
    await page.fill("#end", localInput(end));
    await page.click("#play-range");
    await until("the replay", async () => (await position(page)).mode.startsWith("replay "), 15000);
    const replay = await advances(page, 2, 60000);
    const details = await page.evaluate(() => {
      const level = state.hls.levels[state.hls.currentLevel >= 0 ? state.hls.currentLevel : 0];
      return { live: level.details.live, totalduration: level.details.totalduration,
        fragments: level.details.fragments.length, first_pdt: level.details.fragments[0].programDateTime };
    });
    await page.screenshot({ path: shot("replay.png") });
    report("replay", { mode: replay.later.mode, range_s: (end - start) / 1000, ...details,
      first_pdt: new Date(details.first_pdt).toISOString(), range_start: new Date(start).toISOString(),
      from: replay.first.currentTime, to: replay.later.currentTime, screenshot: shot("replay.png") });

    // Export the same range: the button streams the MP4 with progress, then hands it to the browser.
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: 60000 }), page.click("#export")]);
    const saved = shot(download.suggestedFilename());
    await download.saveAs(saved);
    const status = await page.textContent("#export-status");
    report("export", { file: saved, bytes: fs.statSync(saved).size, status });

    report("done", { console_errors: console_ });
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  report("failed", { error: String(error && error.stack ? error.stack : error) });
  process.exitCode = 1;
});
