#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Local vs remote inference on this machine: yolodetect with its own ONNX Runtime session against
# yolodetect sending the same frames to KServe's ModelServer (scripts/kserve_yolo.py, same model,
# ONNX Runtime CPU) over loopback gRPC, for 1 and 4 streams (one model instance per side, batch
# size = streams). Prints one table: aggregate fps, per-frame latency through yolodetect p50/p99,
# and the CPU cores the client process used (the server's are not counted; on one machine they
# compete for the same cores, so this measures the protocol's cost, not a speed-up).
#   scripts/bench-remote.sh                (about 3 minutes on 2 cores)
#   BENCH_FRAMES=N  frames per stream (default 60)   BENCH_THREADS=N  ORT threads (default nproc)
#   BENCH_NS="1 4"  stream counts
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SHARED=${GST_YOLO_SHARED:-$root/../shared}
export GST_YOLO_SHARED=$SHARED YOLO_BENCH_QUIET=1
M=$SHARED/models/yolov8n.onnx
FRAMES=${BENCH_FRAMES:-60}
THREADS=${BENCH_THREADS:-$(nproc)}
NS=${BENCH_NS:-1 4}
PY=${GST_YOLO_KSERVE_PYTHON:-$root/.kserve/bin/python}
[ -x "$PY" ] || scripts/install-kserve.sh
cargo build -q --release --example yolo-bench
bench=$root/target/release/examples/yolo-bench

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" scripts/kserve_yolo.py --model "$M" --name yolov8n --grpc-port "$port" --threads "$THREADS" \
  >/tmp/bench-remote-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 900); do
  (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat /tmp/bench-remote-server.log; exit 1; }
  sleep 0.1
done

src="multifilesrc location=$SHARED/media/images/bus.jpg loop=true num-buffers=$FRAMES caps=image/jpeg,framerate=25/1 ! jpegdec ! videoconvert ! video/x-raw,format=RGB"
echo "machine: $(nproc) x $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: KServe $("$PY" -c 'import importlib.metadata as m; print(m.version("kserve"), "onnxruntime", m.version("onnxruntime"))'), $THREADS threads; $FRAMES frames per stream of bus.jpg (810x1080)"
printf '%-8s %-8s %8s %10s %10s %10s\n' side streams fps p50-ms p99-ms client-cores
for n in $NS; do
  for side in local remote; do
    case $side in
      local) det="model=$M num-threads=$THREADS" ;;
      remote) det="inference-server=grpc://127.0.0.1:$port server-model=yolov8n model=$M" ;;
    esac
    desc="$src ! yolodetect name=d{i} $det model-instance-id=bench-$side batch-size=$n batch-timeout=50 ! fakesink sync=false"
    line=$("$bench" multistream "$desc" --streams "$n" 2>&1 | grep '^MULTI') || { echo "$side $n: failed"; continue; }
    v() { echo "$line" | grep -o "$1=[^ ]*" | cut -d= -f2 | tr -d 'ms'; }
    printf '%-8s %-8s %8s %10s %10s %10s\n' "$side" "$n" "$(v fps)" "$(v latency-p50)" "$(v latency-p99)" "$(v cpu-cores)"
  done
done
