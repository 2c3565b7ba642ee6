#!/usr/bin/env bash
# File to annotated MP4: decodes a video file, detects and draws objects, and encodes the
# annotated frames as H.264 into an MP4 file.
# Usage: file-to-mp4.sh [VIDEO] [OUTPUT.mp4]   (defaults: bikes.mp4, out/annotated.mp4)
set -euo pipefail
. "$(dirname "$0")/_env.sh"
MODEL=${GST_YOLO_MODEL:-$SHARED/models/yolov8n.onnx}
INPUT=${1:-$SHARED/media/video/bikes.mp4}
OUTPUT=${2:-$REPO/out/annotated.mp4}
check_model
mkdir -p "$(dirname "$OUTPUT")"

# shellcheck disable=SC2086 # LIMIT and SINK are pipeline fragments, split on purpose
gst-launch-1.0 "${FLAGS[@]}" \
  filesrc location="$INPUT" ! decodebin ! $LIMIT videoconvert \
  ! yolodetect model="$MODEL" ! yolooverlay ! videoconvert \
  ! x264enc speed-preset=veryfast ! mp4mux \
  ! ${SINK:-filesink location="$OUTPUT"}
echo "wrote $OUTPUT"
