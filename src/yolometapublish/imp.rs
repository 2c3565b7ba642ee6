// SPDX-License-Identifier: MPL-2.0

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use parking_lot::Mutex;

use crate::detection::{Detection, json_line};
use crate::meta::DetectionMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "yolometapublish",
        gst::DebugColorFlags::empty(),
        Some("Publishes YOLO detections as JSON lines and bus messages"),
    )
});

/// Property values. `Default` is the single source of defaults.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    /// File to write; "-" = stdout.
    location: Option<String>,
    /// File descriptor to write (duplicated); -1 = none.
    fd: i32,
    post_messages: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            fd: -1,
            post_messages: false,
        }
    }
}

enum Output {
    None,
    Stdout,
    /// A file we opened or a duplicate of the application's descriptor.
    File(BufWriter<File>),
}

impl Output {
    fn open(s: &Settings) -> Result<Self, gst::ErrorMessage> {
        match (s.location.as_deref(), s.fd) {
            (Some(loc), fd) if fd >= 0 => Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["location ({loc}) and fd ({fd}) are both set; choose one (location=- for stdout)"]
            )),
            (Some("-"), _) => Ok(Output::Stdout),
            (Some(""), _) => Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["location is empty: give a file path, or - for stdout"]
            )),
            (Some(loc), _) => File::create(loc)
                .map(|f| Output::File(BufWriter::new(f)))
                .map_err(|e| {
                    gst::error_msg!(gst::ResourceError::OpenWrite, ["cannot create {loc}: {e}"])
                }),
            (None, fd) if fd >= 0 => {
                dup_fd(fd)
                    .map(|f| Output::File(BufWriter::new(f)))
                    .map_err(|e| {
                        gst::error_msg!(
                            gst::ResourceError::OpenWrite,
                            ["cannot use file descriptor {fd}: {e}"]
                        )
                    })
            }
            (None, _) if s.post_messages => Ok(Output::None),
            (None, _) => Err(gst::error_msg!(
                gst::ResourceError::Settings,
                [
                    "nothing to publish to: set location (a file, or - for stdout), fd, or post-messages=true"
                ]
            )),
        }
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        // One flush per frame, so readers see each frame as it is written.
        match self {
            Output::None => Ok(()),
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                out.flush()
            }
            Output::File(w) => {
                w.write_all(line.as_bytes())?;
                w.write_all(b"\n")?;
                w.flush()
            }
        }
    }
}

/// A duplicate of the application's descriptor, so that closing ours leaves theirs open.
fn dup_fd(fd: RawFd) -> io::Result<File> {
    // SAFETY: the descriptor is only borrowed for the duration of the dup (fcntl
    // F_DUPFD_CLOEXEC), which fails cleanly with EBADF if the application passed a closed one.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(File::from(borrowed.try_clone_to_owned()?))
}

/// Runtime data, built in `start`, dropped in `stop`.
struct State {
    output: Output,
    frame: u64,
    size: (u32, u32),
    /// The current buffer's detections, reused across frames.
    detections: Vec<Detection>,
}

#[derive(Default)]
pub struct YoloMetaPublish {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for YoloMetaPublish {
    const NAME: &'static str = "GstYoloMetaPublish";
    type Type = super::YoloMetaPublish;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for YoloMetaPublish {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let s = Settings::default();
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("File to write one JSON line per frame to (created or truncated at start); - writes to stdout")
                    .default_value(s.location.as_deref())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("fd")
                    .nick("File descriptor")
                    .blurb("Open file descriptor to write the JSON lines to instead of location (duplicated: the caller keeps and closes its own); -1 = none")
                    .minimum(-1)
                    .maximum(i32::MAX)
                    .default_value(s.fd)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post a yolo-detections element message per frame on the bus (gst-launch-1.0 -m shows them)")
                    .default_value(s.post_messages)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock();
        match pspec.name() {
            "location" => s.location = value.get().expect("type checked upstream"),
            "fd" => s.fd = value.get().expect("type checked upstream"),
            "post-messages" => s.post_messages = value.get().expect("type checked upstream"),
            _ => unimplemented!(),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock();
        match pspec.name() {
            "location" => s.location.to_value(),
            "fd" => s.fd.to_value(),
            "post-messages" => s.post_messages.to_value(),
            _ => unimplemented!(),
        }
    }
}

impl GstObjectImpl for YoloMetaPublish {}

impl ElementImpl for YoloMetaPublish {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "YOLO metadata publisher",
                "Filter/Analyzer/Video",
                "Writes the detections on each buffer as JSON lines to a file, stdout or a file descriptor, and optionally posts them as element messages",
                "gst-yolo developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        // Only metadata is read, so any raw video in any memory passes.
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::video::meta_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for YoloMetaPublish {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    // Read-only: buffers go through as they are, never made writable (no copies).
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().clone();
        let output = Output::open(&settings)?;
        gst::info!(CAT, imp = self, "started with {settings:?}");
        *self.state.lock() = Some(State {
            output,
            frame: 0,
            size: (0, 0),
            detections: Vec::with_capacity(64),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the writer flushes and closes our file (or our duplicate of the fd).
        *self.state.lock() = None;
        gst::info!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {incaps}"))?;
        gst::debug!(CAT, imp = self, "configured for {incaps}");
        if let Some(st) = self.state.lock().as_mut() {
            st.size = (info.width(), info.height());
        }
        Ok(())
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let post_messages = self.settings.lock().post_messages;
        let mut guard = self.state.lock();
        let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;

        st.detections.clear();
        if let Some(meta) = buf.meta::<DetectionMeta>() {
            st.detections.extend_from_slice(meta.detections());
        }
        let pts = buf.pts();
        let (w, h) = st.size;
        let line = json_line(st.frame, pts.map(|t| t.nseconds()), w, h, &st.detections);
        if let Err(e) = st.output.write_line(&line) {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                ["cannot write frame {}: {e}", st.frame]
            );
            return Err(gst::FlowError::Error);
        }
        let message =
            post_messages.then(|| detections_structure(st.frame, pts, &line, &st.detections));
        gst::log!(
            CAT,
            imp = self,
            "frame {}: {} detections published",
            st.frame,
            st.detections.len()
        );
        st.frame += 1;
        // Unlocked first: a bus sync handler may call back into the element.
        drop(guard);
        if let Some(s) = message {
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// The `yolo-detections` message structure of one frame.
fn detections_structure(
    frame: u64,
    pts: Option<gst::ClockTime>,
    line: &str,
    dets: &[Detection],
) -> gst::Structure {
    let list = gst::List::new(dets.iter().map(|d| {
        let mut s = gst::Structure::builder("detection")
            .field("label", &*d.label)
            .field("class-id", d.class_id)
            .field("confidence", d.confidence as f64)
            .field("x1", d.x1 as f64)
            .field("y1", d.y1 as f64)
            .field("x2", d.x2 as f64)
            .field("y2", d.y2 as f64)
            .build();
        if let Some(id) = d.track_id {
            s.set("track-id", id);
        }
        s
    }));
    let mut s = gst::Structure::builder("yolo-detections")
        .field("frame", frame)
        .field("json", line)
        .field("detections", list)
        .build();
    if let Some(t) = pts {
        s.set("timestamp", t);
    }
    s
}
