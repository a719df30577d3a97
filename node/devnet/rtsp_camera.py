"""A simulated IP camera: an RTSP server streaming an H.264 test pattern.

Runs under the system Python (``/usr/bin/python3``) because it needs Debian's
GStreamer bindings (python3-gi, gir1.2-gst-rtsp-server-1.0); it imports nothing
from camswarm. One process serves one camera, so stopping the process is a
camera outage and starting it again is the camera coming back.

The picture is a moving test pattern with the camera's label and a wall clock
burnt in, encoded at about 2 Mbit/s with a keyframe every second.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def pipeline(label: str, width: int, height: int, fps: int, kbps: int) -> str:
    safe_label = label.replace('"', "").replace("\\", "")
    return (
        f"( videotestsrc is-live=true pattern=smpte horizontal-speed=4 "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f'! textoverlay text="{safe_label}" valignment=top halignment=left font-desc="Sans 24" '
        f'! clockoverlay time-format="%Y-%m-%d %H:%M:%S" valignment=bottom halignment=right '
        f'font-desc="Sans 24" '
        f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={fps} "
        f"bframes=0 ! video/x-h264,profile=baseline "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--path", required=True, help="mount path, e.g. cam1")
    parser.add_argument("--label", required=True)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=540)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--kbps", type=int, default=2000)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline(args.label, args.width, args.height, args.fps, args.kbps))
    factory.set_shared(True)  # every client sees the same live stream, like a real camera
    server.get_mount_points().add_factory("/" + args.path.strip("/"), factory)
    if server.attach(None) == 0:
        print(f"rtsp_camera: cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"rtsp_camera: serving rtsp://{args.address}:{args.port}/{args.path.strip('/')}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
