#!/usr/bin/env bash
# On an NVIDIA GPU host without cargo or network, in one go: ONNX Runtime's CUDA provider alone
# against the yolodetect pipeline (640x640 and 1080p H.264), where a frame's time goes, detections
# against the reference on the CUDA provider, GPU memory over pipeline start/stop cycles, and what
# the tensorrt and auto providers say. Prints a summary table at the end.
#   usage (repository root, .gpu/ filled by scripts/gpu/make-payload.sh + scripts/gpu/pack-proof.sh):
#     scripts/gpu/h100-proof.sh [LOG_DIR]          (LOG_DIR default: $OUT or /tmp/h100-proof)
# Total run time about 6-9 minutes on an H100 (the start/stop cycles stop early at a time budget).
set -uo pipefail
repo=$(pwd)
[ -d "$repo/.gpu" ] || { echo "run from the repository root (no .gpu/)" >&2; exit 1; }
logs=${1:-${OUT:-/tmp/h100-proof}}
mkdir -p "$logs"
budget=${PROOF_BUDGET_S:-540}
# shellcheck source=/dev/null
source "$repo/scripts/gpu/env.sh" && unpack >/dev/null || exit 1
mkdir -p /tmp/gyb && xz -dc "$repo/.gpu/gst-yolo-bins.tar.xz" | tar -C /tmp/gyb -xf - || exit 1
B=/tmp/gyb/bin
export GST_YOLO_SHARED=$repo/.gpu/shared YOLO_BENCH_QUIET=1
M=$GST_YOLO_SHARED/models/yolov8n.onnx
V=$repo/.gpu/bikes-1080p.mp4
summary=$logs/summary.txt; : >"$summary"
row() { printf '%-58s %s\n' "$1" "$2" | tee -a "$summary"; }
log() { echo "== $*"; }
val() { grep -o "$1=[^ ]*" | head -n1 | cut -d= -f2; }

log "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | tee "$logs/gpu.txt"
cuda=$(sed -n 's/.*"cuda" : {[^}]*"version" : "\([^"]*\)".*/\1/p' /usr/local/cuda/version.json 2>/dev/null | head -n1)
[ -n "$cuda" ] || cuda=$(ls /usr/local/cuda/lib64/libcudart.so.* 2>/dev/null | head -n1)
ortv=$(ls "$GST_YOLO_ORT_DIR" | sed -n 's/^libonnxruntime\.so\.\(1\.[0-9.]*\)$/\1/p')
cudnn=$(ldconfig -p 2>/dev/null | grep -o 'libcudnn\.so\.[0-9]*' | head -n1)
row "GPU" "$(cut -d, -f1,4 "$logs/gpu.txt" | head -n1) (driver $(cut -d, -f2 "$logs/gpu.txt" | head -n1 | tr -d ' '))"
row "ONNX Runtime / CUDA / cuDNN" "$ortv / $cuda / ${cudnn:-cudnn from LD_LIBRARY_PATH}"
row "CPU" "$(nproc) x $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"

log "(1) ONNX Runtime alone (Engine::run_input: H2D copy + run + D2H copy)"
eng() { "$B/yolo-bench" engine --model "$M" --iters 2000 "$@" 2>&1 | tee -a "$logs/bench.txt" | grep ENGINE; }
e_def=$(eng --provider cuda); echo "$e_def"
e_graph=$(eng --provider cuda --graph); echo "$e_graph"
e_tf32=$(eng --provider cuda --tf32); echo "$e_tf32"
e_gtf=$(eng --provider cuda --graph --tf32); echo "$e_gtf"
e_nob=$(eng --provider cuda --no-binding); echo "$e_nob"
e_pag=$(GST_YOLO_NO_PINNED=1 eng --provider cuda); echo "$e_pag"
e_cpu=$("$B/yolo-bench" engine --model "$M" --iters 50 --provider cpu 2>&1 | grep ENGINE); echo "$e_cpu"
for l in "default (tf32 off, exhaustive, bound I/O):$e_def" "cuda-graph:$e_graph" "tf32:$e_tf32" \
         "cuda-graph + tf32:$e_gtf" "no I/O binding (host tensors):$e_nob" "bound I/O, pageable host input:$e_pag" "CPU provider (16 threads):$e_cpu"; do
  row "(1) run, ${l%%:*}" "$(echo "${l#*:}" | val mean) mean, $(echo "${l#*:}" | val p99) p99, $(echo "${l#*:}" | val fps) runs/s"
done

log "(2) pipeline, 640x640 RGB from videotestsrc"
pipe() { "$B/yolo-bench" pipeline "$1" 2>&1 | tee -a "$logs/bench.txt" | grep -E 'PIPELINE|yolo-bench'; }
src640="videotestsrc num-buffers=3000 pattern=smpte ! video/x-raw,format=RGB,width=640,height=640 ! queue max-size-buffers=8"
p640=$(pipe "$src640 ! yolodetect name=d model=\"$M\" execution-provider=cuda ! fakesink sync=false"); echo "$p640"
p640g=$(pipe "$src640 ! yolodetect name=d model=\"$M\" execution-provider=cuda cuda-graph=true ! fakesink sync=false"); echo "$p640g"
p640gt=$(pipe "$src640 ! yolodetect name=d model=\"$M\" execution-provider=cuda cuda-graph=true cuda-tf32=true ! fakesink sync=false"); echo "$p640gt"
p640p=$(pipe "$src640 ! yolodetect name=d model=\"$M\" execution-provider=cuda pipelined=true ! fakesink sync=false"); echo "$p640p"
p640gp=$(pipe "$src640 ! yolodetect name=d model=\"$M\" execution-provider=cuda cuda-graph=true pipelined=true ! fakesink sync=false"); echo "$p640gp"
p640gtp=$(pipe "$src640 ! yolodetect name=d model=\"$M\" execution-provider=cuda cuda-graph=true cuda-tf32=true pipelined=true ! fakesink sync=false"); echo "$p640gtp"
src_only=$(pipe "$src640 ! identity name=d ! fakesink sync=false"); echo "$src_only"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
row "(2) pipeline 640x640, cuda" "$(echo "$p640" | val fps) fps; (2)/(1) = $(ratio "$(echo "$p640" | val fps)" "$(echo "$e_def" | val fps)")"
row "(2) pipeline 640x640, cuda + cuda-graph" "$(echo "$p640g" | val fps) fps; (2)/(1) = $(ratio "$(echo "$p640g" | val fps)" "$(echo "$e_graph" | val fps)")"
row "(2) pipeline 640x640, cuda + cuda-graph + tf32" "$(echo "$p640gt" | val fps) fps; (2)/(1) = $(ratio "$(echo "$p640gt" | val fps)" "$(echo "$e_gtf" | val fps)")"
row "(2) pipeline 640x640, cuda, pipelined=true" "$(echo "$p640p" | val fps) fps; (2)/(1) = $(ratio "$(echo "$p640p" | val fps)" "$(echo "$e_def" | val fps)")"
row "(2) pipeline 640x640, cuda + cuda-graph, pipelined=true" "$(echo "$p640gp" | val fps) fps; (2)/(1) = $(ratio "$(echo "$p640gp" | val fps)" "$(echo "$e_graph" | val fps)")"
row "(2) pipeline 640x640, cuda + cuda-graph + tf32, pipelined=true" "$(echo "$p640gtp" | val fps) fps; (2)/(1) = $(ratio "$(echo "$p640gtp" | val fps)" "$(echo "$e_gtf" | val fps)")"
row "    per frame (cuda): pre / infer / post / meta" "$(echo "$p640" | val pre) / $(echo "$p640" | val infer) / $(echo "$p640" | val post) / $(echo "$p640" | val meta)"
row "    per frame (cuda-graph): pre / infer / post / meta" "$(echo "$p640g" | val pre) / $(echo "$p640g" | val infer) / $(echo "$p640g" | val post) / $(echo "$p640g" | val meta)"
row "    videotestsrc alone" "$(echo "$src_only" | val fps) fps"

log "(3) pipeline, 1080p H.264 (openh264dec on the CPU, I420 into yolodetect)"
dec="filesrc location=\"$V\" ! qtdemux ! h264parse ! openh264dec ! queue max-size-buffers=8"
p1080=$(pipe "$dec ! yolodetect name=d model=\"$M\" execution-provider=cuda ! fakesink sync=false"); echo "$p1080"
p1080g=$(pipe "$dec ! yolodetect name=d model=\"$M\" execution-provider=cuda cuda-graph=true ! fakesink sync=false"); echo "$p1080g"
p1080p=$(pipe "$dec ! yolodetect name=d model=\"$M\" execution-provider=cuda pipelined=true ! fakesink sync=false"); echo "$p1080p"
d1080=$(pipe "$dec ! identity name=d ! fakesink sync=false"); echo "$d1080"
row "(3) pipeline 1080p H.264, cuda" "$(echo "$p1080" | val fps) fps"
row "(3) pipeline 1080p H.264, cuda + cuda-graph" "$(echo "$p1080g" | val fps) fps"
row "(3) pipeline 1080p H.264, cuda, pipelined=true" "$(echo "$p1080p" | val fps) fps"
row "    per frame (cuda): pre / infer / post / meta" "$(echo "$p1080" | val pre) / $(echo "$p1080" | val infer) / $(echo "$p1080" | val post) / $(echo "$p1080" | val meta)"
row "    per frame (cuda-graph): pre / infer / post / meta" "$(echo "$p1080g" | val pre) / $(echo "$p1080g" | val infer) / $(echo "$p1080g" | val post) / $(echo "$p1080g" | val meta)"
row "    decode alone (openh264dec)" "$(echo "$d1080" | val fps) fps"

log "(4) detections against the reference on the CUDA provider"
export GST_YOLO_TEST_PROVIDER=cuda
"$B/test-yolodetect" --test-threads=1 reference_images_exact_pixels reference_images_decoded_jpeg \
  packed_layouts_match_exactly yuv_inputs_match_reference thresholds_and_class_filter_apply \
  pipelined_mode_gives_the_same_frames_and_detections \
  2>&1 | tee "$logs/tests.txt" | grep -E '^test |test result'
t1=$(grep 'test result' "$logs/tests.txt" | tail -n1)
"$B/test-engine" --test-threads=1 bound_io_matches_host_tensors 2>&1 | tee -a "$logs/tests.txt" | grep -E '^test |test result|difference|panicked'
# GPU-only tests are #[ignore]d so that a CPU run reports them as skipped, not passed.
"$B/test-engine" --test-threads=1 --ignored cuda_graph_needs_static_shapes 2>&1 | tee -a "$logs/tests.txt" | grep -E '^test |test result|panicked'
t2=$(grep 'test result' "$logs/tests.txt" | tail -n1)
GST_YOLO_NO_PINNED=1 "$B/test-engine" --test-threads=1 bound_io_matches_host_tensors 2>&1 | tee -a "$logs/tests.txt" | grep -E 'test result|difference|panicked'
grep -E 'panicked|problems|unmatched|extra output' "$logs/tests.txt" | head -n 20
unset GST_YOLO_TEST_PROVIDER
row "(4) reference tests, execution-provider=cuda" "${t1:-did not run}"
row "(4) engine: bound I/O and CUDA graph = host tensors" "${t2:-did not run}"
"$B/yolo-bench" compare --model "$M" --provider cuda "$GST_YOLO_SHARED"/media/png/*.png 2>&1 | tee -a "$logs/bench.txt" | grep -E 'COMPARE|yolo-bench'
while read -r l; do
  row "    vs CPU, $(echo "$l" | awk '{print $2, $3}')" "$(echo "$l" | sed 's/.*vs cpu: //')"
done < <(grep COMPARE "$logs/bench.txt")

log "(6) tensorrt and auto on this host"
trt=$("$B/yolo-bench" pipeline "videotestsrc num-buffers=5 ! yolodetect name=d model=\"$M\" execution-provider=tensorrt ! fakesink" 2>&1 | tail -n3)
echo "$trt" | tee -a "$logs/bench.txt"
auto=$(env -u YOLO_BENCH_QUIET "$B/yolo-bench" pipeline "videotestsrc num-buffers=30 ! yolodetect name=d model=\"$M\" execution-provider=auto ! fakesink" 2>&1)
echo "$auto" | tee -a "$logs/bench.txt"
row "(6) execution-provider=tensorrt" "$(echo "$trt" | grep -o 'execution provider .*' | cut -c1-150)..."
row "(6) execution-provider=auto runs on" "$(echo "$auto" | grep PIPELINE | val provider)"

log "(5) GPU memory over start/stop cycles (heuristic conv search to keep a start short)"
if [ -n "${PROOF_SKIP_CYCLES:-}" ]; then echo "skipped (PROOF_SKIP_CYCLES)"; else
left=$((budget - SECONDS - 15)); [ $left -lt 30 ] && left=30
"$B/yolo-bench" cycles "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=640,height=640 ! yolodetect model=\"$M\" execution-provider=cuda cuda-conv-algo-search=heuristic ! fakesink" \
  --counts 1,10,100,300,1000 --max-seconds "$left" 2>&1 | tee "$logs/cycles.txt" | grep -E 'CYCLES|yolo-bench'
while read -r l; do
  row "(5) $(echo "$l" | awk '{print $2}')" "$(echo "$l" | cut -d' ' -f3-)"
done < <(grep -E '^CYCLES (before|after)' "$logs/cycles.txt")
fi

echo; echo "================ summary (${SECONDS}s) ================"; cat "$summary"
