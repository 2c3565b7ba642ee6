#!/usr/bin/env bash
# V4L2 webcam: captures a USB/V4L2 camera (raw or MJPEG, decodebin handles both), detects and
# draws objects, and shows the result in a window.
# Usage: DEVICE=/dev/video0 v4l2-webcam.sh   (SOURCE replaces v4l2src, e.g. for tests)
set -euo pipefail
. "$(dirname "$0")/_env.sh"
MODEL=${GST_YOLO_MODEL:-$SHARED/models/yolov8n.onnx}
DEVICE=${DEVICE:-/dev/video0}
check_model

# shellcheck disable=SC2086 # LIMIT, SOURCE and SINK are pipeline fragments, split on purpose
gst-launch-1.0 "${FLAGS[@]}" \
  ${SOURCE:-v4l2src device="$DEVICE"} ! decodebin ! $LIMIT videoconvert \
  ! yolodetect model="$MODEL" ! yolooverlay ! videoconvert \
  ! ${SINK:-autovideosink}
