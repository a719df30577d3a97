"""One camera's recorder: runs ffmpeg, judges its health by its output, restarts it.

Each ffmpeg run writes into its own session directory named by its start time,
so a restart never overwrites earlier footage. A segment is handed on when
ffmpeg lists it in the session playlist; the watcher wakes the recorder on
every playlist rewrite. If no new segment appears within twice the segment
length plus some slack, ffmpeg is stopped and started again, with backoff and
a restart-rate limit, forever: a camera that is unreachable for a day is
recorded again the moment it returns.

On start-up, :func:`recover_sessions` stops any ffmpeg a crashed producer left
running (it is still recording into its session) and hands on every segment
listed in earlier sessions that was not journaled yet, before new recording
starts, so sequence numbers follow recording time.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from watchdog.observers.api import ObservedWatch

from node.logs import RateLimiter, kv
from node.procs import pid_matches, stop_group
from producer.config import CameraConfig
from producer.ffmpeg_cmd import PLAYLIST, RTSP_IO_TIMEOUT_US, build_argv, redact, session_name
from producer.media import ProbeError, ffprobe_for, probe
from producer.segments import ListedSegment, PlaylistError, listed_segments, new_segments
from producer.watch import PlaylistWatcher

log = logging.getLogger("camswarm.producer.recorder")

PIDFILE = "ffmpeg.pid"
CLOSED = "closed"  # marker: every segment of this session was handed on
STALL_SLACK = 3.0  # seconds beyond 2x the segment length before a silent ffmpeg is restarted
STDERR_LINES = 100
TERM_TIMEOUT = 5.0


class JournalError(RuntimeError):
    """A segment could not be journaled now (disk full, ...); its session stays open for a retry."""


# (camera, session name, session directory, listed segment) -> journaled; may raise JournalError
SegmentSink = Callable[[CameraConfig, str, Path, ListedSegment], Awaitable[None]]
# (camera, session name, file name) -> already journaled
KnownCheck = Callable[[CameraConfig, str, str], Awaitable[bool]]


@dataclass
class RestartPolicy:
    """When to start ffmpeg again: exponential backoff after runs that recorded nothing,
    and at most ``max_restarts`` starts in any ``window`` seconds."""

    base: float = 0.5
    cap: float = 5.0  # a returning camera is recorded again within seconds
    max_restarts: int = 30
    window: float = 300.0
    failures: int = 0
    _starts: collections.deque[float] = field(default_factory=collections.deque)

    def record_start(self, now: float) -> None:
        self._starts.append(now)
        while self._starts and self._starts[0] <= now - self.window:
            self._starts.popleft()

    def delay(self, now: float, *, recorded: bool) -> float:
        """Seconds to wait before the next start, after a run that ``recorded`` segments or not."""
        self.failures = 0 if recorded else self.failures + 1
        wait = 0.0 if recorded else min(self.cap, self.base * 2 ** (self.failures - 1))
        while self._starts and self._starts[0] <= now - self.window:
            self._starts.popleft()
        if len(self._starts) >= self.max_restarts:
            wait = max(wait, self._starts[0] + self.window - now)
        return wait


def stall_timeout(segment_seconds: int) -> float:
    return 2.0 * segment_seconds + STALL_SLACK


def first_segment_timeout(segment_seconds: int) -> float:
    """The first segment also waits for the RTSP handshake and a key frame."""
    return RTSP_IO_TIMEOUT_US / 1e6 + stall_timeout(segment_seconds)


def camera_root(sessions_dir: Path, camera: CameraConfig) -> Path:
    return sessions_dir / camera.factory / camera.device


def new_session_dir(root: Path, started: datetime) -> Path:
    """A fresh directory named by the start time; never one that exists."""
    root.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        path = root / session_name(started, attempt)
        try:
            path.mkdir()
            return path
        except FileExistsError:
            attempt += 1


def read_listed(session_dir: Path) -> list[ListedSegment]:
    """The segments ffmpeg's playlist lists; [] before it exists."""
    try:
        text = (session_dir / PLAYLIST).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return listed_segments(text)


class SecretScrubber:
    """Removes a camera's credentials from text ffmpeg prints (it echoes input URLs)."""

    def __init__(self, camera: CameraConfig, secret_url: str) -> None:
        self._pairs: list[tuple[str, str]] = []
        if secret_url != camera.rtsp_url:
            self._pairs.append((secret_url, camera.rtsp_url))
            password = camera.password()
            if password:
                self._pairs += [(quote(password, safe=""), "***"), (password, "***")]

    def __call__(self, text: str) -> str:
        for secret, public in self._pairs:
            text = text.replace(secret, public)
        return text


class CameraRecorder:
    """Records one camera forever; ``state`` is "starting", "up" or "down"."""

    def __init__(
        self,
        camera: CameraConfig,
        sessions_dir: Path,
        sink: SegmentSink,
        watcher: PlaylistWatcher,
        *,
        ffmpeg: str = "ffmpeg",
        on_restart: Callable[[], None] = lambda: None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.camera = camera
        self.root = camera_root(sessions_dir, camera)
        self._sink = sink
        self._watcher = watcher
        self._ffmpeg = ffmpeg
        self._on_restart = on_restart
        self._policy = policy or RestartPolicy()
        self._limiter = RateLimiter(60.0)
        self.state = "starting"
        self.restarts = 0
        self.session = ""
        self.last_segment_at: float | None = None  # monotonic
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)

    async def run(self) -> None:
        """Record until cancelled; on cancellation ffmpeg is stopped and its last segment kept."""
        url = self.camera.authenticated_url()
        scrub = SecretScrubber(self.camera, url)
        while True:
            self._policy.record_start(time.monotonic())
            recorded, reason = await self._run_session(url, scrub)
            self.state = "down"
            wait = self._policy.delay(time.monotonic(), recorded=recorded)
            self.restarts += 1
            self._on_restart()
            allowed, suppressed = self._limiter.allow("restart")
            if allowed:
                log.warning(
                    "ffmpeg_restart",
                    extra=kv(
                        camera=self.camera.key,
                        reason=reason,
                        session=self.session,
                        recorded=recorded,
                        wait_s=round(wait, 1),
                        restarts=self.restarts,
                        suppressed=suppressed,
                        stderr="\n".join(self.stderr_tail),
                    ),
                )
            await asyncio.sleep(wait)

    async def _run_session(self, url: str, scrub: SecretScrubber) -> tuple[bool, str]:
        session_dir = new_session_dir(self.root, datetime.now(UTC))
        self.session = session_dir.name
        self.stderr_tail.clear()
        wake, watch = self._watcher.watch(session_dir, PLAYLIST)
        argv = build_argv(self.camera, session_dir, url=url, binary=self._ffmpeg)
        log.info(
            "ffmpeg_start",
            extra=kv(camera=self.camera.key, session=self.session, argv=" ".join(redact(argv, url, "<url>"))),
        )
        seen: set[str] = set()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            self._watcher.unwatch(watch)
            return False, f"cannot start ffmpeg: {exc.strerror}"
        (session_dir / PIDFILE).write_text(str(proc.pid))
        reader = asyncio.create_task(self._read_stderr(proc, scrub))
        reason = "exited"
        try:
            reason = await self._follow(proc, session_dir, wake, seen)
        finally:
            # Also on cancellation (shutdown): ffmpeg closes its current segment on TERM.
            await asyncio.shield(self._finish(proc, reader, session_dir, watch, seen))
        return bool(seen), reason

    async def _follow(
        self, proc: asyncio.subprocess.Process, session_dir: Path, wake: asyncio.Event, seen: set[str]
    ) -> str:
        deadline = time.monotonic() + first_segment_timeout(self.camera.segment_seconds)
        exited = asyncio.create_task(proc.wait())
        try:
            while True:
                woke = asyncio.create_task(wake.wait())
                done, _ = await asyncio.wait(
                    {woke, exited},
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when="FIRST_COMPLETED",
                )
                woke.cancel()
                wake.clear()
                # Read on every wake-up, exit or deadline: the playlist is the only truth.
                listed, _ = await self._collect(session_dir, seen)
                if listed:
                    deadline = time.monotonic() + stall_timeout(self.camera.segment_seconds)
                if exited in done:
                    return f"exit code {proc.returncode}"
                if not done and time.monotonic() >= deadline:
                    return "no new segment in time"
        finally:
            exited.cancel()

    async def _collect(self, session_dir: Path, seen: set[str]) -> tuple[int, bool]:
        """Journal what the playlist newly lists: (how many it newly lists, whether all got journaled).

        ffmpeg's health is judged by the first number, so a journal failure does not restart it.
        """
        try:
            fresh = new_segments(read_listed(session_dir), seen)
            read_at = time.time()
        except PlaylistError as exc:
            log.error("playlist_unusable", extra=kv(camera=self.camera.key, session=self.session, error=exc))
            return 0, True
        for segment in fresh:
            try:
                listed = dataclasses.replace(segment, listed_at=read_at)
                await self._sink(self.camera, session_dir.name, session_dir, listed)
            except JournalError:
                return len(fresh), False  # retried on the next playlist change, or at the next start
            seen.add(segment.filename)
            self.state = "up"
            self.last_segment_at = time.monotonic()
        return len(fresh), True

    async def _finish(
        self,
        proc: asyncio.subprocess.Process,
        reader: asyncio.Task[None],
        session_dir: Path,
        watch: ObservedWatch,
        seen: set[str],
    ) -> None:
        await stop_process(proc)
        await reader
        self._watcher.unwatch(watch)
        _, complete = await self._collect(session_dir, seen)  # the segment ffmpeg closed on its way out
        (session_dir / PIDFILE).unlink(missing_ok=True)
        if complete:  # otherwise the next start journals what is missing
            (session_dir / CLOSED).touch()

    async def _read_stderr(self, proc: asyncio.subprocess.Process, scrub: SecretScrubber) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = scrub(raw.decode("utf-8", "replace").rstrip())
            if line:
                self.stderr_tail.append(line)


async def stop_process(proc: asyncio.subprocess.Process, timeout: float = TERM_TIMEOUT) -> None:
    """TERM, a bounded wait, then KILL."""
    if proc.returncode is not None:
        return
    try:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout)
    except ProcessLookupError:
        pass
    except TimeoutError:
        log.warning("ffmpeg_kill", extra=kv(pid=proc.pid, after_s=timeout))
        proc.kill()
        await proc.wait()


async def salvage_unlisted(
    camera: CameraConfig,
    session_dir: Path,
    listed: list[ListedSegment],
    known: KnownCheck,
    ffprobe: str = "ffprobe",
) -> list[ListedSegment]:
    """Complete segment files the playlist no longer lists and the outbox does not know.

    ffmpeg's playlist is a sliding window: if the producer was down for longer
    than the window while ffmpeg went on recording, the oldest of those files
    have dropped out of it. Their length comes from ffprobe; their start is
    counted back from the first listed segment (segments of one run are back to
    back), or, with nothing listed, taken from the file's modification time.
    Files still being written (``.tmp``) are not complete and are left alone.
    """
    names = {s.filename for s in listed}
    first_listed = min(names) if names else None
    found = []
    files = await asyncio.to_thread(lambda: sorted(session_dir.glob("seg-*.ts")))
    for path in files:
        if path.name in names or (first_listed is not None and path.name > first_listed):
            continue
        if await known(camera, session_dir.name, path.name):
            continue
        try:
            media = await probe(path, ffprobe=ffprobe)
        except ProbeError as exc:
            log.error(
                "salvage_failed",
                extra=kv(camera=camera.key, session=session_dir.name, file=path.name, error=exc),
            )
            continue
        ended = datetime.fromtimestamp((await asyncio.to_thread(path.stat)).st_mtime, UTC)
        found.append(
            ListedSegment(path.name, round(media.duration, 3), ended - timedelta(seconds=media.duration))
        )
    if listed and found:
        # Segments of one ffmpeg run are back to back: count back from the first listed
        # segment's PROGRAM-DATE-TIME, the same clock as the rest of the session.
        anchor = listed[0].start
        for index in range(len(found) - 1, -1, -1):
            anchor -= timedelta(seconds=found[index].duration)
            found[index] = ListedSegment(found[index].filename, found[index].duration, anchor)
    if found:
        log.warning(
            "segments_salvaged", extra=kv(camera=camera.key, session=session_dir.name, count=len(found))
        )
    return found


async def recover_sessions(
    camera: CameraConfig,
    sessions_dir: Path,
    sink: SegmentSink,
    known: KnownCheck,
    ffmpeg: str = "ffmpeg",
) -> int:
    """Hand on what earlier runs recorded but did not journal; returns how many segments."""
    root = camera_root(sessions_dir, camera)
    if not root.is_dir():
        return 0
    found = 0
    for session_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if (session_dir / CLOSED).exists():
            continue
        pidfile = session_dir / PIDFILE
        if pidfile.exists():
            try:
                pid = int(pidfile.read_text().strip())
            except ValueError:
                pid = 0
            # The pid may have been reused: it must be an ffmpeg writing into this very session.
            if pid > 0 and pid_matches(pid, ffmpeg, argument=str(session_dir / PLAYLIST)):
                log.warning(
                    "orphan_ffmpeg_stopped", extra=kv(camera=camera.key, session=session_dir.name, pid=pid)
                )
                # ffmpeg runs in a session of its own, so its pid is its process group.
                await stop_group(pid, name=f"ffmpeg {camera.key}", term_timeout=TERM_TIMEOUT)
        try:
            listed = read_listed(session_dir)
        except PlaylistError as exc:
            log.error("playlist_unusable", extra=kv(camera=camera.key, session=session_dir.name, error=exc))
            continue
        salvaged = await salvage_unlisted(camera, session_dir, listed, known, ffprobe_for(ffmpeg))
        try:
            for segment in salvaged + listed:
                await sink(camera, session_dir.name, session_dir, segment)
                found += 1
        except JournalError:
            return found  # later sessions must wait: seq follows recording time
        pidfile.unlink(missing_ok=True)
        (session_dir / CLOSED).touch()
    return found
