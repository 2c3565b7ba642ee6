#!/usr/bin/env bash
# File to screen: decodes a video file, detects objects with yolodetect, draws them with
# yolooverlay and shows the result in a window.
# Usage: file-to-screen.sh [VIDEO]   (default: ../shared/media/video/bikes.mp4)
set -euo pipefail
. "$(dirname "$0")/_env.sh"
MODEL=${GST_YOLO_MODEL:-$SHARED/models/yolov8n.onnx}
INPUT=${1:-$SHARED/media/video/bikes.mp4}
check_model

# shellcheck disable=SC2086 # LIMIT and SINK are pipeline fragments, split on purpose
gst-launch-1.0 "${FLAGS[@]}" \
  filesrc location="$INPUT" ! decodebin ! $LIMIT videoconvert \
  ! yolodetect model="$MODEL" ! yolooverlay ! videoconvert \
  ! ${SINK:-autovideosink}
