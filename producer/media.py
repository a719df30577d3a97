"""What a recording session carries (codec, resolution, bitrate), read with ffprobe once per session."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


class ProbeError(RuntimeError):
    """ffprobe could not read a segment."""


@dataclass(frozen=True)
class MediaInfo:
    container: str  # ffprobe's format name, "mpegts" for HLS segments
    codec: str  # video codec, e.g. "h264"
    width: int
    height: int
    bitrate: int  # bits per second over the probed segment, 0 if unknown
    audio_codec: str = ""
    duration: float = 0.0  # seconds, of the probed file

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MediaInfo:
        return cls(**json.loads(text))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def ffprobe_for(ffmpeg: str) -> str:
    """ffprobe next to the configured ffmpeg (or on PATH like it)."""
    return str(Path(ffmpeg).with_name("ffprobe")) if os.sep in ffmpeg else "ffprobe"


def parse_probe(report: dict[str, Any]) -> MediaInfo:
    """MediaInfo from ``ffprobe -show_format -show_streams -of json``; raises ProbeError without video."""
    streams = report.get("streams")
    fmt = report.get("format")
    if not isinstance(streams, list) or not isinstance(fmt, dict):
        raise ProbeError("ffprobe report lacks streams or format")
    video = next((s for s in streams if isinstance(s, dict) and s.get("codec_type") == "video"), None)
    if video is None:
        raise ProbeError("no video stream")
    audio = next((s for s in streams if isinstance(s, dict) and s.get("codec_type") == "audio"), None)
    return MediaInfo(
        container=str(fmt.get("format_name", "")),
        codec=str(video.get("codec_name", "")),
        width=_int(video.get("width")),
        height=_int(video.get("height")),
        bitrate=_int(fmt.get("bit_rate")),
        audio_codec=str(audio.get("codec_name", "")) if audio else "",
        duration=_float(fmt.get("duration")),
    )


async def probe(path: Path, *, ffprobe: str = "ffprobe", timeout: float = 15.0) -> MediaInfo:
    proc = await asyncio.create_subprocess_exec(
        ffprobe,
        "-v",
        "error",
        "-show_format",
        "-show_streams",
        "-of",
        "json",
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ProbeError(f"ffprobe took longer than {timeout:.0f} s on {path.name}") from None
    if proc.returncode != 0:
        raise ProbeError(f"ffprobe failed on {path.name}: {err.decode('utf-8', 'replace').strip()[-300:]}")
    try:
        report = json.loads(out)
    except ValueError as exc:
        raise ProbeError(f"ffprobe printed invalid JSON for {path.name}") from exc
    return parse_probe(report)
