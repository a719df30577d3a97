"""The web UI in headless Chromium, through the devnet's nginx, as the demo client.

tests/browser/watch.cjs (playwright-core driving Debian's chromium) logs in, picks the camera,
watches live, clicks the day timeline to go back, replays a range and exports it; each step prints
one JSON line, checked here. Screenshots are saved under this test's tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.procs import stop_group

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "browser" / "watch.cjs"
CHROMIUM = Path("/usr/bin/chromium")
DEADLINE_S = 240


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


async def _drive(devnet: dict[str, Any], out: Path) -> dict[str, dict[str, Any]]:
    credentials = json.loads(Path(devnet["web"]["credentials"]).read_text())
    password_file = out / "password"
    password_file.write_text(credentials["users"]["demo-client"]["password"])
    password_file.chmod(0o600)
    node = shutil.which("node")
    assert node, "node is not installed (make deps installs it)"
    process = await asyncio.create_subprocess_exec(
        node,
        str(DRIVER),
        "--url",
        devnet["web"]["url"],
        "--user",
        "demo-client",
        "--password-file",
        str(password_file),
        "--camera",
        "factory1/cam1",
        "--out",
        str(out),
        "--chromium",
        str(CHROMIUM),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so Chromium goes with it
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=DEADLINE_S)
    finally:
        password_file.unlink(missing_ok=True)
        await stop_group(process.pid, name="browser driver", term_timeout=5)
    steps = {}
    for line in stdout.decode().splitlines():
        record = json.loads(line)
        steps[record["step"]] = record
        print(f"[browser] {line}")
    assert process.returncode == 0 and "done" in steps, (
        f"driver exit {process.returncode}: {steps.get('failed')}\n{stderr.decode()[-2000:]}"
    )
    return steps


async def test_demo_client_watches_seeks_replays_and_exports_in_chromium(
    devnet: dict[str, Any], tmp_path: Path
) -> None:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: `make deps-test` (run by `make test`) installs Debian's chromium"
    )
    steps = await _drive(devnet, tmp_path)

    assert steps["loaded"]["hls"] and steps["loaded"]["h264"]
    assert steps["logged-in"]["who"] == "demo-client (client)"
    assert steps["logged-in"]["cameras"] == ["factory1/cam1"]  # only the own factory's camera

    live = steps["live"]
    assert live["mode"] == "live" and live["to"] >= live["from"] + 3
    assert live["behind_s"] is not None and live["behind_s"] < 30  # live means close to now

    seek = steps["seek"]
    assert seek["mode"].startswith("day ") and seek["to"] >= seek["from"] + 2
    # Clicked at the start of the recorded span: the picture is from there, well before live.
    assert abs((_instant(seek["wallclock"]) - _instant(seek["span_start"])).total_seconds()) < 30
    assert seek["behind_live_s"] > 10

    replay = steps["replay"]
    assert replay["mode"].startswith("replay ") and replay["to"] >= replay["from"] + 2
    assert replay["live"] is False  # a VOD playlist (ENDLIST)
    segment = 2.5  # the devnet cuts 2 s segments (at keyframes, so a little longer at times)
    # The segments overlapping the range: up to one segment's overhang at each end, none missing.
    assert replay["range_s"] - segment <= replay["totalduration"] <= replay["range_s"] + 2 * segment
    assert (_instant(replay["first_pdt"]) - _instant(replay["range_start"])).total_seconds() <= 0

    export = steps["export"]
    assert Path(export["file"]).suffix == ".mp4" and export["bytes"] > 10_000
    assert export["status"].startswith("exported")

    assert steps["done"]["console_errors"] == []
    for name in ("live.png", "seek.png", "replay.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    print(f"\n[browser] screenshots: {tmp_path}/{{live,seek,replay}}.png")
