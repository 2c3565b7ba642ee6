// SPDX-License-Identifier: MPL-2.0
//! yolooverlay through real pipelines with the real model and bus.png from ../shared: outlines
//! are drawn in the class colour where the detections are, nothing else changes, RGB and YUV
//! inputs give the same picture, and buffers without detections pass untouched and uncopied.

mod common;

use common::*;
use gst::prelude::*;
use gst_video::prelude::*;
use gstyolo::draw::class_color;
use gstyolo::meta::{Detection, DetectionMeta};

/// bus.png's size, pinned in the caps so that a different image fails negotiation loudly.
const W: usize = 810;
const H: usize = 1080;
/// Farther than this from every box outline and tag, pixels must be byte-identical.
const FAR: i64 = 20;

fn model_arg() -> String {
    format!("model=\"{}\"", model("yolov8n.onnx").display())
}

/// bus.png as `format` ! yolodetect `detect` ! `overlay` ! videoconvert ! RGB. `overlay` empty:
/// the reference pipeline without yolooverlay.
fn bus_rgb(format: &str, detect: &str, overlay: &str) -> (Rgb, Vec<Detection>) {
    let desc = format!(
        "filesrc location=\"{}\" ! pngdec ! videoconvert ! \
         video/x-raw,format={format},width={W},height={H} ! yolodetect {} {detect} ! {overlay} \
         videoconvert ! video/x-raw,format=RGB ! appsink name=sink",
        media("png/bus.png").display(),
        model_arg(),
    );
    let mut v = run_pipeline(&desc).unwrap_or_else(|e| panic!("{desc}: {e}"));
    assert_eq!(v.len(), 1, "one frame expected from {desc}");
    let (buf, dets) = v.pop().unwrap();
    (Rgb::from_buffer(&buf), dets)
}

/// bus.png through yolodetect alone, as `format`: the detections yolooverlay sees.
fn bus_detections(format: &str) -> Vec<Detection> {
    let dets = detect_image(&media("png/bus.png"), "pngdec", format, &model_arg());
    assert!(dets.len() >= 4, "bus.png should give several detections");
    dets
}

/// A tightly packed RGB copy of a frame.
struct Rgb {
    data: Vec<u8>,
}

impl Rgb {
    fn from_buffer(buf: &gst::BufferRef) -> Self {
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, W as u32, H as u32)
            .build()
            .unwrap();
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
        let stride = frame.plane_stride()[0] as usize;
        let plane = frame.plane_data(0).unwrap();
        let mut data = Vec::with_capacity(W * H * 3);
        for y in 0..H {
            data.extend_from_slice(&plane[y * stride..y * stride + W * 3]);
        }
        Rgb { data }
    }

    fn px(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * W + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// A detection's box in whole pixels as yolooverlay rounds it: `[x0, y0, x1, y1)`.
fn rect(d: &Detection) -> [i64; 4] {
    [d.x1, d.y1, d.x2, d.y2].map(|v| v.round() as i64)
}

fn in_rect(x: i64, y: i64, r: [i64; 4]) -> bool {
    x >= r[0] && x < r[2] && y >= r[1] && y < r[3]
}

fn grow(r: [i64; 4], by: i64) -> [i64; 4] {
    [r[0] - by, r[1] - by, r[2] + by, r[3] + by]
}

/// Whether `(x, y)` lies on the outline of width `lw` of box `r`.
fn on_outline(x: i64, y: i64, r: [i64; 4], lw: i64) -> bool {
    in_rect(x, y, r) && !in_rect(x, y, [r[0] + lw, r[1] + lw, r[2] - lw, r[3] - lw])
}

/// Whether `(x, y)` is within `margin` of the outline of width `lw` of box `r`.
fn near_outline(x: i64, y: i64, r: [i64; 4], lw: i64, margin: i64) -> bool {
    in_rect(x, y, grow(r, margin))
        && !in_rect(
            x,
            y,
            [
                r[0] + lw + margin,
                r[1] + lw + margin,
                r[2] - lw - margin,
                r[3] - lw - margin,
            ],
        )
}

/// A rectangle holding `d`'s tag for font scales up to 3 (the auto scale is 2 at this size):
/// above the box or inside its top, shifted left to stay in the frame.
fn tag_zone(d: &Detection) -> [i64; 4] {
    let r = rect(d);
    let scale = 3;
    let tag_h = 10 * scale;
    let chars = d.label.chars().count() as i64 + 5;
    let tag_w = scale + chars * 8 * scale;
    let x0 = r[0].min(W as i64 - tag_w).max(0);
    [x0, r[1] - tag_h, r[0].max(0) + tag_w, r[1] + tag_h]
}

/// Points on each edge of `d`'s box that lie in the frame: its outermost pixel row or column,
/// at a quarter, half and three quarters of the edge, moved `inset` pixels into the outline.
fn edge_points(d: &Detection, inset: i64) -> Vec<(i64, i64)> {
    let [x0, y0, x1, y1] = rect(d);
    let (w, h) = (W as i64, H as i64);
    let mut pts = Vec::new();
    for t in [1, 2, 3] {
        let x = x0 + (x1 - x0) * t / 4;
        let y = y0 + (y1 - y0) * t / 4;
        for (px, py, inside) in [
            (x, y0 + inset, y0 >= 0),
            (x, y1 - 1 - inset, y1 <= h),
            (x0 + inset, y, x0 >= 0),
            (x1 - 1 - inset, y, x1 <= w),
        ] {
            if inside && (0..w).contains(&px) && (0..h).contains(&py) {
                pts.push((px, py));
            }
        }
    }
    pts
}

/// Whether something other than detection `i`'s own outline may be drawn at `(x, y)`: any tag,
/// or another detection's outline of width `lw`.
fn occluded(x: i64, y: i64, i: usize, dets: &[Detection], lw: i64) -> bool {
    dets.iter()
        .enumerate()
        .any(|(j, d)| in_rect(x, y, tag_zone(d)) || (j != i && near_outline(x, y, rect(d), lw, 1)))
}

#[test]
fn outlines_are_drawn_in_the_class_colour() {
    let dets = bus_detections("RGB");
    let (plain, _) = bus_rgb("RGB", "", "");
    let (drawn, drawn_dets) = bus_rgb("RGB", "", "yolooverlay !");
    assert_eq!(drawn_dets, dets, "yolooverlay must keep the DetectionMeta");
    let (mut checked, mut coloured) = (0, 0);
    for (i, d) in dets.iter().enumerate() {
        let pts = edge_points(d, 0);
        assert!(pts.len() >= 6, "{d:?}: too few edge points in the frame");
        for (x, y) in pts {
            let (xu, yu) = (x as usize, y as usize);
            assert_ne!(
                drawn.px(xu, yu),
                plain.px(xu, yu),
                "{d:?}: outline pixel ({x}, {y}) unchanged"
            );
            if !occluded(x, y, i, &dets, 2) {
                checked += 1;
                assert_eq!(
                    drawn.px(xu, yu),
                    class_color(d.class_id),
                    "{d:?}: outline pixel ({x}, {y}) not in the class colour"
                );
                coloured += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} unoccluded outline points");
    assert_eq!(checked, coloured);
}

#[test]
fn pixels_far_from_boxes_and_tags_are_untouched() {
    let dets = bus_detections("RGB");
    let (plain, _) = bus_rgb("RGB", "", "");
    let (drawn, _) = bus_rgb("RGB", "", "yolooverlay !");
    let (mut checked, mut changed_near) = (0usize, 0usize);
    for y in 0..H as i64 {
        for x in 0..W as i64 {
            let near = dets.iter().any(|d| {
                near_outline(x, y, rect(d), 4, FAR) || in_rect(x, y, grow(tag_zone(d), FAR))
            });
            let same = drawn.px(x as usize, y as usize) == plain.px(x as usize, y as usize);
            if near {
                changed_near += usize::from(!same);
            } else {
                assert!(same, "pixel ({x}, {y}) far from every box and tag changed");
                checked += 1;
            }
        }
    }
    // Box interiors count as far: the test would catch a fill as well as stray pixels.
    assert!(
        checked > W * H / 3,
        "only {checked} far pixels checked: the test would prove little"
    );
    assert!(changed_near > 1000, "the overlay drew almost nothing");
}

#[test]
fn yuv_inputs_draw_like_rgb() {
    // Wide lines so that the middle of each line has drawn chroma all around it and
    // videoconvert's chroma upsampling cannot blend in the picture.
    let lw = 6;
    let overlay = format!("yolooverlay line-width={lw} !");
    let (rgb_plain, _) = bus_rgb("RGB", "", "");
    let (rgb_drawn, _) = bus_rgb("RGB", "", &overlay);
    let rgb_dets = bus_detections("RGB");
    for format in ["I420", "NV12"] {
        let dets = bus_detections(format);
        let (plain, _) = bus_rgb(format, "", "");
        let (drawn, _) = bus_rgb(format, "", &overlay);

        // Outline colour: the class colour up to YUV rounding in yolooverlay and videoconvert
        // (measured: at most 5). Drawing with the wrong YUV matrix (BT.601 for this BT.709
        // frame) is off by up to 17, 7.8 on average.
        let mut n = 0;
        let mut sum = 0u64;
        let mut worst = 0u8;
        for (i, d) in dets.iter().enumerate() {
            for (x, y) in edge_points(d, lw / 2) {
                if occluded(x, y, i, &dets, lw) {
                    continue;
                }
                let got = drawn.px(x as usize, y as usize);
                let want = class_color(d.class_id);
                let diff = (0..3).map(|c| got[c].abs_diff(want[c])).max().unwrap();
                assert!(
                    diff <= 10,
                    "{format} {d:?}: outline pixel ({x}, {y}) is {got:?}, class colour {want:?}"
                );
                sum += u64::from(diff);
                worst = worst.max(diff);
                n += 1;
            }
        }
        assert!(n >= 20, "{format}: only {n} outline points checked");
        let mean_colour = sum as f64 / n as f64;
        assert!(
            mean_colour <= 6.0,
            "{format}: outline colour off by {mean_colour:.1} on average"
        );

        // Where both paths drew an outline, the colours agree up to YUV conversion; 3 to 6 px
        // from the outlines, the pictures differ no more than they do without the overlay.
        // Box positions may move by a pixel or two between the paths, hence the split.
        let (mut on, mut d_on) = (0u64, 0u64);
        let (mut off, mut d_off, mut d_off_plain) = (0u64, 0u64, 0u64);
        let mad = |a: [u8; 3], b: [u8; 3]| -> u64 {
            (0..3).map(|c| u64::from(a[c].abs_diff(b[c]))).sum()
        };
        for y in 0..H as i64 {
            for x in 0..W as i64 {
                if dets
                    .iter()
                    .chain(&rgb_dets)
                    .any(|d| in_rect(x, y, tag_zone(d)))
                {
                    continue;
                }
                // The middle of the lines: their edge pixels take colour from both sides when
                // videoconvert upsamples chroma.
                let mid = |d: &Detection| on_outline(x, y, grow(rect(d), -1), lw - 2);
                let on_rgb = rgb_dets.iter().any(mid);
                let on_yuv = dets.iter().any(mid);
                let all = || dets.iter().chain(&rgb_dets);
                // Chroma bleed and videoconvert's chroma upsampling reach 2 px past a line.
                let next_to = all().any(|d| near_outline(x, y, rect(d), lw, 6))
                    && !all().any(|d| near_outline(x, y, rect(d), lw, 2));
                let (xu, yu) = (x as usize, y as usize);
                if on_rgb && on_yuv {
                    on += 3;
                    d_on += mad(drawn.px(xu, yu), rgb_drawn.px(xu, yu));
                } else if next_to {
                    off += 3;
                    d_off += mad(drawn.px(xu, yu), rgb_drawn.px(xu, yu));
                    d_off_plain += mad(plain.px(xu, yu), rgb_plain.px(xu, yu));
                }
            }
        }
        let d_on = d_on as f64 / on as f64;
        let (d_off, d_off_plain) = (d_off as f64 / off as f64, d_off_plain as f64 / off as f64);
        eprintln!(
            "{format}: outline colour error {mean_colour:.2} (worst {worst}); vs RGB overlay: on outlines {d_on:.2} ({on} samples), next to them {d_off:.2} (without overlay {d_off_plain:.2}, {off} samples)"
        );
        assert!(
            on > 3 * 5000,
            "{format}: only {on} outline samples in common"
        );
        assert!(
            d_on <= 6.0,
            "{format}: outlines differ from the RGB overlay by {d_on:.1} on average"
        );
        assert!(
            d_off <= d_off_plain + 3.0,
            "{format}: next to the outlines the overlay adds a mean difference of {:.1}",
            d_off - d_off_plain
        );
    }
}

/// `videotestsrc` frames with and without yolooverlay, as raw bytes.
fn testsrc_frames(format: &str, overlay: &str) -> Vec<Vec<u8>> {
    let desc = format!(
        "videotestsrc num-buffers=3 pattern=smpte ! \
         video/x-raw,format={format},width=320,height=240 ! {overlay} appsink name=sink"
    );
    run_pipeline(&desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .into_iter()
        .map(|(b, _)| b.map_readable().unwrap().to_vec())
        .collect()
}

#[test]
fn buffers_without_detections_pass_unchanged() {
    for format in ["RGB", "BGRx", "I420", "NV12"] {
        let plain = testsrc_frames(format, "");
        assert_eq!(plain.len(), 3);
        assert_eq!(
            testsrc_frames(format, "yolooverlay !"),
            plain,
            "{format}: no meta"
        );
    }
    // A DetectionMeta with zero detections.
    let (plain, _) = bus_rgb("RGB", "conf-threshold=1.0", "");
    let (drawn, dets) = bus_rgb("RGB", "conf-threshold=1.0", "yolooverlay !");
    assert!(dets.is_empty());
    assert!(drawn.data == plain.data, "frame with an empty meta changed");
}

/// Pushes `buf` through `appsrc ! yolooverlay ! appsink` while the caller keeps a reference to
/// it, so yolooverlay gets a buffer whose memory it shares with someone else.
fn overlay_shared(buf: &gst::Buffer) -> gst::Buffer {
    init();
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time caps=video/x-raw,format=RGBx,width=64,height=48,framerate=0/1 \
         ! yolooverlay ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    src.push_buffer(buf.clone()).unwrap();
    src.end_of_stream().unwrap();
    let sample = sink.pull_sample();
    pipeline.set_state(gst::State::Null).unwrap();
    sample.expect("one sample").buffer_owned().unwrap()
}

fn grey_frame(dets: Option<Vec<Detection>>) -> gst::Buffer {
    let mut buf = gst::Buffer::from_mut_slice(vec![100u8; 64 * 48 * 4]);
    if let Some(dets) = dets {
        DetectionMeta::add(buf.get_mut().unwrap(), dets, (640, 640));
    }
    buf
}

fn data_ptr(buf: &gst::Buffer) -> *const u8 {
    buf.map_readable().unwrap().as_ptr()
}

#[test]
fn shared_buffers_are_copied_only_when_drawn_on() {
    let det = Detection {
        class_id: 0,
        label: "person".into(),
        confidence: 0.9,
        x1: 10.0,
        y1: 20.0,
        x2: 40.0,
        y2: 44.0,
        track_id: None,
    };
    for dets in [None, Some(Vec::new())] {
        let input = grey_frame(dets.clone());
        let out = overlay_shared(&input);
        assert_eq!(
            data_ptr(&out),
            data_ptr(&input),
            "{dets:?}: nothing to draw, yet the memory was copied"
        );
    }

    let input = grey_frame(Some(vec![det]));
    let out = overlay_shared(&input);
    assert_ne!(data_ptr(&out), data_ptr(&input));
    let before = input.map_readable().unwrap();
    assert!(
        before.iter().all(|&b| b == 100),
        "the overlay wrote into memory it shares with the caller"
    );
    let after = out.map_readable().unwrap();
    let [r, g, b] = class_color(0);
    // Top-left corner of the box (RGBx, stride 256).
    let i = 20 * 64 * 4 + 10 * 4;
    assert_eq!(&after[i..i + 3], &[r, g, b]);
}

#[test]
fn no_tag_without_labels_and_confidence() {
    let lw = 3;
    let dets = bus_detections("RGB");
    let (plain, _) = bus_rgb("RGB", "", "");
    // Changed pixels off every outline: the tags.
    let off_outline = |drawn: &Rgb| {
        let mut n = 0;
        for y in 0..H as i64 {
            for x in 0..W as i64 {
                let (xu, yu) = (x as usize, y as usize);
                if drawn.px(xu, yu) != plain.px(xu, yu)
                    && !dets.iter().any(|d| on_outline(x, y, rect(d), lw))
                {
                    n += 1;
                }
            }
        }
        n
    };
    let (tagged, _) = bus_rgb("RGB", "", &format!("yolooverlay line-width={lw} !"));
    let tags = off_outline(&tagged);
    assert!(tags > 2000, "with labels, tags should be drawn ({tags} px)");
    let (bare, _) = bus_rgb(
        "RGB",
        "",
        &format!("yolooverlay line-width={lw} draw-labels=false draw-confidence=false !"),
    );
    assert_eq!(off_outline(&bare), 0, "pixels drawn outside the outlines");
    // The outlines themselves are still there.
    let outlined = (0..H)
        .flat_map(|y| (0..W).map(move |x| (x, y)))
        .filter(|&(x, y)| bare.px(x, y) != plain.px(x, y))
        .count();
    assert!(outlined > 5000, "only {outlined} outline pixels drawn");
}
