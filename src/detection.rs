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
