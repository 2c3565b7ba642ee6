#!/usr/bin/env bash
# Builds what scripts/gpu/h100-proof.sh runs and puts it into DEST/.gpu/ (git-ignored) beside the
# payload of scripts/gpu/make-payload.sh: the yolo-bench example and the engine/yolodetect test
# binaries (stripped, xz-packed) and the few shared files they read (yolov8n.onnx, the reference
# images and detections). Run here (Debian 12 builds run on the Ubuntu 24.04 GPU host).
#   usage: scripts/gpu/pack-proof.sh [DEST_REPO_ROOT]     (default: this repository)
#   EXAMPLES (default: yolo-bench) and TESTS (default: engine yolodetect multistream) pick what
#   travels, e.g. EXAMPLES="yolo-bench yolo-soak" TESTS="live metrics" for live-ops.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dest=$(cd "${1:-$repo}" && pwd)
shared=${GST_YOLO_SHARED:-$repo/../shared}
g=$dest/.gpu
cd "$repo"
examples=${EXAMPLES:-yolo-bench}
for e in $examples; do cargo build --release --example "$e"; done
# `cargo test --no-run` names each test executable it built.
tests=$(cargo test --release --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in sys.argv[1].split():
        print(m["target"]["name"], m["executable"])' "${TESTS:-engine yolodetect multistream}")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
for e in $examples; do install -m755 "target/release/examples/$e" "$work/bin/"; done
while read -r name exe; do
  [ -n "$exe" ] || continue # TESTS named none
  install -m755 "$exe" "$work/bin/test-$name"
done <<<"$tests"
strip "$work"/bin/*
mkdir -p "$g"
tar -C "$work" -cf - bin | xz -6 -T2 > "$g/gst-yolo-bins.tar.xz"
rm -rf "$g/shared"
mkdir -p "$g/shared/models" "$g/shared/media/png" "$g/shared/media/images" "$g/shared/media/video" "$g/shared/reference"
# MODELS (default: both) trims what travels: a call carries at most 64 MiB, and
# multistream-bench.sh needs only the dynamic model (it stands in for the static one).
for m in ${MODELS:-yolov8n.onnx yolov8n-dynamic.onnx}; do cp "$shared/models/$m" "$g/shared/models/"; done
cp "$shared"/media/png/*.png "$g/shared/media/png/"
if [ -z "${MODELS:-}" ]; then
  cp "$shared"/media/images/*.jpg "$g/shared/media/images/"
  cp -r "$shared/media/coco8" "$g/shared/media/"
fi
cp "$shared/media/video/bikes.mp4" "$g/shared/media/video/"
cp "$shared"/reference/*.json "$g/shared/reference/"
cp "$repo/scripts/gpu/h100-proof.sh" "$repo/scripts/gpu/multistream-bench.sh" "$repo/scripts/gpu/live-ops.sh" "$g/"
du -sh "$g" "$g"/* | sort -h
