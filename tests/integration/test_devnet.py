"""The devnet itself: cameras, status shape, lifecycle from the CLI."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from node.devnet import network
from node.procs import pid_alive, pids_mentioning
from node.toolchain import require_system


async def _ffprobe(url: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        str(require_system("ffprobe", "ffmpeg")),
        "-v",
        "error",
        "-rtsp_transport",
        "tcp",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=codec_name,width,height",
        "-of",
        "json",
        url,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0
    result: dict[str, Any] = json.loads(out)
    return result


async def test_camera_stream_is_h264(devnet: dict[str, Any]) -> None:
    (camera,) = devnet["cameras"]
    probe = await _ffprobe(camera["rtsp"])
    assert probe["streams"][0]["codec_name"] == "h264"
    assert probe["streams"][0]["width"] > 0


async def test_status_shape(devnet: dict[str, Any]) -> None:
    assert set(devnet["nodes"]) == {"producer", "mirror1", "mirror2"}
    for node in devnet["nodes"].values():
        assert {"kubo_api", "kubo_gateway", "peer_id", "cluster_api"} <= set(node)
    assert devnet["catalog"].startswith("mongodb://127.0.0.1:")
    assert devnet["cameras"][0].keys() >= {"factory", "device", "rtsp"}
    assert devnet["running"] is True
    assert set(devnet["mirrors"]) == {"mirror1", "mirror2"}
    assert all(m["admin"].startswith("http://127.0.0.1:") for m in devnet["mirrors"].values())
    gateways = devnet["gateways"]
    assert set(gateways) == {"gateway1", "gateway2"}
    assert gateways["gateway1"]["store"] == devnet["mirrors"]["mirror1"]["store"]
    assert gateways["gateway2"]["store"] == devnet["mirrors"]["mirror2"]["store"]
    assert all(g["url"].startswith("http://127.0.0.1:") for g in gateways.values())
    assert devnet["web"]["url"].startswith("http://127.0.0.1:") and devnet["web"]["url"].endswith("/")
    assert Path(devnet["web"]["credentials"]).stat().st_mode & 0o077 == 0
    assert {"gateway1", "gateway2", "nginx"} <= set(devnet["processes"])


async def test_up_on_a_running_dir_is_a_clear_error(devnet: dict[str, Any]) -> None:
    with pytest.raises(network.DevnetError, match="already running"):
        await network.up(Path(devnet["dir"]), mirrors=2, cameras=1)


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_lifecycle_leaves_nothing_behind(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    code, out, err = await _cli(
        "devnet", "up", "--dir", str(directory), "--mirrors", "1", "--cameras", "1", "--detach"
    )
    try:
        assert code == 0, err
        code, out, _ = await _cli("devnet", "status", "--dir", str(directory), "--json")
        assert code == 0
        info = json.loads(out)
        pids = [p["pid"] for p in info["processes"].values()]
        # catalog, (kubo + cluster) x 2, camera, chain, producer, mirror, anchor, 2 gateways, nginx
        assert len(pids) == 1 + 2 * 2 + 1 + 1 + 1 + 1 + 1 + 2 + 1
        assert all(p["alive"] for p in info["processes"].values())
        # One mirror: both gateways serve its store.
        assert {g["store"] for g in info["gateways"].values()} == {info["mirrors"]["mirror1"]["store"]}
        credentials = json.loads(Path(info["web"]["credentials"]).read_text())
        code, out, _ = await _cli("devnet", "status", "--dir", str(directory))
        assert code == 0
        assert out.rstrip().splitlines()[-1].lstrip().startswith("or demo-admin / ")
        assert credentials["users"]["demo-client"]["password"] in out

        code, _, err = await _cli(
            "devnet", "up", "--dir", str(directory), "--mirrors", "1", "--cameras", "1", "--detach"
        )
        assert code == 1 and "already running" in err

        code, out, _ = await _cli("devnet", "camera", "stop", "cam1", "--dir", str(directory))
        assert code == 0 and "stopped" in out
        cams = json.loads((await _cli("devnet", "status", "--dir", str(directory), "--json"))[1])["cameras"]
        assert cams[0]["running"] is False
        code, _, err = await _cli("devnet", "camera", "start", "cam1", "--dir", str(directory))
        assert code == 0, err
    finally:
        code, out, _ = await _cli("devnet", "down", "--dir", str(directory))
    assert code == 0
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not pids_mentioning(directory), "a process of the devnet outlived it"
    code, _, _ = await _cli("devnet", "status", "--dir", str(directory))
    assert code == 3

    # Up again in the same directory: same identities, data kept.
    code, _, err = await _cli(
        "devnet", "up", "--dir", str(directory), "--mirrors", "1", "--cameras", "1", "--detach"
    )
    try:
        assert code == 0, err
        again = json.loads((await _cli("devnet", "status", "--dir", str(directory), "--json"))[1])
        assert again["nodes"]["producer"]["peer_id"] == info["nodes"]["producer"]["peer_id"]
        assert again["web"] == info["web"]
        assert json.loads(Path(again["web"]["credentials"]).read_text()) == credentials  # same users
    finally:
        assert (await _cli("devnet", "down", "--dir", str(directory)))[0] == 0
    assert not [p["pid"] for p in again["processes"].values() if pid_alive(p["pid"])]


async def test_down_without_devnet_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = await _cli("devnet", "down", "--dir", str(tmp_path))
    assert code == 1
    assert "no devnet" in err
