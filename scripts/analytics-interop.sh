#!/usr/bin/env bash
# Proof that gst-yolo's GstAnalyticsRelationMeta (feature v1_24) is the standard one, read by
# code that knows nothing of this crate (GStreamer >= 1.24, scripts/test-gst-versions.sh trixie
# runs it on 1.26):
#   1. a PyGObject script (scripts/analytics-check.py, GstAnalytics-1.0 typelib) reads the
#      object-detection mtds of bus.png, which must be the reference detections, and the
#      tracking mtds yolotrack relates to them on bikes.mp4;
#   2. upstream's objectdetectionoverlay (gst-plugins-bad) draws them: the output frame must
#      differ from the same pipeline without the overlay along every detected box's outline,
#      and barely anywhere else.
#   usage: scripts/analytics-interop.sh PATH/TO/libgstyolo.so   (built with --features v1_24)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
lib=${1:?usage: $0 PATH/TO/libgstyolo.so}
shared=$(cd "${GST_YOLO_SHARED:-$repo/../shared}" && pwd)
model=$shared/models/yolov8n.onnx
bus=$shared/media/png/bus.png
bikes=$shared/media/video/bikes.mp4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/plugin" && cp "$lib" "$work/plugin/"
export GST_PLUGIN_PATH=$work/plugin GST_REGISTRY=$work/registry.bin
echo "GStreamer $(gst-launch-1.0 --version | sed -n 's/.*version //p' | head -n 1)"
gst-inspect-1.0 objectdetectionoverlay >/dev/null || { echo "objectdetectionoverlay missing (gstreamer1.0-plugins-bad)" >&2; exit 1; }
gst-inspect-1.0 yolodetect >/dev/null

echo "-- PyGObject reader, bus.png"
python3 "$repo/scripts/analytics-check.py" "$model" "$bus" | tee "$work/bus.jsonl"
echo "-- PyGObject reader, bikes.mp4 (30 frames, tracked)"
python3 "$repo/scripts/analytics-check.py" "$model" "$bikes" 30 >"$work/bikes.jsonl"
echo "   $(wc -l <"$work/bikes.jsonl") object-detection mtds"

echo "-- objectdetectionoverlay"
# The same frame with and without the overlay, as raw RGB of the image's size.
for stage in "objectdetectionoverlay" "identity"; do
  gst-launch-1.0 -q filesrc location="$bus" ! pngdec ! videoconvert ! video/x-raw,format=RGB \
    ! yolodetect model="$model" ! videoconvert ! "$stage" ! videoconvert \
    ! video/x-raw,format=RGB ! filesink location="$work/$stage.rgb"
done

python3 - "$work" "$shared/reference/yolov8n-images.json" <<'EOF'
import json, sys
work, ref_path = sys.argv[1:]
problems = []

def iou(a, b):  # boxes as x1, y1, x2, y2
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0

# 1. bus.png: every reference box (conf >= 0.30) is an mtd of the same label, IoU >= 0.95.
dets = [json.loads(l) for l in open(f"{work}/bus.jsonl")]
ref = next(r for r in json.load(open(ref_path))["results"] if r["png"] == "png/bus.png")
for r in ref["detections"]:
    if r["conf"] < 0.30:
        continue
    best = max(
        (iou(r["box_xyxy"], [d["box"][0], d["box"][1], d["box"][0] + d["box"][2], d["box"][1] + d["box"][3]])
         for d in dets if d["label"] == r["class"]),
        default=0.0,
    )
    if best < 0.95:
        problems.append(f"reference {r['class']} {r['box_xyxy']}: best mtd IoU {best:.3f}")
print(f"bus.png: {len(dets)} mtds read through GstAnalytics, reference matched: {not problems}")

# 2. bikes.mp4: tracking mtds related to the detections, one per tracked detection, last seen
# at the frame's time, first seen constant per track.
bikes = [json.loads(l) for l in open(f"{work}/bikes.jsonl")]
tracked = [d for d in bikes if d["tracks"]]
first = {}
for d in tracked:
    if len(d["tracks"]) != 1:
        problems.append(f"frame {d['frame']} mtd {d['id']}: {len(d['tracks'])} tracking mtds")
    t = d["tracks"][0]
    if t["last_seen"] != d["pts"]:
        problems.append(f"frame {d['frame']}: track {t['id']} last seen {t['last_seen']} != pts {d['pts']}")
    if first.setdefault(t["id"], t["first_seen"]) != t["first_seen"]:
        problems.append(f"track {t['id']}: first seen changed")
frames = len({d["frame"] for d in bikes})
if len(tracked) < 10 or len(tracked) < len(bikes) // 2:
    problems.append(f"bikes.mp4: {len(tracked)} of {len(bikes)} detections tracked")
print(f"bikes.mp4: {len(bikes)} detections on {frames} frames, {len(tracked)} with a related "
      f"tracking mtd, {len(first)} track ids")

# 3. objectdetectionoverlay: pixels changed along every box's outline, few elsewhere.
w, h = ref["width"], ref["height"]
a = open(f"{work}/objectdetectionoverlay.rgb", "rb").read()
b = open(f"{work}/identity.rgb", "rb").read()
stride = (w * 3 + 3) // 4 * 4  # GStreamer pads RGB rows to 4 bytes
if len(a) != stride * h or len(b) != stride * h:
    sys.exit(f"unexpected frame sizes {len(a)}, {len(b)} for {w}x{h} RGB")
changed = bytearray(w * h)
for py in range(h):
    for px in range(w):
        o = py * stride + 3 * px
        if a[o:o + 3] != b[o:o + 3]:
            changed[py * w + px] = 1
near = bytearray(w * h)  # within 3 px of a box outline, or in the label band above it
for d in dets:
    x, y, bw, bh = d["box"]
    on, total = 0, 0
    for px in range(x, x + bw):
        for py in (y, y + bh - 1):
            if 0 <= py < h and px < w:
                total += 1
                on += any(changed[min(h - 1, max(0, py + k)) * w + px] for k in range(-3, 4))
    for py in range(y, y + bh):
        for px in (x, x + bw - 1):
            if 0 <= px < w and py < h:
                total += 1
                on += any(changed[py * w + min(w - 1, max(0, px + k))] for k in range(-3, 4))
    if total == 0 or on / total < 0.9:
        problems.append(f"{d['label']} {d['box']}: outline drawn on {on}/{total} pixels")
    for py in range(max(0, y - 40), min(h, y + bh + 4)):
        for px in range(max(0, x - 4), min(w, x + bw + 4)):
            near[py * w + px] = 1
n_changed = sum(changed)
stray = sum(1 for i in range(w * h) if changed[i] and not near[i])
print(f"objectdetectionoverlay: {n_changed} pixels changed, {stray} outside the boxes and labels")
if n_changed == 0 or stray > 0.05 * n_changed:
    problems.append(f"overlay: {n_changed} changed pixels, {stray} stray")
if problems:
    sys.exit("FAIL\n" + "\n".join(problems))
print("analytics interop: PASS")
EOF
