//! Plain detection types shared by post-processing, the metadata and drawing.
//! No GStreamer imports: this is part of the rlib's public API.

use std::sync::Arc;

/// One detected object, box in frame pixels (x1, y1, x2, y2), x2/y2 exclusive-edge floats.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub class_id: u32,
    /// Shared so that per-frame copies do not allocate.
    pub label: Arc<str>,
    pub confidence: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    /// Id of the track this object belongs to, set by `yolotrack`; `None` until tracked.
    pub track_id: Option<u64>,
}

impl Detection {
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    /// The box as `[x1, y1, x2, y2]`.
    pub fn bbox(&self) -> [f32; 4] {
        [self.x1, self.y1, self.x2, self.y2]
    }
}

/// One frame's detections as a JSON line, the format `examples/yolo-json.rs` and the demo print:
/// `{"frame": n, "pts_ns": t, "width": w, "height": h, "detections": [{"class_id": c,
/// "label": "...", "confidence": f, "box": [x1, y1, x2, y2]}]}` (`pts_ns` is `null` if unknown);
/// a tracked detection also has `"track_id": n` after its box.
pub fn json_line(
    frame: u64,
    pts_ns: Option<u64>,
    width: u32,
    height: u32,
    detections: &[Detection],
) -> String {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(96 + 96 * detections.len());
    let _ = write!(line, "{{\"frame\": {frame}, \"pts_ns\": ");
    match pts_ns {
        Some(t) => {
            let _ = write!(line, "{t}");
        }
        None => line.push_str("null"),
    }
    let _ = write!(
        line,
        ", \"width\": {width}, \"height\": {height}, \"detections\": ["
    );
    for (i, d) in detections.iter().enumerate() {
        if i > 0 {
            line.push_str(", ");
        }
        let _ = write!(line, "{{\"class_id\": {}, \"label\": ", d.class_id);
        push_json_string(&mut line, &d.label);
        let _ = write!(
            line,
            ", \"confidence\": {:.4}, \"box\": [{:.1}, {:.1}, {:.1}, {:.1}]",
            d.confidence, d.x1, d.y1, d.x2, d.y2
        );
        if let Some(id) = d.track_id {
            let _ = write!(line, ", \"track_id\": {id}");
        }
        line.push('}');
    }
    line.push_str("]}");
    line
}

fn push_json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_format() {
        let d = Detection {
            class_id: 0,
            label: Arc::from("a \"b\"\n"),
            confidence: 0.87654,
            x1: 1.0,
            y1: 2.25,
            x2: 30.0,
            y2: 40.04,
            track_id: None,
        };
        assert_eq!(
            json_line(3, Some(40), 64, 48, &[d.clone(), d.clone()]),
            "{\"frame\": 3, \"pts_ns\": 40, \"width\": 64, \"height\": 48, \"detections\": [\
             {\"class_id\": 0, \"label\": \"a \\\"b\\\"\\u000a\", \"confidence\": 0.8765, \"box\": [1.0, 2.2, 30.0, 40.0]}, \
             {\"class_id\": 0, \"label\": \"a \\\"b\\\"\\u000a\", \"confidence\": 0.8765, \"box\": [1.0, 2.2, 30.0, 40.0]}]}"
        );
        let tracked = Detection {
            track_id: Some(17),
            ..d.clone()
        };
        assert_eq!(
            json_line(1, None, 64, 48, &[tracked]),
            "{\"frame\": 1, \"pts_ns\": null, \"width\": 64, \"height\": 48, \"detections\": [\
             {\"class_id\": 0, \"label\": \"a \\\"b\\\"\\u000a\", \"confidence\": 0.8765, \"box\": [1.0, 2.2, 30.0, 40.0], \"track_id\": 17}]}"
        );
        assert_eq!(
            json_line(0, None, 1, 1, &[]),
            "{\"frame\": 0, \"pts_ns\": null, \"width\": 1, \"height\": 1, \"detections\": []}"
        );
    }
}
