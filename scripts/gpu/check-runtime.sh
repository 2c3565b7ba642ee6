#!/usr/bin/env bash
# Checks the unpacked GPU-host payload: run from the repository root after
#   source scripts/gpu/env.sh && unpack
# (on the GPU host, or here in a cleared environment:
#   env -i PATH=/usr/bin:/bin HOME=/tmp bash -c 'source scripts/gpu/env.sh && unpack && scripts/gpu/check-runtime.sh')
# 1. every carried ELF (GStreamer and ONNX Runtime) resolves each library to the carried copy, to
#    the host's base libraries (libc, libm, libstdc++, libgcc_s, libz, loader) or, for the CUDA
#    provider only, to CUDA/cuDNN; 2. plugins register from $GST_YOLO_GST_DIR only;
# 3. test pipelines run with GST_DEBUG=2 and LD_DEBUG=libs, and every library they load is carried or
#    base; 4. the 1080p video decodes to 250 frames, bit-exact to FFmpeg's decode made with the payload.
# Prints 'N passed, N failed'; exits non-zero on any failure.
set -uo pipefail
: "${GST_YOLO_GST_DIR:?source scripts/gpu/env.sh first}"
repo=$(cd "$(dirname "$0")/../.." && pwd)
shared=${GST_YOLO_SHARED:-$repo/../shared}
g=$GST_YOLO_GST_DIR o=$GST_YOLO_ORT_DIR
log=$(mktemp -d); trap 'rm -rf "$log"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
base_re='/(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|ld-linux-x86-64\.so\.2|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libz\.so\.1)$'
cuda_re='/lib(cuda|cudart|cublas|cublasLt|cufft|curand|cudnn[a-z_]*|nvrtc|nvJitLink|nvrtc-builtins)\.so'
carried_re="^($g|$o)/"

# 1. ldd of every carried ELF
for f in "$g"/bin/* "$g"/libexec/* "$g"/lib/*.so* "$g"/lib/gstreamer-1.0/*.so "$o"/*.so*; do
  [ -L "$f" ] && continue
  out=$(ldd "$f" 2>&1)
  stray=$(echo "$out" | awk '/=>/ { print $1, $3 }' | while read -r n p; do
      if [[ $f == "$o"/libonnxruntime_providers_cuda.so && /$n =~ $cuda_re ]]; then
        # CUDA, cuBLAS, cuRAND and the driver come from the host; needed only where there is a GPU
        [ "$p" = not ] && [ -e /dev/nvidiactl ] && echo "$n:not-found"
        continue
      fi
      if [ "$p" = not ]; then echo "$n:not-found"
      elif ! [[ $p =~ $carried_re || $p =~ $base_re ]]; then echo "$n:$p"; fi
    done)
  if [ -z "$stray" ]; then ok "ldd $(basename "$f")"; else bad "ldd $(basename "$f"): $stray"; fi
done
echo "note: the CUDA provider takes from the host:" \
  "$(ldd "$o/libonnxruntime_providers_cuda.so" | awk -v re="$cuda_re" '/=>/ && ("/" $1) ~ re { print $1 "=>" ($3 == "not" ? "(not found here)" : $3) }' | paste -sd' ')" \
  "(and loads cuDNN 9, libcudnn.so.9, at run time)"

# 2. plugin origin
fn=$(gst-inspect-1.0 coreelements 2>&1 | awk '/Filename/ { print $2 }')
if [[ $fn == "$g/lib/gstreamer-1.0/"* ]]; then ok "coreelements from $fn"; else bad "coreelements from '$fn'"; fi
others=$(gst-inspect-1.0 2>/dev/null | awk -F: '/^[a-z0-9]+: / { print $1 }' | sort -u | while read -r p; do
    gst-inspect-1.0 "$p" | awk '/Filename/ { print $2 }'; done | grep -v "^$g/" | grep -v '^(null)$')
if [ -z "$others" ]; then ok "all plugins from $g"; else bad "plugins from elsewhere: $others"; fi

# 3. pipelines
run() { # name, expected buffer count or '', pipeline...
  local name=$1 want=$2; shift 2
  GST_DEBUG=2 GST_DEBUG_NO_COLOR=1 LD_DEBUG=libs LD_DEBUG_OUTPUT="$log/$name.ld" \
    gst-launch-1.0 -q "$@" >"$log/$name.out" 2>"$log/$name.err"
  local rc=$? n loaded stray warn
  n=$(grep -c '^[0-9]' "$log/$name.out")
  loaded=$(cat "$log/$name".ld.* 2>/dev/null | awk '/calling init:/ { print $NF }' | sort -u)
  stray=$(echo "$loaded" | grep -v -E "$carried_re" | grep -v -E "$base_re")
  # GST_DEBUG=2 also prints the usual harmless WARNs (pad not activated yet, no new-segment, ...).
  warn=$(grep -E ' (ERROR|CRITICAL) |[Ff]ailed to load plugin|[Mm]issing.*plugin|not-negotiated|No decoder' "$log/$name.err" | head -n3)
  if [ $rc -ne 0 ]; then bad "$name: exit $rc: $(tail -n3 "$log/$name.err")"
  elif [ -n "$stray" ]; then bad "$name: loaded from outside: $stray"
  elif [ -n "$want" ] && [ "$n" != "$want" ]; then bad "$name: $n buffers, expected $want"
  elif [ -n "$warn" ]; then bad "$name: $warn"
  else ok "$name ($n buffers, $(echo "$loaded" | grep -c "^$g/") carried libraries loaded)"; fi
}
vid=$repo/.gpu/bikes-1080p.mp4
run decodebin-1080p 250 filesrc location="$vid" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! checksumsink hash=sha1
run qtdemux-openh264 250 filesrc location="$vid" ! qtdemux ! h264parse ! openh264dec ! checksumsink hash=sha1
run uridecodebin-1080p 250 uridecodebin uri="file://$vid" ! videoconvert ! videoscale ! video/x-raw,width=640,height=360 ! checksumsink
run decodebin-bikes 250 filesrc location="$shared/media/video/bikes.mp4" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! checksumsink
run pngdec 1 filesrc location="$shared/media/png/bus.png" ! pngdec ! videoconvert ! video/x-raw,format=RGB ! checksumsink
run jpegdec 1 filesrc location="$shared/media/images/bus.jpg" ! jpegdec ! videoconvert ! video/x-raw,format=RGB ! checksumsink
run decodebin-jpeg 1 filesrc location="$shared/media/images/zidane.jpg" ! decodebin ! videoconvert ! checksumsink
run testsrc-tee-appsink '' videotestsrc num-buffers=30 ! video/x-raw,width=1920,height=1080 ! videoscale ! capsfilter caps=video/x-raw,width=640,height=640 ! videoconvert ! tee name=t ! queue ! appsink sync=false wait-on-eos=false t. ! queue ! fakesink
ref=$repo/.gpu/bikes-1080p.mp4.frames.sha1
if [ -s "$ref" ]; then
  if cmp -s <(cut -d' ' -f2 "$log/decodebin-1080p.out") <(cut -d' ' -f2 "$ref"); then
    ok "bikes-1080p.mp4 decodes bit-exactly (openh264dec = avdec_h264, 250 frames)"
  else bad "bikes-1080p.mp4 decode differs from $ref"; fi
fi

# 5. As root: the same decodes in a chroot holding nothing but the payload, the media and the
#    base libraries, so that no host library can stand in for a missing one (GST_YOLO_NO_CHROOT=1 skips).
chroot=$(command -v chroot || echo /usr/sbin/chroot)
if [ "$(id -u)" = 0 ] && [ -x "$chroot" ] && [ -z "${GST_YOLO_NO_CHROOT:-}" ]; then
  r=$log/root
  mkdir -p "$r/lib64" "$r/usr/lib/x86_64-linux-gnu" "$r/tmp/gst" "$r/media"; ln -s usr/lib "$r/lib"
  # the host's base libraries, as the carried files resolve them (libopenh264: C++, libgsttag: zlib)
  ldd "$g/bin/gst-launch-1.0" "$g/lib/libopenh264.so.7" "$g/lib/libgsttag-1.0.so.0" 2>/dev/null \
    | awk '$3 ~ /^\// { print $3 }' | grep -E "$base_re" | sort -u \
    | while read -r p; do cp -L "$p" "$r/usr/lib/x86_64-linux-gnu/"; done
  cp -L /lib64/ld-linux-x86-64.so.2 "$r/lib64/"
  cp -a "$g/bin" "$g/lib" "$g/libexec" "$r/tmp/gst/"
  cp "$vid" "$shared/media/png/bus.png" "$shared/media/images/bus.jpg" "$r/media/"
  croot() { env -i LD_LIBRARY_PATH=/tmp/gst/lib GST_PLUGIN_SYSTEM_PATH_1_0=/tmp/gst/lib/gstreamer-1.0 \
    GST_PLUGIN_SCANNER_1_0=/tmp/gst/libexec/gst-plugin-scanner GST_REGISTRY_1_0=/tmp/registry.bin \
    HOME=/tmp "$chroot" "$r" /tmp/gst/bin/gst-launch-1.0 -q "$@" 2>"$log/chroot.err"; }
  libs=$(cd "$r/usr/lib/x86_64-linux-gnu" && ls | paste -sd' ')
  n=$(croot filesrc location=/media/bikes-1080p.mp4 ! decodebin ! videoconvert ! video/x-raw,format=I420 \
      ! checksumsink hash=sha1 | grep -c '^[0-9]')
  if [ "$n" = 250 ]; then ok "bare chroot ($libs): bikes-1080p.mp4 decodes 250 frames"
  else bad "bare chroot: $n frames: $(tail -n3 "$log/chroot.err")"; fi
  n=$(croot filesrc location=/media/bus.png ! pngdec ! videoconvert ! checksumsink | grep -c '^[0-9]')
  n2=$(croot filesrc location=/media/bus.jpg ! jpegdec ! videoconvert ! checksumsink | grep -c '^[0-9]')
  if [ "$n$n2" = 11 ]; then ok "bare chroot: pngdec and jpegdec"; else bad "bare chroot: pngdec $n, jpegdec $n2"; fi
else
  echo "skip bare-chroot check (needs root and chroot)"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
