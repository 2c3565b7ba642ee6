#!/usr/bin/env bash
# RTMP push: annotates a video file and publishes it live to an RTMP server (nginx-rtmp,
# YouTube/Twitch ingest, MediaMTX) as H.264 in FLV.
# Usage: RTMP_URL=rtmp://server/live/key rtmp-push.sh [VIDEO]
# SINK replaces rtmpsink (tests write the FLV to a file instead).
set -euo pipefail
. "$(dirname "$0")/_env.sh"
MODEL=${GST_YOLO_MODEL:-$SHARED/models/yolov8n.onnx}
INPUT=${1:-$SHARED/media/video/bikes.mp4}
RTMP_URL=${RTMP_URL:-rtmp://127.0.0.1/live/yolo}
check_model

# Key frames every 2 s (50 frames at 25 fps) so viewers can join quickly.
# shellcheck disable=SC2086 # LIMIT and SINK are pipeline fragments, split on purpose
gst-launch-1.0 "${FLAGS[@]}" \
  filesrc location="$INPUT" ! decodebin ! $LIMIT videoconvert \
  ! yolodetect model="$MODEL" ! yolooverlay ! videoconvert \
  ! x264enc tune=zerolatency speed-preset=veryfast bitrate=2000 key-int-max=50 ! h264parse \
  ! flvmux streamable=true ! ${SINK:-rtmpsink location="$RTMP_URL live=1"}
