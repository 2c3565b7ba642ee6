#!/usr/bin/env bash
# Builds .gpu/ (git-ignored): everything an x86-64 Ubuntu 24.04 GPU host without GStreamer, ONNX
# Runtime, cargo or network needs to run gst-yolo, apart from our own build.
#   usage: scripts/gpu/make-payload.sh [--force]      (run here, on Debian 12; needs apt, pip, network)
# Produces, in .gpu/:
#   ort-gpu.tar.xz      ONNX Runtime GPU (CUDA 13) for sm_90, from $GST_YOLO_SHARED/gpu (default ../shared)
#   gst-runtime.tar.xz  GStreamer 1.22 runtime taken from Debian 12 packages (apt-get download +
#                       dpkg -x): bin/gst-launch-1.0, bin/gst-inspect-1.0, libexec/gst-plugin-scanner,
#                       lib/gstreamer-1.0/ (only the plugins listed below) and lib/ (every library they
#                       need except libc, libm, libstdc++, libgcc_s, libz and the dynamic loader)
#   bikes-1080p.mp4     ../shared/media/video/bikes.mp4 letterboxed to 1920x1080 (x3, bars of 132 px
#                       top and bottom), H.264 High without B-frames, so that openh264dec decodes it
#                       bit-exactly (it does not for B-frames)
#   *.sha256, MANIFEST  checksums; package versions and file list of the runtime
# Existing artifacts are kept unless --force (or FORCE=1). On the host: scripts/gpu/env.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
shared=${GST_YOLO_SHARED:-$repo/../shared}
out=$repo/.gpu
force=${FORCE:-0}; [ "${1:-}" = --force ] && force=1
mkdir -p "$out"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
say() { printf '== %s\n' "$*"; }
size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
for t in apt-get dpkg dpkg-deb objdump xz tar sha256sum python3 gst-launch-1.0 gst-inspect-1.0; do
  command -v "$t" >/dev/null || { echo "$0 needs $t (binutils for objdump; gstreamer1.0-tools)" >&2; exit 1; }
done
# Libraries every x86-64 Linux host has (glibc, GCC runtime, zlib): never carried.
base_re='^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|ld-linux-x86-64\.so\.2|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libz\.so\.1)$'

# ---------------------------------------------------------------- ONNX Runtime GPU
ort=$out/ort-gpu.tar.xz
if [ "$force" = 1 ] || ! [ -s "$ort" ] || ! [ -s "$ort.sha256" ] \
   || [ "$(sha256sum "$ort" | cut -c1-64)" != "$(cat "$ort.sha256")" ]; then
  say "ONNX Runtime GPU payload (from $shared/gpu)"
  [ -x "$shared/gpu/make-ort-gpu-payload.sh" ] || { echo "no $shared/gpu/make-ort-gpu-payload.sh: set GST_YOLO_SHARED" >&2; exit 1; }
  nice -n 10 "$shared/gpu/make-ort-gpu-payload.sh" "$out" yolo
else
  say "ort-gpu.tar.xz already built (--force rebuilds)"
fi

# ---------------------------------------------------------------- GStreamer runtime
# Plugins, by file (package): what the pipelines, the tests and a benchmark use.
plugins=(
  coreelements        # libgstreamer1.0-0: filesrc fakesink queue tee capsfilter identity typefind
  multifile           # gstreamer1.0-plugins-good: multifilesrc (the multi-stream tests loop photos)
  imagefreeze         # gstreamer1.0-plugins-good: imagefreeze (tests/filters.rs repeats a photo)
  coretracers         # libgstreamer1.0-0: GST_TRACERS=latency/stats for timing
  videotestsrc        # gstreamer1.0-plugins-base
  videoconvertscale   # gstreamer1.0-plugins-base: videoconvert videoscale
  app                 # gstreamer1.0-plugins-base: appsink appsrc
  playback            # gstreamer1.0-plugins-base: decodebin uridecodebin decodebin3 playbin
  typefindfunctions   # gstreamer1.0-plugins-base: decodebin cannot identify a file without it
  isomp4              # gstreamer1.0-plugins-good: qtdemux mp4mux
  png                 # gstreamer1.0-plugins-good: pngdec
  jpeg                # gstreamer1.0-plugins-good: jpegdec
  videoparsersbad     # gstreamer1.0-plugins-bad: h264parse
  openh264            # gstreamer1.0-plugins-bad: openh264dec (1.1 MB libopenh264; avdec_h264 drags ~230 MB)
  debugutilsbad       # gstreamer1.0-plugins-bad: fpsdisplaysink checksumsink
  nvcodec             # gstreamer1.0-plugins-bad: nvh264dec nvh265dec cudadownload (dlopens the host's
                      # libcuda, libnvcuvid and libnvrtc, which are never carried)
)
# Packages holding those, the tools, and every library they need (checked below).
pkgs=(
  libgstreamer1.0-0 gstreamer1.0-tools
  gstreamer1.0-plugins-base libgstreamer-plugins-base1.0-0
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad libgstreamer-plugins-bad1.0-0
  libopenh264-7 libpng16-16 libjpeg62-turbo liborc-0.4-0
  libglib2.0-0 libffi8 libpcre2-8-0 libmount1 libblkid1 libselinux1
  libdw1 libelf1 libunwind8 liblzma5 libbz2-1.0
)
rt=$out/gst-runtime.tar.xz
if [ "$force" = 1 ] || ! [ -s "$rt" ]; then
  say "GStreamer runtime from Debian packages"
  debs=$work/debs root=$work/root pay=$work/gst
  mkdir -p "$debs" "$root" "$pay/bin" "$pay/libexec" "$pay/lib/gstreamer-1.0"
  aptopt=(); [ "$(id -u)" = 0 ] && aptopt=(-o APT::Sandbox::User=root)
  fetch() {
    (cd "$debs" && apt-get -q "${aptopt[@]}" download "$@") \
      || { echo "apt-get download $* failed (run 'apt-get update' first?)" >&2; exit 1; }
    for p in "$@"; do dpkg -x "$debs/${p}_"*.deb "$root"; done
  }
  fetch "${pkgs[@]}"
  md=$root/usr/lib/x86_64-linux-gnu
  install -m755 "$root/usr/bin/gst-launch-1.0" "$root/usr/bin/gst-inspect-1.0" "$pay/bin/"
  install -m755 "$md/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner" "$pay/libexec/"
  for p in "${plugins[@]}"; do install -m644 "$md/gstreamer-1.0/libgst$p.so" "$pay/lib/gstreamer-1.0/"; done
  # Transitive DT_NEEDED closure, resolved inside the unpacked packages only.
  needed() { objdump -p "$1" | awk '$1 == "NEEDED" { print $2 }'; }
  find_lib() { local d; for d in "$md" "$root/lib/x86_64-linux-gnu"; do [ -e "$d/$1" ] && { readlink -f "$d/$1"; return; }; done; }
  queue=("$pay"/bin/* "$pay"/libexec/* "$pay"/lib/gstreamer-1.0/*.so) added=1
  while [ "$added" = 1 ]; do
    added=0 missing=()
    for f in "${queue[@]}"; do
      for n in $(needed "$f"); do
        [[ $n =~ $base_re ]] && continue
        [ -e "$pay/lib/$n" ] && continue
        src=$(find_lib "$n" || true)
        if [ -n "$src" ]; then install -m644 "$src" "$pay/lib/$n"; queue+=("$pay/lib/$n"); added=1
        else missing+=("$n"); fi
      done
    done
    if [ ${#missing[@]} -gt 0 ]; then
      # A library no listed package holds: name its package after the local dpkg database.
      extra=()
      for n in $(printf '%s\n' "${missing[@]}" | sort -u); do
        p=$(dpkg -S "*/$n" 2>/dev/null | head -n1 | cut -d: -f1 || true)
        [ -n "$p" ] || { echo "cannot find a package holding $n: add it to pkgs in $0" >&2; exit 1; }
        echo "note: $n comes from $p, which is not in pkgs: fetching it" >&2; extra+=("$p")
      done
      fetch $(printf '%s\n' "${extra[@]}" | sort -u); added=1
    fi
  done
  # Provenance: the package versions actually unpacked, and what was taken.
  {
    echo "# GStreamer runtime for gst-yolo, from Debian 12 (bookworm) amd64 packages"
    for d in "$debs"/*.deb; do echo "$(dpkg-deb -f "$d" Package) $(dpkg-deb -f "$d" Version)"; done
    echo "# files"; (cd "$pay" && find . -type f | sort)
  } > "$pay/MANIFEST"
  # Every ELF must find each needed library in lib/ or in the base set.
  maxglibc=$(for f in "$pay"/bin/* "$pay"/libexec/* "$pay"/lib/*.so* "$pay"/lib/gstreamer-1.0/*.so; do
      for n in $(needed "$f"); do
        [[ $n =~ $base_re ]] || [ -e "$pay/lib/$n" ] || { echo "UNRESOLVED $n in $f" >&2; exit 1; }
      done
      objdump -T "$f" | grep -o 'GLIBC_2\.[0-9.]*' || true
    done | sort -uV | tail -n1)
  echo "highest glibc symbol version needed: $maxglibc (Ubuntu 24.04 has 2.39)"
  tar -C "$pay" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - . \
    | nice -n 10 xz -9e -T2 > "$rt.tmp"
  mv "$rt.tmp" "$rt"; cp "$pay/MANIFEST" "$out/MANIFEST"
  sha256sum "$rt" | cut -c1-64 > "$rt.sha256"
  echo "runtime: $(ls "$pay/lib" | grep -c '\.so') libraries, ${#plugins[@]} plugins," \
       "$(mb "$(du -sb "$pay" | cut -f1)") unpacked"
else
  say "gst-runtime.tar.xz already built (--force rebuilds)"
fi

# ---------------------------------------------------------------- 1080p H.264 test video
vid=$out/bikes-1080p.mp4
if [ "$force" = 1 ] || ! [ -s "$vid" ]; then
  say "bikes-1080p.mp4 (needs the local gst-launch-1.0 with decodebin, x264enc, mp4mux)"
  src=$shared/media/video/bikes.mp4
  for e in x264enc mp4mux decodebin videoscale; do
    gst-inspect-1.0 "$e" >/dev/null 2>&1 || { echo "local GStreamer lacks $e (scripts/install-deps.sh)" >&2; exit 1; }
  done
  [ -s "$src" ] || { echo "no $src" >&2; exit 1; }
  # PAR 1/1 makes videoscale letterbox 640x272 into 1920x816 + 132-px black bars (x = 3x,
  # y = 3y + 132 maps reference boxes). bframes=0: openh264dec mis-decodes and misorders B-frames.
  # pass=qual is capped at bitrate (kbit/s) through the VBV: ~2 Mbit/s, ~2.6 MB for 10 s.
  nice -n 10 gst-launch-1.0 -q filesrc location="$src" ! decodebin ! videoconvert \
    ! videoscale ! video/x-raw,format=I420,width=1920,height=1080,pixel-aspect-ratio=1/1 \
    ! x264enc pass=qual quantizer=20 bitrate=2048 bframes=0 key-int-max=50 speed-preset=medium threads=2 \
    ! video/x-h264,profile=high ! h264parse ! mp4mux ! filesink location="$vid.tmp"
  mv "$vid.tmp" "$vid"
  sha256sum "$vid" | cut -c1-64 > "$vid.sha256"
else
  say "bikes-1080p.mp4 already made (--force remakes)"
fi
# Per-frame SHA-1 of FFmpeg's decode (avdec_h264), for check-runtime.sh to compare openh264dec with.
if ! [ -s "$vid.frames.sha1" ] || [ "$force" = 1 ]; then
  if gst-inspect-1.0 avdec_h264 >/dev/null 2>&1; then
    gst-launch-1.0 -q filesrc location="$vid" ! qtdemux ! h264parse ! avdec_h264 \
      ! video/x-raw,format=I420 ! checksumsink hash=sha1 > "$vid.frames.sha1"
  else
    gst-launch-1.0 -q filesrc location="$vid" ! qtdemux ! checksumsink hash=sha1 > "$work/packets"
    echo "note: no local avdec_h264: no bikes-1080p.mp4.frames.sha1" >&2
  fi
fi
frames=$(cat "$vid.frames.sha1" 2>/dev/null || cat "$work/packets") ; frames=$(echo "$frames" | grep -c '^[0-9]')
echo "bikes-1080p.mp4: $frames frames, 1920x1080, 25 fps"

say "sizes"
total=0
for f in "$ort" "$rt" "$vid"; do
  s=$(size "$f"); total=$((total + s)); printf '%-22s %10d  %s\n' "$(basename "$f")" "$s" "$(mb "$s")"
done
printf '%-22s %10d  %s  (+ our build; 64 MiB = 67.1 MB can travel)\n' total "$total" "$(mb "$total")"
