#!/usr/bin/env bash
# Many streams, one model: four video sources (files or URIs, decoded by uridecodebin) share
# one yolodetect model instance (model-instance-id) that batches their frames into one model
# call; each stream gets its own detections on its own buffers and goes to its own sink.
# Usage: many-streams.sh [VIDEO_OR_URI ...]   (up to 4; default: bikes.mp4 four times)
set -euo pipefail
. "$(dirname "$0")/_env.sh"
MODEL=${GST_YOLO_MODEL:-$SHARED/models/yolov8n.onnx}
check_model
inputs=("$@")
[ ${#inputs[@]} -gt 0 ] || inputs=("$SHARED/media/video/bikes.mp4")
branches=()
for i in 0 1 2 3; do
  src=${inputs[$((i % ${#inputs[@]}))]}
  case "$src" in *://*) uri=$src ;; *) uri="file://$(realpath "$src")" ;; esac
  # shellcheck disable=SC2086 # LIMIT and SINK are pipeline fragments, split on purpose
  branches+=(uridecodebin uri="$uri" ! $LIMIT videoconvert
    ! yolodetect model="$MODEL" model-instance-id=cameras batch-size=4
    ! yolooverlay ! videoconvert ! ${SINK:-autovideosink})
done
gst-launch-1.0 "${FLAGS[@]}" "${branches[@]}"
