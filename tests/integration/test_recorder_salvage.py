"""Recovery of segments that scrolled out of ffmpeg's playlist while no producer watched (real ffmpeg)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from node.procs import poll_until
from producer import ffmpeg_cmd
from producer.config import CameraConfig
from producer.recorder import read_listed, salvage_unlisted, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_segments_dropped_from_the_playlist_are_salvaged(
    devnet: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cam = devnet["cameras"][0]
    camera = CameraConfig(
        factory=cam["factory"], device=cam["device"], rtsp_url=cam["rtsp"], segment_seconds=1
    )
    session = tmp_path / "20261121T000000Z"
    session.mkdir()
    monkeypatch.setattr(ffmpeg_cmd, "PLAYLIST_WINDOW", 2)  # a tiny window: segments drop out fast
    argv = ffmpeg_cmd.build_argv(camera, session, url=camera.rtsp_url)
    proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.DEVNULL)
    try:

        async def scrolled() -> bool:
            listed = read_listed(session)
            return bool(listed) and listed[0].filename >= "seg-000003.ts"

        await poll_until(scrolled, timeout=60, what="three segments to leave the playlist")
    finally:
        await stop_process(proc)
    listed = read_listed(session)

    async def unknown(*_: object) -> bool:
        return False

    salvaged = await salvage_unlisted(camera, session, listed, unknown)
    names = [s.filename for s in salvaged]
    first = int(listed[0].filename[4:10])
    assert names == [f"seg-{n:06d}.ts" for n in range(first)], names
    assert all(0.5 <= s.duration <= 3.5 for s in salvaged), salvaged
    timeline = salvaged + listed
    for before, after in itertools.pairwise(timeline):
        assert after.start > before.start
        drift = abs((after.start - before.start).total_seconds() - before.duration)
        assert drift < 0.5, f"{after.filename} starts {drift:.2f} s off the end of {before.filename}"

    async def known(_: CameraConfig, __: str, filename: str) -> bool:
        return filename == "seg-000000.ts"

    assert "seg-000000.ts" not in [s.filename for s in await salvage_unlisted(camera, session, listed, known)]
