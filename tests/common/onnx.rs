// SPDX-License-Identifier: MPL-2.0
//! Tiny ONNX models written by hand, for tests of what the element does with odd models.

/// ONNX TensorProto.DataType values.
pub const FLOAT: u64 = 1;
pub const UINT8: u64 = 2;

/// Protobuf encoding, just enough to write a tiny ONNX model by hand.
pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
}
pub fn field_bytes(num: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(num << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}
pub fn field_int(num: u64, v: u64, out: &mut Vec<u8>) {
    varint(num << 3, out);
    varint(v, out);
}
/// ValueInfoProto for a tensor of `elem_type` (ONNX TensorProto.DataType) and `dims`.
pub fn value_info(name: &str, elem_type: u64, dims: &[u64]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        field_int(1, *d, &mut dim); // dim_value
        field_bytes(1, &dim, &mut shape);
    }
    let mut tensor = Vec::new();
    field_int(1, elem_type, &mut tensor);
    field_bytes(2, &shape, &mut tensor);
    let mut ty = Vec::new();
    field_bytes(1, &tensor, &mut ty); // tensor_type
    let mut vi = Vec::new();
    field_bytes(1, name.as_bytes(), &mut vi);
    field_bytes(2, &ty, &mut vi);
    vi
}
/// An ONNX model with one Identity node from `x` to `y`.
pub fn identity_model(elem_type: u64, in_dims: &[u64]) -> Vec<u8> {
    let mut node = Vec::new();
    field_bytes(1, b"x", &mut node);
    field_bytes(2, b"y", &mut node);
    field_bytes(4, b"Identity", &mut node);
    let mut graph = Vec::new();
    field_bytes(1, &node, &mut graph);
    field_bytes(2, b"not_yolo", &mut graph);
    field_bytes(11, &value_info("x", elem_type, in_dims), &mut graph);
    field_bytes(12, &value_info("y", elem_type, in_dims), &mut graph);
    let mut opset = Vec::new();
    field_int(2, 13, &mut opset);
    let mut model = Vec::new();
    field_int(1, 8, &mut model); // ir_version
    field_bytes(7, &graph, &mut model);
    field_bytes(8, &opset, &mut model);
    model
}

/// A YOLOv8-shaped "detector" ([1,3,640,640] in, [1,84,8400] out) whose output ignores the
/// input: anchor `i` of `boxes` holds (cx, cy, w, h, class, score) in model pixels, every
/// other anchor scores 0. Its detections tell at a glance which model ran on a frame.
pub fn constant_head_model(boxes: &[(f32, f32, f32, f32, usize, f32)]) -> Vec<u8> {
    const CH: usize = 84;
    const ANCHORS: usize = 8400;
    let mut out = vec![0f32; CH * ANCHORS];
    for (i, &(cx, cy, w, h, class, score)) in boxes.iter().enumerate() {
        for (c, v) in [cx, cy, w, h].into_iter().enumerate() {
            out[c * ANCHORS + i] = v;
        }
        out[(4 + class) * ANCHORS + i] = score;
    }
    let raw: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut tensor = Vec::new();
    for d in [1u64, CH as u64, ANCHORS as u64] {
        field_int(1, d, &mut tensor); // dims
    }
    field_int(2, FLOAT, &mut tensor); // data_type
    field_bytes(8, b"c", &mut tensor); // name
    field_bytes(9, &raw, &mut tensor); // raw_data
    let mut node = Vec::new();
    field_bytes(1, b"c", &mut node);
    field_bytes(2, b"output0", &mut node);
    field_bytes(4, b"Identity", &mut node);
    let mut graph = Vec::new();
    field_bytes(1, &node, &mut graph);
    field_bytes(2, b"constant_head", &mut graph);
    field_bytes(5, &tensor, &mut graph); // initializer
    field_bytes(
        11,
        &value_info("images", FLOAT, &[1, 3, 640, 640]),
        &mut graph,
    );
    field_bytes(
        12,
        &value_info("output0", FLOAT, &[1, CH as u64, ANCHORS as u64]),
        &mut graph,
    );
    let mut opset = Vec::new();
    field_int(2, 13, &mut opset);
    let mut model = Vec::new();
    field_int(1, 8, &mut model); // ir_version
    field_bytes(7, &graph, &mut model);
    field_bytes(8, &opset, &mut model);
    model
}
