// SPDX-License-Identifier: MPL-2.0
//! Runs the scripts in gst-launch-samples/ the way a user does, on a 30-frame clip of bikes.mp4,
//! and checks what they produce: the MP4 and the FLV decode to every frame, the HLS folder has a
//! playlist whose segments decode, the RTSP and screen samples' frames carry detections. Sources
//! and sinks this machine lacks (webcam, window, RTMP server) are swapped through the samples'
//! SOURCE/SINK variables; the Jetson sample is only checked to refuse clearly without NVIDIA's
//! elements.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use common::*;
use gst::prelude::*;

/// The clip: frames 40..70 of bikes.mp4 (cars, people, bicycles).
const CLIP_FIRST: u64 = 40;
const CLIP_FRAMES: usize = 30;

/// The samples run one at a time: each uses every core for inference.
static SERIAL: Mutex<()> = Mutex::new(());

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("gst-launch-samples")
}

/// Where the samples write: cargo's scratch folder for tests, kept for a look afterwards.
fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("samples");
        std::fs::create_dir_all(&d).expect("scratch folder");
        d
    })
}

/// Re-encodes frames CLIP_FIRST.. of bikes.mp4 into a short MP4. A probe consumes the other
/// frames (`Handled`: `Drop` logs criticals with GStreamer 1.22), so the file still ends with
/// its own EOS (stopping early with identity eos-after can stall muxers behind decodebin's
/// queues).
fn clip() -> &'static Path {
    static CLIP: OnceLock<PathBuf> = OnceLock::new();
    CLIP.get_or_init(|| {
        init();
        let out = work_dir().join("clip.mp4");
        let desc = format!(
            "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 name=dec ! videoconvert \
             ! x264enc speed-preset=ultrafast key-int-max=15 ! mp4mux ! filesink location=\"{}\"",
            media("video/bikes.mp4").display(),
            out.display()
        );
        let pipeline = gst::parse::launch(&desc)
            .expect("clip pipeline")
            .downcast::<gst::Pipeline>()
            .expect("pipeline");
        let dec = pipeline.by_name("dec").expect("decoder");
        let n = std::sync::atomic::AtomicU64::new(0);
        dec.static_pad("src").expect("src pad").add_probe(
            gst::PadProbeType::BUFFER,
            move |_, _| {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if (CLIP_FIRST..CLIP_FIRST + CLIP_FRAMES as u64).contains(&i) {
                    gst::PadProbeReturn::Ok
                } else {
                    gst::PadProbeReturn::Handled
                }
            },
        );
        let res = run_to_eos(&pipeline);
        pipeline.set_state(gst::State::Null).ok();
        res.unwrap_or_else(|e| panic!("making the clip: {e}"));
        out
    })
}

/// A sample run with the test's plugin and model, and the given extra environment.
fn sample(script: &str, args: &[&Path], env: &[(&str, &str)]) -> Command {
    // A stalled pipeline fails the test instead of hanging it.
    let mut c = Command::new("timeout");
    c.args(["-k", "10", "300", "bash"])
        .arg(samples_dir().join(script))
        .args(args)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_YOLO_MODEL", model("yolov8n.onnx"))
        .env_remove("FRAMES")
        .env_remove("SINK")
        .env_remove("SOURCE")
        .env_remove("GST_LAUNCH_FLAGS");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run timeout + bash");
    assert!(
        out.status.code() != Some(124),
        "{cmd:?} did not finish within 300 s:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What `gst-launch-1.0 -v` printed for each buffer reaching `fakesink silent=false`: the metas.
fn fakesink_frames(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.contains("last-message = chain"))
        .map(|l| l.split("meta: ").nth(1).unwrap_or("").to_string())
        .collect()
}

/// Every frame has yolodetect's meta, and some carry ROI metas (detections).
fn assert_detections(what: &str, frames: &[String], min_frames: usize) {
    assert!(
        frames.len() >= min_frames,
        "{what}: {} frames reached the sink, expected at least {min_frames}",
        frames.len()
    );
    assert!(
        frames.iter().all(|m| m.contains("GstYoloDetectionMeta")),
        "{what}: a frame without yolodetect's meta: {frames:?}"
    );
    let with_rois = frames
        .iter()
        .filter(|m| m.contains("GstVideoRegionOfInterestMeta"))
        .count();
    assert!(
        with_rois * 2 >= frames.len(),
        "{what}: only {with_rois} of {} frames have detections",
        frames.len()
    );
}

/// Decodes a file with `demux_decode` (e.g. "qtdemux ! h264parse ! avdec_h264") and returns
/// the number of 640x272 frames.
fn decoded_frames(path: &Path, demux_decode: &str) -> usize {
    let desc = format!(
        "filesrc location=\"{}\" ! {demux_decode} ! videoconvert ! video/x-raw,format=RGB,width=640,height=272 ! appsink name=sink",
        path.display()
    );
    run_pipeline(&desc)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

#[test]
fn scripts_parse() {
    let mut n = 0;
    for entry in std::fs::read_dir(samples_dir()).expect("gst-launch-samples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "sh") {
            let out = Command::new("bash")
                .arg("-n")
                .arg(&path)
                .output()
                .expect("bash");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 8, "expected the seven samples and _env.sh, found {n}");
}

#[test]
fn file_to_mp4_writes_every_frame() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = work_dir().join("annotated.mp4");
    run_ok(sample("file-to-mp4.sh", &[clip(), &out], &[]));
    assert_eq!(
        decoded_frames(&out, "qtdemux ! h264parse ! avdec_h264"),
        CLIP_FRAMES
    );
}

#[test]
fn hls_output_writes_playlist_and_segments() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = work_dir().join("hls");
    let _ = std::fs::remove_dir_all(&dir);
    run_ok(sample("hls-output.sh", &[clip(), &dir], &[]));
    let playlist = std::fs::read_to_string(dir.join("playlist.m3u8")).expect("playlist.m3u8");
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let segments: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(!segments.is_empty(), "no segments in {playlist}");
    let mut frames = 0;
    for s in &segments {
        let seg = dir.join(s);
        frames += decoded_frames(&seg, "tsdemux ! h264parse ! avdec_h264");
    }
    assert_eq!(frames, CLIP_FRAMES, "frames over {segments:?}");
}

#[test]
fn rtmp_push_muxes_flv() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // No RTMP server here: the FLV that would go to rtmpsink goes to a file.
    let flv = work_dir().join("push.flv");
    let sink = format!("filesink location={}", flv.display());
    run_ok(sample("rtmp-push.sh", &[clip()], &[("SINK", &sink)]));
    assert_eq!(
        decoded_frames(&flv, "flvdemux ! h264parse ! avdec_h264"),
        CLIP_FRAMES
    );
}

#[test]
fn file_to_screen_frames_carry_detections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_ok(sample(
        "file-to-screen.sh",
        &[clip()],
        &[
            ("SINK", "fakesink silent=false"),
            ("GST_LAUNCH_FLAGS", "-v"),
        ],
    ));
    let frames = fakesink_frames(&out.stdout);
    assert_eq!(frames.len(), CLIP_FRAMES);
    assert_detections("file-to-screen", &frames, CLIP_FRAMES);
}

#[test]
fn many_streams_share_one_instance_and_every_frame_carries_detections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_ok(sample(
        "many-streams.sh",
        &[clip()],
        &[
            ("SINK", "fakesink silent=false"),
            ("GST_LAUNCH_FLAGS", "-v"),
        ],
    ));
    let frames = fakesink_frames(&out.stdout);
    // gst-launch-1.0 -v reports fakesink's last-message through property notifications, and
    // with four sinks running at once a few of those reports go missing (115 of 120 seen):
    // every frame reaching a sink is checked in tests/multistream.rs with appsinks; here, the
    // sample runs to the end and what is reported carries detections.
    assert!(
        frames.len() * 10 >= 4 * CLIP_FRAMES * 9 && frames.len() <= 4 * CLIP_FRAMES,
        "{} frames reported",
        frames.len()
    );
    assert_detections("many-streams", &frames, frames.len());
}

#[test]
fn v4l2_webcam_pipeline_runs_with_a_test_source() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // No camera here: videotestsrc stands in for v4l2src; the rest of the pipeline is the
    // sample's. A test pattern has no objects, so only the meta is checked.
    let out = run_ok(sample(
        "v4l2-webcam.sh",
        &[],
        &[
            (
                "SOURCE",
                "videotestsrc num-buffers=3 ! video/x-raw,width=320,height=240",
            ),
            ("SINK", "fakesink silent=false"),
            ("GST_LAUNCH_FLAGS", "-v"),
        ],
    ));
    let frames = fakesink_frames(&out.stdout);
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(frames.iter().all(|m| m.contains("GstYoloDetectionMeta")));
}

/// The sample's RTSP server on a free port, stopped on drop.
struct RtspServer(Child);

impl RtspServer {
    fn start(video: &Path) -> (Self, String) {
        let mut child = Command::new("/usr/bin/python3")
            .arg(samples_dir().join("rtsp-test-server.py"))
            .args(["--port", "0", "--video"])
            .arg(video)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start rtsp-test-server.py (needs python3-gi, gir1.2-gst-rtsp-server-1.0)");
        let stdout = child.stdout.take().expect("server stdout");
        let server = RtspServer(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read server output");
        let url = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("rtsp-test-server.py said {line:?}"))
            .trim()
            .to_string();
        (server, url)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rtsp_camera_receives_frames_with_detections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, url) = RtspServer::start(clip());
    // The server's stream never ends by itself; FRAMES stops the client.
    let out = run_ok(sample(
        "rtsp-camera.sh",
        &[],
        &[
            ("RTSP_URL", &url),
            ("FRAMES", "20"),
            ("SINK", "fakesink silent=false"),
            ("GST_LAUNCH_FLAGS", "-v"),
        ],
    ));
    // Live: on a busy machine qos skips late frames (seen in CI: 19 of 20). The sample repeats
    // the last detections on them, so every frame from the first inferred one carries the meta.
    let frames = fakesink_frames(&out.stdout);
    let lead = frames
        .iter()
        .take_while(|m| !m.contains("GstYoloDetectionMeta"))
        .count();
    assert!(
        lead <= 5,
        "rtsp-camera: no inference in the first {lead} frames: {frames:?}"
    );
    assert_detections("rtsp-camera", &frames[lead..], 20 - lead);
}

#[test]
fn jetson_sample_refuses_clearly_without_nvidia_elements() {
    init();
    if gst::ElementFactory::find("nvv4l2decoder").is_some() {
        eprintln!(
            "nvv4l2decoder exists: this is a Jetson, run gst-launch-samples/jetson.sh by hand"
        );
        return;
    }
    let out = sample("jetson.sh", &[], &[]).output().expect("run bash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nvv4l2decoder not found") && err.contains("JetPack"),
        "{err}"
    );
}
