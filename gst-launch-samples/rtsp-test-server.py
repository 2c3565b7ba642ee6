#!/usr/bin/python3
"""A tiny RTSP server for trying rtsp-camera.sh without a camera (and for tests/samples.rs).

Serves a video file (default: ../shared/media/video/bikes.mp4) re-encoded as H.264 with a key
frame every second, so a client can start decoding at once, at rtsp://127.0.0.1:PORT/bikes.
Each client gets its own stream from the start of the file; it ends with the file.

Usage: rtsp-test-server.py [--port 8554] [--video FILE]
Needs Debian's python3-gi and gir1.2-gst-rtsp-server-1.0 (scripts/install-deps.sh installs them).
Prints "READY rtsp://..." once it listens.
"""

import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.environ.get("GST_YOLO_SHARED", os.path.join(repo, "..", "shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--video", default=os.path.join(shared, "media", "video", "bikes.mp4"))
    args = ap.parse_args()
    if not os.path.isfile(args.video):
        sys.exit(f"{args.video} not found: pass --video FILE")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # GStreamer's parser takes double-quoted strings; escape the path's own quotes.
    location = args.video.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! decodebin ! videoconvert '
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    server.get_mount_points().add_factory("/bikes", factory)
    if server.attach(None) == 0:
        sys.exit(f"could not listen on 127.0.0.1:{args.port}")
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}/bikes", flush=True)
    try:
        GLib.MainLoop().run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
