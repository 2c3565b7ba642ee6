// SPDX-License-Identifier: MPL-2.0
//! The remote backend against a real Open Inference Protocol server: KServe's Python
//! `ModelServer` hosting yolov8n through onnxruntime on a loopback gRPC port
//! (`scripts/kserve_yolo.py`, installed by `scripts/install-kserve.sh`). The Python comes from
//! `$GST_YOLO_KSERVE_PYTHON`, default `.kserve/bin/python` in the repository.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstyolo::meta::{Detection, DetectionMeta};

fn python() -> PathBuf {
    std::env::var_os("GST_YOLO_KSERVE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".kserve/bin/python"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A KServe server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(port: u16) -> Server {
        Server::start_with(port, &[])
    }

    /// A server with more of `kserve_yolo.py`'s options (`--tls-cert`, ...).
    fn start_with(port: u16, extra: &[&std::ffi::OsStr]) -> Server {
        let py = python();
        assert!(
            py.exists(),
            "{} is missing: run scripts/install-kserve.sh (or set GST_YOLO_KSERVE_PYTHON)",
            py.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kserve_yolo.py");
        let child = Command::new(py)
            .arg(script)
            .arg("--model")
            .arg(model("yolov8n.onnx"))
            .args(["--name", "yolov8n", "--threads", "2"])
            .args(["--grpc-port", &port.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the KServe server");
        let mut s = Server { child, port };
        s.wait_ready();
        s
    }

    /// Until the gRPC port accepts connections (KServe loads the model before it listens).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the KServe server exited at start: {st}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the KServe server did not listen on port {} in 90 s",
            self.port
        );
    }

    fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One server for the tests that do not stop it.
fn shared_server() -> String {
    static S: OnceLock<Mutex<Server>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(Server::start(free_port())))
        .lock()
        .unwrap()
        .url()
}

fn remote_args(url: &str) -> String {
    format!(
        "inference-server={url} server-model=yolov8n model=\"{}\"",
        model("yolov8n.onnx").display()
    )
}

/// A looping photo as a stream of `frames` frames.
fn photo_stream(frames: u32) -> String {
    format!(
        "multifilesrc location=\"{}\" loop=true num-buffers={frames} caps=image/jpeg,framerate=25/1 ! jpegdec ! videoconvert ! video/x-raw,format=RGB",
        media("images/bus.jpg").display()
    )
}

/// The bus error of a short stream through yolodetect on the server at `url`.
fn start_error(url: &str) -> String {
    let desc = format!(
        "{} ! yolodetect {} ! appsink name=sink",
        photo_stream(2),
        remote_args(url)
    );
    run_pipeline(&desc).unwrap_err()
}

/// bus.jpg's detections with the local CPU session.
fn local_bus() -> Vec<Detection> {
    detect_image(
        &media("images/bus.jpg"),
        "jpegdec",
        "RGB",
        &format!("model=\"{}\"", model("yolov8n.onnx").display()),
    )
}

fn same(a: &[Detection], b: &[Detection]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} vs {} detections", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(b) {
        let d = [x.x1 - y.x1, x.y1 - y.y1, x.x2 - y.x2, x.y2 - y.y2]
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        if x.class_id != y.class_id || d > 0.5 || (x.confidence - y.confidence).abs() > 1e-3 {
            return Err(format!("{x:?} vs {y:?}"));
        }
    }
    Ok(())
}

#[test]
fn remote_detections_equal_local_on_the_reference_images() {
    let url = shared_server();
    let r = reference("yolov8n-images.json");
    let local_arg = format!("model=\"{}\"", model("yolov8n.onnx").display());
    let mut n = 0;
    for img in r["results"].as_array().expect("results") {
        let png = media(img["png"].as_str().expect("png"));
        let local = detect_image(&png, "pngdec", "RGB", &local_arg);
        let remote = detect_image(&png, "pngdec", "RGB", &remote_args(&url));
        same(&remote, &local).unwrap_or_else(|e| panic!("{}: remote vs local: {e}", png.display()));
        let problems = compare(
            &png.display().to_string(),
            &remote,
            &ref_dets(&img["detections"]),
            EXACT,
        );
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // Class names come from the ONNX file, as locally.
        let labels = |d: &[Detection]| d.iter().map(|d| d.label.to_string()).collect::<Vec<_>>();
        assert_eq!(labels(&remote), labels(&local));
        n += usize::from(!remote.is_empty());
    }
    assert!(
        n >= 10,
        "expected the reference's images with detections, got {n}"
    );
}

/// The bus result, each sink's detections per frame, each `det<i>`'s `stats` at the end.
type Run = (
    Result<(), String>,
    Vec<Vec<Vec<Detection>>>,
    Vec<gst::Structure>,
);

/// Runs `desc` (appsinks `sink0..`), returning each sink's detections per frame, or the bus
/// error; `on_frame(pipeline, sink, frame)` runs as frames arrive.
fn run_streams(
    desc: &str,
    sinks: usize,
    on_frame: impl Fn(&gst::Pipeline, usize, usize) + Send + Sync + 'static,
) -> Run {
    init();
    let pipeline = gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let on_frame = Arc::new(on_frame);
    let out: Vec<Arc<Mutex<Vec<Vec<Detection>>>>> = (0..sinks).map(|_| Arc::default()).collect();
    for (i, o) in out.iter().enumerate() {
        let sink = pipeline
            .by_name(&format!("sink{i}"))
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        sink.set_property("sync", false);
        let (o, f) = (o.clone(), on_frame.clone());
        let weak = pipeline.downgrade();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let dets = buf
                        .meta::<DetectionMeta>()
                        .map(|m| m.detections().to_vec())
                        .unwrap_or_default();
                    let n = {
                        let mut o = o.lock().unwrap();
                        o.push(dets);
                        o.len()
                    };
                    if let Some(p) = weak.upgrade() {
                        f(&p, i, n);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let r = run_to_eos(&pipeline);
    let mut stats = Vec::new();
    let mut i = 0;
    while let Some(det) = pipeline.by_name(&format!("det{i}")) {
        stats.push(det.property::<gst::Structure>("stats"));
        i += 1;
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let frames = out.iter().map(|o| o.lock().unwrap().clone()).collect();
    (r, frames, stats)
}

#[test]
fn two_pipelines_share_one_remote_instance_and_batch() {
    let url = shared_server();
    let frames = 12;
    let det = |i: usize| {
        format!(
            "{} ! yolodetect name=det{i} {} model-instance-id=remote-shared batch-size=2 batch-timeout=2000 ! appsink name=sink{i}",
            photo_stream(frames),
            remote_args(&url)
        )
    };
    let (r, out, stats) = run_streams(&format!("{} {}", det(0), det(1)), 2, |_, _, _| {});
    r.unwrap();
    let local = local_bus();
    for (s, o) in out.iter().enumerate() {
        assert_eq!(o.len(), frames as usize, "stream {s}");
        for (f, d) in o.iter().enumerate() {
            same(d, &local).unwrap_or_else(|e| panic!("stream {s} frame {f}: {e}"));
        }
    }
    // Both streams' frames went to the server two per request.
    let fill: f64 = stats[0].get("mean-batch-fill").unwrap();
    assert!(fill > 1.5, "mean batch fill {fill}: {}", stats[0]);
}

#[test]
fn server_killed_and_restarted_mid_stream_recovers() {
    let port = free_port();
    let server = Arc::new(Mutex::new(Some(Server::start(port))));
    let url = server.lock().unwrap().as_ref().unwrap().url();
    let frames = 30;
    let desc = format!(
        "{} ! yolodetect name=det0 {} server-retry-timeout=60000 server-request-timeout=2000 ! appsink name=sink0",
        photo_stream(frames),
        remote_args(&url)
    );
    let s2 = server.clone();
    let (r, out, stats) = run_streams(&desc, 1, move |_, _, n| {
        if n == 5 {
            // Killed under the stream, back a second later on the same port.
            if let Some(mut s) = s2.lock().unwrap().take() {
                s.kill();
            }
            let s3 = s2.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                *s3.lock().unwrap() = Some(Server::start(port));
            });
        }
    });
    r.unwrap();
    assert_eq!(out[0].len(), frames as usize);
    for (f, d) in out[0].iter().enumerate() {
        assert!(!d.is_empty(), "frame {f} has no detections");
    }
    let retries: u64 = stats[0].get("server-retries").unwrap();
    assert!(
        retries > 0,
        "the server was away, yet no retry: {}",
        stats[0]
    );
}

#[test]
fn server_gone_for_good_is_an_error_naming_it_or_frames_pass_when_asked() {
    for pass in [false, true] {
        let mut server = Server::start(free_port());
        let url = server.url();
        let frames = 12;
        let desc = format!(
            "{} ! yolodetect name=det0 {} server-retry-timeout=1500 server-request-timeout=1000 pass-on-error={pass} ! appsink name=sink0",
            photo_stream(frames),
            remote_args(&url)
        );
        let srv = Arc::new(Mutex::new(Some(server.child.id())));
        let killer = srv.clone();
        let started = Instant::now();
        let (r, out, stats) = run_streams(&desc, 1, move |_, _, n| {
            if n == 3
                && let Some(pid) = killer.lock().unwrap().take()
            {
                // SIGKILL of the server this test started, by its pid.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        });
        server.kill();
        if pass {
            r.unwrap();
            let o = &out[0];
            assert_eq!(o.len(), frames as usize, "every frame goes on");
            assert!(o[..3].iter().all(|d| !d.is_empty()));
            let empty = o.iter().filter(|d| d.is_empty()).count();
            assert!(empty >= 1, "no frame passed without detections");
            let passed: u64 = stats[0].get("passed-on-error").unwrap();
            assert_eq!(passed as usize, empty, "{}", stats[0]);
        } else {
            let e = r.unwrap_err();
            assert!(e.contains(&url), "error does not name {url}: {e}");
            assert!(e.contains("retried"), "{e}");
            assert!(started.elapsed() >= Duration::from_millis(1500));
            // Frames before the kill carried detections; none went on without them.
            assert!(out[0].iter().all(|d| !d.is_empty()));
        }
    }
}

#[test]
fn unreachable_server_at_start_is_an_error_naming_the_address() {
    let url = format!("grpc://127.0.0.1:{}", free_port());
    let e = start_error(&url);
    assert!(e.contains(&url), "{e}");
    assert!(e.contains("cannot connect"), "{e}");
}

#[test]
fn unknown_model_on_the_server_is_an_error_naming_it() {
    let url = shared_server();
    let desc = format!(
        "{} ! yolodetect inference-server={url} server-model=yolov9-nope ! appsink name=sink",
        photo_stream(2)
    );
    let e = run_pipeline(&desc).unwrap_err();
    assert!(e.contains("yolov9-nope"), "{e}");
    assert!(e.contains(&url), "{e}");
}

/// A CA and a certificate it signed for localhost and 127.0.0.1, made with the openssl tool in
/// a fresh folder: (folder, ca.pem, server.pem, server.key).
fn tls_files() -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("gst-yolo-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run openssl (Debian: apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=gst-yolo test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let f = |n: &str| dir.join(n);
    (f(""), f("ca.pem"), f("server.pem"), f("server.key"))
}

#[test]
fn tls_server_trusted_through_server_ca_file_gives_the_local_detections() {
    let (dir, ca, cert, key) = tls_files();
    let port = free_port();
    let _server = Server::start_with(
        port,
        &[
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ],
    );
    let local = local_bus();
    assert!(local.len() >= 4, "bus.jpg: {local:?}");
    let tls = format!("grpcs://localhost:{port}");
    let remote = detect_image(
        &media("images/bus.jpg"),
        "jpegdec",
        "RGB",
        &format!("{} server-ca-file=\"{}\"", remote_args(&tls), ca.display()),
    );
    same(&remote, &local).unwrap_or_else(|e| panic!("over TLS vs local: {e}"));

    // Without our CA the server's certificate is not trusted: an error naming the server.
    let e = start_error(&tls);
    assert!(e.contains(&tls), "{e}");
    // Plain gRPC to the TLS port fails too, and says where.
    let plain = format!("grpc://127.0.0.1:{port}");
    let e = start_error(&plain);
    assert!(e.contains(&plain), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn inference_server_set_while_playing_swaps_to_the_server_and_back() {
    let url = shared_server();
    let frames = 60;
    let desc = format!(
        "{} ! yolodetect name=det0 model=\"{}\" ! appsink name=sink0",
        photo_stream(frames),
        model("yolov8n.onnx").display()
    );
    // The provider serving each frame, read as it reaches the sink.
    let served = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = served.clone();
    let (r, out, stats) = run_streams(&desc, 1, move |p, _, n| {
        let det = p.by_name("det0").unwrap();
        let provider = det
            .property::<Option<String>>("active-provider")
            .unwrap_or_default();
        let mut seen = seen.lock().unwrap();
        seen.push(provider.clone());
        let remote_frames = seen.iter().filter(|p| *p == "remote").count();
        if n == 3 {
            det.set_property("inference-server", &url);
        } else if provider == "remote" && remote_frames == 5 {
            // Back to the local session.
            det.set_property("inference-server", None::<String>);
        }
    });
    r.unwrap();
    let served = served.lock().unwrap().clone();
    // cpu, then remote, then cpu again: each swap happened at a frame boundary.
    let mut runs: Vec<&str> = served.iter().map(String::as_str).collect();
    runs.dedup();
    assert_eq!(
        runs,
        ["cpu", "remote", "cpu"],
        "providers per frame: {served:?}"
    );
    let local = local_bus();
    assert_eq!(out[0].len(), frames as usize);
    for (f, d) in out[0].iter().enumerate() {
        same(d, &local).unwrap_or_else(|e| panic!("frame {f} ({}): {e}", served[f]));
    }
    let swaps: u64 = stats[0].get("model-swaps").unwrap();
    assert_eq!(swaps, 2, "{}", stats[0]);
}
