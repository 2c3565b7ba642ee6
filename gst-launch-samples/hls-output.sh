#!/usr/bin/env bash
# HLS output: annotates a video file and writes an HLS stream (playlist.m3u8 + 2-second MPEG-TS
# segments) into a folder that any web server can serve.
# Usage: hls-output.sh [VIDEO] [FOLDER]   (defaults: bikes.mp4, out/hls)
set -euo pipefail
. "$(dirname "$0")/_env.sh"
MODEL=${GST_YOLO_MODEL:-$SHARED/models/yolov8n.onnx}
INPUT=${1:-$SHARED/media/video/bikes.mp4}
OUTDIR=${2:-$REPO/out/hls}
check_model
mkdir -p "$OUTDIR"

# hlssink2 cuts segments at key frames; key-int-max=50 gives one every 2 s at 25 fps.
# playlist-length=0 keeps every segment in the playlist (video on demand); use the default
# (5) with max-files for a live window. async-handling=true: with GStreamer 1.22 and an upstream
# slower than real time, the pipeline otherwise sometimes never posts EOS after the last
# segment is written, and gst-launch-1.0 waits for ever.
# shellcheck disable=SC2086 # LIMIT is a pipeline fragment, split on purpose
gst-launch-1.0 "${FLAGS[@]}" \
  filesrc location="$INPUT" ! decodebin ! $LIMIT videoconvert \
  ! yolodetect model="$MODEL" ! yolooverlay ! videoconvert \
  ! x264enc speed-preset=veryfast key-int-max=50 ! h264parse \
  ! hlssink2 target-duration=2 playlist-length=0 max-files=0 async-handling=true \
  playlist-location="$OUTDIR/playlist.m3u8" location="$OUTDIR/segment%05d.ts"
echo "wrote $OUTDIR/playlist.m3u8"
