// SPDX-License-Identifier: MPL-2.0
//! What the model is: its input and output, Ultralytics metadata and head layout.

use std::path::Path;

use ort::session::Session;
use ort::value::ValueType;

use super::EngineError;
use crate::labels;
use crate::postprocess::HeadLayout;

/// What the model is, from its Ultralytics metadata and its input/output shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub input_name: String,
    pub output_name: String,
    /// Model input (width, height).
    pub input_width: u32,
    pub input_height: u32,
    /// Fixed batch size, or `None` when the batch dimension is dynamic.
    pub batch: Option<usize>,
    /// Class names from the model's `names` metadata, if present.
    pub names: Option<Vec<String>>,
    pub stride: Option<u32>,
    pub task: Option<String>,
    pub head: HeadLayout,
    /// Concrete output shape for batch 1.
    pub output_shape: Vec<i64>,
}

/// The first output's shape with the batch dimension set to 1, if every other dimension is
/// static.
pub(super) fn static_output_shape(session: &Session) -> Option<Vec<i64>> {
    let out = session.outputs().first()?;
    let ValueType::Tensor { shape, .. } = out.dtype() else {
        return None;
    };
    let mut dims: Vec<i64> = shape.iter().copied().collect();
    if let Some(b) = dims.first_mut()
        && *b <= 0
    {
        *b = 1;
    }
    (!dims.is_empty() && dims.iter().all(|&d| d > 0)).then_some(dims)
}

pub(super) fn read_model_info(session: &Session, path: &Path) -> Result<ModelInfo, EngineError> {
    let not_det = |reason: String| EngineError::NotADetector {
        path: path.to_path_buf(),
        reason,
    };
    let [input] = session.inputs() else {
        return Err(not_det(format!(
            "it has {} inputs; a YOLO detector has one image input [B, 3, H, W]",
            session.inputs().len()
        )));
    };
    let Some(output) = session.outputs().first() else {
        return Err(not_det("it has no outputs".into()));
    };
    let ValueType::Tensor { shape, .. } = input.dtype() else {
        return Err(not_det("its input is not a tensor".into()));
    };
    let dims: Vec<i64> = shape.iter().copied().collect();
    if dims.len() != 4 || (dims[1] != 3 && dims[1] != -1) {
        return Err(not_det(format!(
            "its input has shape {dims:?}; a YOLO detector takes [B, 3, H, W]"
        )));
    }
    let meta = session.metadata().ok();
    let custom = |k: &str| meta.as_ref().and_then(|m| m.custom(k));
    let names = custom("names").and_then(|s| labels::parse_names(&s));
    let stride = custom("stride").and_then(|s| s.trim().parse::<u32>().ok());
    let task = custom("task");
    if let Some(t) = &task
        && t != "detect"
    {
        return Err(not_det(format!(
            "its Ultralytics metadata says task `{t}`; yolodetect runs `detect` models"
        )));
    }
    let imgsz = custom("imgsz").and_then(|s| labels::parse_imgsz(&s));
    let (h, w) = match (dims[2], dims[3], imgsz) {
        (h, w, _) if h > 0 && w > 0 => (h as u32, w as u32),
        (_, _, Some(hw)) => hw,
        // Dynamic and no metadata: Ultralytics' default size.
        _ => (640, 640),
    };
    Ok(ModelInfo {
        input_name: input.name().to_string(),
        output_name: output.name().to_string(),
        input_width: w,
        input_height: h,
        batch: (dims[0] > 0).then_some(dims[0] as usize),
        names,
        stride,
        task,
        head: HeadLayout::EndToEnd { max_detections: 0 },
        output_shape: Vec::new(),
    })
}
