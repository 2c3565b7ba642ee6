//! Letterbox pre-processing with Ultralytics' semantics (STUB: interface only; being written).
