#!/usr/bin/env bash
# RTSP camera: receives an IP camera's RTSP stream, detects and draws objects, and shows the
# result in a window. rtspsrc picks the transport; add protocols=tcp for lossy networks.
# Usage: RTSP_URL=rtsp://user:pass@camera/stream rtsp-camera.sh
# To try it without a camera: gst-launch-samples/rtsp-test-server.py serves bikes.mp4 at
# rtsp://127.0.0.1:8554/bikes (the default below).
# A camera is live: frames that arrive too late for the model pass through without inference
# (qos). repeat-detections keeps the last boxes on them, so the overlay does not flicker.
set -euo pipefail
. "$(dirname "$0")/_env.sh"
MODEL=${GST_YOLO_MODEL:-$SHARED/models/yolov8n.onnx}
RTSP_URL=${RTSP_URL:-rtsp://127.0.0.1:8554/bikes}
check_model

# shellcheck disable=SC2086 # LIMIT and SINK are pipeline fragments, split on purpose
gst-launch-1.0 "${FLAGS[@]}" \
  rtspsrc location="$RTSP_URL" latency=200 ! decodebin ! $LIMIT videoconvert \
  ! yolodetect model="$MODEL" repeat-detections=true ! yolooverlay ! videoconvert \
  ! ${SINK:-autovideosink}
