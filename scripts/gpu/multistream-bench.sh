#!/usr/bin/env bash
# Many cameras, one model, on an NVIDIA GPU host (no cargo, no network), in one go: checks that
# the GPU path is right, then prints one table with, for N = 1, 8, 32 and 64 copies of the 1080p
# H.264 clip in one process, `nvh264dec ! yolodetect model-instance-id=... batch-size=...` end to
# end (aggregate fps, per-frame latency through yolodetect p50/p99, GPU memory, host CPU cores)
# beside the two ceilings measured in the same run: NVDEC decode alone for N streams, and ONNX
# Runtime alone at the same batch size with device I/O.
#   usage (repository root; .gpu/ filled by scripts/gpu/make-payload.sh + scripts/gpu/pack-proof.sh):
#     scripts/gpu/multistream-bench.sh [LOG_DIR]      (LOG_DIR default: $OUT or /tmp/multistream)
#   QUICK=1: N = 1 and 8 only (a smoke run). NS="32 64" RUNS="2: 2:tf32" (workers:tf32 per row)
#   and SKIP_CHECKS=1 (no tests, no ceilings but the 2-session one) re-measure a few rows.
set -uo pipefail
repo=$(pwd)
[ -d "$repo/.gpu" ] || { echo "run from the repository root (no .gpu/)" >&2; exit 1; }
logs=${1:-${OUT:-/tmp/multistream}}
mkdir -p "$logs"
# shellcheck source=/dev/null
source "$repo/scripts/gpu/env.sh" && unpack >/dev/null || exit 1
mkdir -p /tmp/gyb && xz -dc "$repo/.gpu/gst-yolo-bins.tar.xz" | tar -C /tmp/gyb -xf - || exit 1
B=/tmp/gyb/bin
export GST_YOLO_SHARED=$repo/.gpu/shared YOLO_BENCH_QUIET=1
M=$GST_YOLO_SHARED/models/yolov8n-dynamic.onnx
# Only the dynamic model travels (64 MiB a call): it stands in for the static one in the tests.
[ -f "$GST_YOLO_SHARED/models/yolov8n.onnx" ] || cp "$M" "$GST_YOLO_SHARED/models/yolov8n.onnx"
V=$repo/.gpu/bikes-1080p.mp4
summary=$logs/summary.txt; : >"$summary"
row() { printf '%-44s %s\n' "$1" "$2" | tee -a "$summary"; }
log() { echo "== $*"; }
val() { grep -o "$1=[^ ]*" | head -n1 | cut -d= -f2; }

log "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$logs/gpu.txt"
row "GPU" "$(head -n1 "$logs/gpu.txt")"
row "CPU" "$(nproc) x $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
row "ONNX Runtime" "$(ls "$GST_YOLO_ORT_DIR" | sed -n 's/^libonnxruntime\.so\.\(1\.[0-9.]*\)$/\1/p')"
gst-inspect-1.0 nvh264dec >/dev/null 2>&1 && row "nvh264dec" "present" || row "nvh264dec" "MISSING"

log "smoke: one stream, nvh264dec ! yolodetect (CUDA memory, GPU letterbox)"
smoke="filesrc location=$V ! qtdemux ! h264parse ! nvh264dec ! identity eos-after=40 ! yolodetect name=d{i} model=$M execution-provider=cuda ! fakesink sync=false"
if ! timeout 180 "$B/yolo-bench" multistream "$smoke" --streams 1 >"$logs/smoke.txt" 2>&1; then
  cat "$logs/smoke.txt"; GST_DEBUG=yolodetect:5,nvh264dec:4 timeout 120 "$B/yolo-bench" multistream "$smoke" --streams 1 2>&1 | tail -n 40
  echo "smoke run failed: stopping here"; exit 1
fi
cat "$logs/smoke.txt"

[ "${SKIP_CHECKS:-0}" = 1 ] || {
log "correctness on the GPU (CUDA provider, GPU pre-processing)"
export GST_YOLO_TEST_PROVIDER=cuda
export GST_YOLO_TEST_H264=$V
for t in "yolodetect reference_images_exact_pixels" "yolodetect yuv_inputs_match_reference" \
         "yolodetect bikes_video_frames_match_reference" "yolodetect dynamic_model_matches_reference" \
         "multistream four_streams_batched_on_one_instance_match_each_stream_alone" \
         "multistream nvdec_cuda_memory_gives_the_detections_of_system_memory"; do
  set -- $t
  timeout 300 "$B/test-$1" --exact "$2" --include-ignored --test-threads=1 >"$logs/test-$2.txt" 2>&1
  rc=$?
  row "test $2" "$([ $rc = 0 ] && echo pass || echo "FAIL (rc $rc, $logs/test-$2.txt)")"
  [ $rc = 0 ] || tail -n 30 "$logs/test-$2.txt"
done
unset GST_YOLO_TEST_PROVIDER

}
log "ceilings: ONNX Runtime alone at batch B with device I/O"
declare -A ort
bs="1 8 32"; [ "${SKIP_CHECKS:-0}" = 1 ] && bs=""
for b in $bs; do
  for tf in "" --tf32; do
    l=$(timeout 120 "$B/yolo-bench" engine-batch --model "$M" --provider cuda --batch $b $tf --iters $((b == 1 ? 300 : 60)) 2>&1 | tee -a "$logs/bench.txt" | grep ENGINEB)
    echo "$l"; ort[$b$tf]=$(echo "$l" | val images/s)
    row "ORT alone batch $b ${tf:-fp32} (images/s)" "${ort[$b$tf]} ($(echo "$l" | val mean) per run)"
  done
done
for tf in "" --tf32; do
  l=$(timeout 120 "$B/yolo-bench" engine-batch --model "$M" --provider cuda --batch 32 --streams 2 $tf --iters 60 2>&1 | tee -a "$logs/bench.txt" | grep 'ENGINEB.*workers')
  echo "$l"; ort[32w2$tf]=$(echo "$l" | val images/s)
  row "ORT alone batch 32 ${tf:-fp32}, 2 sessions at once" "${ort[32w2$tf]} images/s"
done

dec() { echo "filesrc location=$V ! qtdemux ! h264parse ! nvh264dec ! identity name=d{i} ! fakesink sync=false"; }
det() { # $1 batch, $2 workers, $3 extra caps, $4 extra yolodetect options
  echo "filesrc location=$V ! qtdemux ! h264parse ! nvh264dec ${3:-} ! yolodetect name=d{i} model=$M execution-provider=cuda model-instance-id=bench batch-size=$1 inference-workers=$2 batch-timeout=20 ${4:-} ! fakesink sync=false"
}
ms() { timeout 120 "$B/yolo-bench" multistream "$1" --streams "$2" 2>&1 | tee -a "$logs/bench.txt" | grep -E 'MULTI|STATS|yolo-bench'; }
fmt='%-7s %-5s %-7s %-5s %-8s %-8s %-8s %-7s %-8s %-8s %-9s %-6s %-5s\n'
printf "\n$fmt" streams batch workers tf32 fps dec-only ORT p50-ms p99-ms GPU-MiB yolo-MiB CPU ratio | tee -a "$summary"
ns=${NS:-1 8 32 64}; [ "${QUICK:-0}" = 1 ] && ns="1 8"
for n in $ns; do
  b=$((n < 32 ? n : 32))
  d=$(ms "$(dec)" $n); echo "$d"; dfps=$(echo "$d" | val fps); dmem=$(echo "$d" | val gpu-mem | tr -d MiB)
  runs="1:"; [ $n -ge 32 ] && runs="1: 2: 2:tf32"; runs=${RUNS:-$runs}
  for r in $runs; do
    w=${r%%:*}; tf=${r#*:}
    opt=""; [ "$tf" = tf32 ] && opt="cuda-tf32=true"
    out=$(ms "$(det $b $w "" "$opt")" $n); echo "$out"
    fps=$(echo "$out" | val fps); mem=$(echo "$out" | val gpu-mem | tr -d MiB)
    o=${ort[$b${tf:+--tf32}]:-}; [ "$w" = 2 ] && [ $b = 32 ] && o=${ort[32w2${tf:+--tf32}]}
    ratio=$(awk -v f="$fps" -v d="$dfps" -v o="$o" 'BEGIN { m = (d < o ? d : o); if (m > 0) printf "%.2f", f / m; else print "n/a" }')
    printf "$fmt" $n $b $w "${tf:-no}" "$fps" "$dfps" "$o" "$(echo "$out" | val latency-p50)" "$(echo "$out" | val latency-p99)" \
      "$mem" "$(awk -v a="$mem" -v b="$dmem" 'BEGIN { if (a > 0 && b > 0) print a - b; else print "n/a" }')" \
      "$(echo "$out" | val cpu-cores)" "$ratio" | tee -a "$summary"
    echo "   $(echo "$out" | grep STATS)" | tee -a "$summary"
  done
done

[ "${SKIP_CHECKS:-0}" = 1 ] && exit 0
log "system memory instead of CUDA memory (the decoder downloads), 32 streams"
r=$(ms "$(det 32 2 '! video/x-raw,format=NV12')" 32); echo "$r"
row "32 streams, NV12 in system memory" "fps $(echo "$r" | val fps), p99 $(echo "$r" | val latency-p99) ms, CPU $(echo "$r" | val cpu-cores) cores"
log "summary"; cat "$summary"
