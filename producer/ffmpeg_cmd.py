"""The ffmpeg command line for recording one camera: a pure function of its config.

RTSP over TCP, no transcoding (``-c copy``), HLS segments of the configured
length with EXT-X-PROGRAM-DATE-TIME, written into one session directory per
ffmpeg run. ``temp_file`` makes ffmpeg write each segment under a temporary
name and rename it when complete, and the playlist lists a segment only after
that, which is how the watcher knows a segment is whole.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import ffmpeg

from producer.config import CameraConfig

PLAYLIST = "index.m3u8"
SEGMENT_PATTERN = "seg-%06d.ts"
# ffmpeg keeps this many entries in its playlist; the watcher reacts within one segment.
PLAYLIST_WINDOW = 30
RTSP_IO_TIMEOUT_US = 10_000_000


def session_name(started: datetime, attempt: int = 0) -> str:
    """A session directory's name: its UTC start time, plus a counter if a name was taken."""
    base = started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return base if attempt == 0 else f"{base}-{attempt}"


def build_argv(camera: CameraConfig, session_dir: Path, *, url: str, binary: str = "ffmpeg") -> list[str]:
    """ffmpeg's argv; ``url`` is the camera URL to pull (with credentials if any)."""
    source = ffmpeg.input(url, rtsp_transport="tcp", timeout=RTSP_IO_TIMEOUT_US)
    streams = [source["v:0"]]
    if camera.audio:
        streams.append(source["a:0?"])
    output = ffmpeg.output(
        *streams,
        str(session_dir / PLAYLIST),
        c="copy",
        f="hls",
        hls_time=camera.segment_seconds,
        hls_list_size=PLAYLIST_WINDOW,
        hls_flags="program_date_time+temp_file+independent_segments+omit_endlist",
        hls_segment_type="mpegts",
        hls_segment_filename=str(session_dir / SEGMENT_PATTERN),
        start_number=0,
    )
    argv: list[str] = output.global_args("-hide_banner", "-nostdin", "-loglevel", "warning").compile(
        cmd=binary
    )
    return argv


def redact(argv: list[str], secret_url: str, public_url: str) -> list[str]:
    """The argv with the credential-bearing URL replaced, for logs."""
    return [public_url if arg == secret_url else arg for arg in argv]
