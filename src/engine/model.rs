// SPDX-License-Identifier: MPL-2.0
//! What the model is: its input and output, Ultralytics metadata and head layout.

use std::path::Path;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::EngineError;
use crate::labels;
use crate::postprocess::{HeadError, HeadHints, HeadLayout};

/// Largest model input side accepted. Each side of a YOLO input is a multiple of its stride,
/// 640 by default and rarely above 1280; a model (or its `imgsz` metadata) asking for more is
/// refused rather than allowed to allocate gigabytes of input tensors, or abort the process when
/// the allocation fails.
pub const MAX_INPUT_SIDE: u32 = 8192;

/// A zeroed input tensor of `len` floats, allocated fallibly: a failed allocation is an error
/// on the bus, not an abort of the host process.
pub(super) fn alloc_input(len: usize, path: &Path) -> Result<Vec<f32>, EngineError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|e| EngineError::NotADetector {
            path: path.to_path_buf(),
            reason: format!("cannot allocate its input tensor of {len} floats: {e}"),
        })?;
    v.resize(len, 0.0);
    Ok(v)
}

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
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(not_det("its input is not a tensor".into()));
    };
    if *ty != TensorElementType::Float32 {
        return Err(not_det(format!(
            "its input `{}` holds {ty} values; yolodetect feeds float32 (f32) images: export \
             the model without half=True or int8=True",
            input.name()
        )));
    }
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
        // Saturating: a side past u32 must still fail the bound below, not wrap.
        (h, w, _) if h > 0 && w > 0 => (
            u32::try_from(h).unwrap_or(u32::MAX),
            u32::try_from(w).unwrap_or(u32::MAX),
        ),
        (_, _, Some(hw)) => hw,
        // Dynamic and no metadata: Ultralytics' default size.
        _ => (640, 640),
    };
    if h > MAX_INPUT_SIDE || w > MAX_INPUT_SIDE {
        return Err(not_det(format!(
            "its input is {w}x{h} pixels (from its {}), more than the {MAX_INPUT_SIDE}x\
             {MAX_INPUT_SIDE} yolodetect accepts: export it with a smaller imgsz",
            if dims[2] > 0 && dims[3] > 0 {
                "input shape"
            } else {
                "imgsz metadata"
            }
        )));
    }
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

/// The head layout of an output of `shape`, helped by what the metadata says (input size and
/// stride of an Ultralytics export): small inputs give shapes the layout rules alone misread.
pub(super) fn detect_head(info: &ModelInfo, shape: &[i64]) -> Result<HeadLayout, HeadError> {
    let hints = HeadHints {
        input: Some((info.input_width, info.input_height)),
        stride: info.stride,
    };
    HeadLayout::detect_with(shape, info.names.as_ref().map(Vec::len), &hints)
}
