// SPDX-License-Identifier: MPL-2.0
//! Detection filters as DeepStream's `nvinfer` offers them, without GStreamer types:
//!
//! - **class filter** (`classes`): which class ids to keep, given as ids or names;
//! - **per-class confidence thresholds** (`class-thresholds`, nvinfer's per-class
//!   `pre-cluster-threshold`): a class's threshold replaces the global one for that class;
//! - **box size limits** (`min-box-width` .., nvinfer's `detected-min-w`, `detected-max-w` ..),
//!   in frame pixels, 0 meaning no limit;
//! - **region of interest** (`roi`): the syntax here, the crop in [`crate::preprocess`].
//!
//! Where they apply (in [`crate::postprocess`]): as in nvinfer, thresholds and size limits act
//! on the candidates *before* clustering (NMS). The decoder keeps candidates down to the lowest
//! threshold in force ([`lowest_threshold`]), then each candidate must beat its own class's
//! threshold ([`class_threshold`]), so a class threshold below `conf-threshold` finds boxes the
//! global threshold would drop. Filtering before NMS also means a removed box never suppresses
//! a kept one, and never uses up `max-detections`.

use std::sync::Arc;

use crate::preprocess::Rect;

/// Resolves one `classes` / `class-thresholds` key: a class id, or a class name (exact, then
/// ASCII case-insensitive) when `labels` are known. `None` labels (before start) make a name an
/// error that start retries with the labels.
fn resolve_class(item: &str, labels: Option<&[Arc<str>]>) -> Result<u32, String> {
    if let Ok(id) = item.parse::<u32>() {
        return Ok(id);
    }
    let Some(labels) = labels else {
        return Err(format!("`{item}` is a class name; names resolve at start"));
    };
    let found = labels
        .iter()
        .position(|l| **l == *item)
        .or_else(|| labels.iter().position(|l| l.eq_ignore_ascii_case(item)));
    found.map(|i| i as u32).ok_or_else(|| {
        format!(
            "`{item}` is neither a class id nor one of the model's {} class names (e.g. `{}`); \
             use ids such as \"0,2\" or names such as \"person,car\"",
            labels.len(),
            labels
                .iter()
                .take(3)
                .map(|l| &**l)
                .collect::<Vec<_>>()
                .join("`, `")
        )
    })
}

/// Checks class ids against the number of labels, when known.
fn check_ids(
    ids: impl IntoIterator<Item = u32>,
    labels: Option<&[Arc<str>]>,
) -> Result<(), String> {
    let Some(labels) = labels.filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    match ids.into_iter().find(|&id| id as usize >= labels.len()) {
        Some(bad) => Err(format!(
            "there is no class {bad}: the model has {} classes, ids 0 to {}",
            labels.len(),
            labels.len() - 1
        )),
        None => Ok(()),
    }
}

/// Parses the `classes` property: comma-separated class ids or names (`"0,2"`,
/// `"person, car"`; ids may also be space-separated). Names and the range of ids are checked
/// against `labels` when they are known (`None` before start: then a name is an error that
/// start retries with the labels).
pub fn parse_classes(s: &str, labels: Option<&[Arc<str>]>) -> Result<Vec<u32>, String> {
    let mut ids = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let numbers: Option<Vec<u32>> = item.split_whitespace().map(|t| t.parse().ok()).collect();
        match numbers {
            Some(n) => ids.extend(n),
            None => ids.push(resolve_class(item, labels)?),
        }
    }
    check_ids(ids.iter().copied(), labels)
        .map_err(|e| format!("{e} (this filter would remove every detection)"))?;
    Ok(ids)
}

/// Parses `class-thresholds`: comma-separated `class:threshold` pairs, the class an id or a name
/// as in [`parse_classes`], the threshold in `[0, 1]` (`"0:0.5, car:0.3"`). A class given twice
/// is an error (which one was meant?).
pub fn parse_class_thresholds(
    s: &str,
    labels: Option<&[Arc<str>]>,
) -> Result<Vec<(u32, f32)>, String> {
    let mut pairs: Vec<(u32, f32)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        // The last colon: class names never end in a number after a colon, but may hold one.
        let Some((key, value)) = item.rsplit_once(':') else {
            return Err(format!(
                "`{item}` is not a `class:threshold` pair, e.g. \"0:0.5,car:0.3\""
            ));
        };
        let class = resolve_class(key.trim(), labels)?;
        let thr: f32 = value
            .trim()
            .parse()
            .ok()
            .filter(|t: &f32| (0.0..=1.0).contains(t))
            .ok_or_else(|| {
                format!(
                    "`{}` in `{item}` is not a threshold between 0 and 1",
                    value.trim()
                )
            })?;
        if pairs.iter().any(|&(c, _)| c == class) {
            return Err(format!("class {class} (`{}`) is given twice", key.trim()));
        }
        pairs.push((class, thr));
    }
    check_ids(pairs.iter().map(|&(c, _)| c), labels)?;
    Ok(pairs)
}

/// Per-class thresholds as a table indexed by class id, NaN where the global threshold applies
/// (the form [`crate::postprocess::PostParams`] takes: a lookup per candidate, no search).
pub fn threshold_table(pairs: &[(u32, f32)]) -> Arc<[f32]> {
    let len = pairs
        .iter()
        .map(|&(c, _)| c as usize + 1)
        .max()
        .unwrap_or(0);
    let mut t = vec![f32::NAN; len];
    for &(c, thr) in pairs {
        t[c as usize] = thr;
    }
    Arc::from(t)
}

/// The threshold `class` must beat: its own from `table`, else `conf`.
#[inline]
pub fn class_threshold(table: &[f32], conf: f32, class: u32) -> f32 {
    match table.get(class as usize) {
        Some(t) if !t.is_nan() => *t,
        _ => conf,
    }
}

/// The lowest threshold in force: decoders keep candidates above it, then check each one's
/// class threshold. (Taking `conf` into the minimum even when every class has its own is
/// merely conservative.)
pub fn lowest_threshold(table: &[f32], conf: f32) -> f32 {
    table
        .iter()
        .filter(|t| !t.is_nan())
        .fold(conf, |m, &t| m.min(t))
}

/// Box size limits in frame pixels; 0 = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeLimits {
    pub min_w: u32,
    pub min_h: u32,
    pub max_w: u32,
    pub max_h: u32,
}

impl SizeLimits {
    pub fn is_unlimited(&self) -> bool {
        *self == SizeLimits::default()
    }

    /// Whether a `w x h` box (frame pixels) is inside the limits; bounds are inclusive.
    #[inline]
    pub fn allows(&self, w: f32, h: f32) -> bool {
        let max_ok = |v: f32, max: u32| max == 0 || v <= max as f32;
        w >= self.min_w as f32
            && h >= self.min_h as f32
            && max_ok(w, self.max_w)
            && max_ok(h, self.max_h)
    }
}

/// Parses `roi`: `"x,y,w,h"` in frame pixels (spaces allowed), width and height above 0; the
/// empty string is the whole frame (`None`).
pub fn parse_roi(s: &str) -> Result<Option<Rect>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let v: Vec<&str> = s.split(',').map(str::trim).collect();
    let nums: Option<Vec<u32>> = v.iter().map(|t| t.parse().ok()).collect();
    let (Some(n), 4) = (nums, v.len()) else {
        return Err(format!(
            "`{s}` is not `x,y,width,height` in frame pixels (four whole numbers, e.g. \
             \"100,50,640,480\"; empty for the whole frame)"
        ));
    };
    if n[2] == 0 || n[3] == 0 {
        return Err(format!(
            "`{s}` has zero size: width and height must be above 0"
        ));
    }
    Ok(Some(Rect {
        x: n[0],
        y: n[1],
        w: n[2],
        h: n[3],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<Arc<str>> {
        ["person", "bicycle", "car", "Traffic Light"]
            .into_iter()
            .map(Arc::from)
            .collect()
    }

    #[test]
    fn classes_ids_and_names() {
        let l = labels();
        assert_eq!(parse_classes("0, 2", Some(&l)), Ok(vec![0, 2]));
        assert_eq!(parse_classes("0 2", None), Ok(vec![0, 2]));
        assert_eq!(parse_classes("car,traffic light", Some(&l)), Ok(vec![2, 3]));
        assert_eq!(parse_classes("", Some(&l)), Ok(vec![]));
        assert!(
            parse_classes("car", None)
                .unwrap_err()
                .contains("resolve at start")
        );
        let e = parse_classes("truck", Some(&l)).unwrap_err();
        assert!(e.contains("`truck`") && e.contains("4 class names"), "{e}");
        let e = parse_classes("7", Some(&l)).unwrap_err();
        assert!(
            e.contains("no class 7") && e.contains("remove every detection"),
            "{e}"
        );
    }

    #[test]
    fn class_thresholds_parse() {
        let l = labels();
        assert_eq!(
            parse_class_thresholds("0:0.5, car : 0.3", Some(&l)),
            Ok(vec![(0, 0.5), (2, 0.3)])
        );
        assert_eq!(
            parse_class_thresholds("Traffic Light:1", Some(&l)),
            Ok(vec![(3, 1.0)])
        );
        assert_eq!(parse_class_thresholds(" ", Some(&l)), Ok(vec![]));
        assert_eq!(parse_class_thresholds("5:0.2", None), Ok(vec![(5, 0.2)]));
        for (bad, what) in [
            ("0", "not a `class:threshold`"),
            ("0:1.5", "between 0 and 1"),
            ("0:-0.1", "between 0 and 1"),
            ("0:NaN", "between 0 and 1"),
            ("0:x", "between 0 and 1"),
            ("0:0.5,person:0.6", "given twice"),
            ("truck:0.5", "`truck`"),
            ("9:0.5", "no class 9"),
        ] {
            let e = parse_class_thresholds(bad, Some(&l)).unwrap_err();
            assert!(e.contains(what), "{bad}: {e}");
        }
        assert!(parse_class_thresholds("car:0.5", None).is_err());
    }

    #[test]
    fn thresholds_per_class() {
        let t = threshold_table(&[(2, 0.6), (0, 0.1)]);
        assert_eq!(t.len(), 3);
        assert_eq!(class_threshold(&t, 0.25, 0), 0.1);
        assert_eq!(class_threshold(&t, 0.25, 1), 0.25);
        assert_eq!(class_threshold(&t, 0.25, 2), 0.6);
        assert_eq!(class_threshold(&t, 0.25, 79), 0.25);
        assert_eq!(lowest_threshold(&t, 0.25), 0.1);
        assert_eq!(lowest_threshold(&threshold_table(&[(1, 0.9)]), 0.25), 0.25);
        assert_eq!(lowest_threshold(&[], 0.4), 0.4);
    }

    #[test]
    fn size_limits() {
        let none = SizeLimits::default();
        assert!(none.is_unlimited() && none.allows(0.0, 1e6));
        let l = SizeLimits {
            min_w: 10,
            min_h: 0,
            max_w: 100,
            max_h: 50,
        };
        assert!(!l.is_unlimited());
        assert!(l.allows(10.0, 0.0) && l.allows(100.0, 50.0));
        assert!(!l.allows(9.9, 20.0));
        assert!(!l.allows(100.1, 20.0));
        assert!(!l.allows(50.0, 50.5));
        assert!(!l.allows(f32::NAN, 10.0));
    }

    #[test]
    fn roi_parse() {
        assert_eq!(parse_roi(""), Ok(None));
        assert_eq!(
            parse_roi(" 10, 20,300 ,400 "),
            Ok(Some(Rect {
                x: 10,
                y: 20,
                w: 300,
                h: 400
            }))
        );
        for bad in [
            "1,2,3",
            "1,2,3,4,5",
            "a,b,c,d",
            "-1,0,10,10",
            "0,0,10.5,10",
            "0,0,0,10",
        ] {
            assert!(parse_roi(bad).is_err(), "{bad}");
        }
        assert!(parse_roi("0,0,10,0").unwrap_err().contains("zero size"));
    }
}
