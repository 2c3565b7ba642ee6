//! Class labels: label files, and the Ultralytics metadata stored in exported ONNX models
//! (`names`, a Python dict literal, and `imgsz`). No GStreamer imports.

use std::fmt;

/// What is wrong with a label file or label set; Display says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelError {
    /// No labels at all.
    Empty,
    /// A blank line before the last label (1-based line number).
    BlankLine { line: usize },
    /// Label count differs from the model's class count.
    CountMismatch { labels: usize, classes: usize },
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LabelError::Empty => write!(
                f,
                "label file has no labels: write one class name per line, in class-id order"
            ),
            LabelError::BlankLine { line } => write!(
                f,
                "label file line {line} is empty: write one class name per line with no blank \
                 lines in between (a blank line would shift every later class id)"
            ),
            LabelError::CountMismatch { labels, classes } if labels < classes => write!(
                f,
                "the labels name {labels} classes but the model outputs {classes}: use the \
                 label file made for this model, with one name per line for all {classes} classes"
            ),
            LabelError::CountMismatch { labels, classes } => write!(
                f,
                "the labels name {labels} classes but the model outputs only {classes}: use \
                 the label file made for this model ({classes} lines), not one for another model"
            ),
        }
    }
}

impl std::error::Error for LabelError {}

/// One label per line, in class-id order. Each line is trimmed (whitespace, CR); a UTF-8 BOM
/// is skipped; trailing blank lines are fine. A blank line before the last label is an error
/// (as every line is a class, it would silently shift the later ids).
pub fn parse_label_file(text: &str) -> Result<Vec<String>, LabelError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let Some(last) = lines.iter().rposition(|l| !l.is_empty()) else {
        return Err(LabelError::Empty);
    };
    lines[..=last]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if l.is_empty() {
                Err(LabelError::BlankLine { line: i + 1 })
            } else {
                Ok(l.to_string())
            }
        })
        .collect()
}

/// Largest label file accepted: 10,000 classes of 100 bytes is far beyond any real model.
pub const MAX_LABEL_FILE_BYTES: u64 = 1 << 20;

/// Reads a label file for [`parse_label_file`]. Only a regular file of at most
/// [`MAX_LABEL_FILE_BYTES`] is read: a device such as `/dev/zero` would be read forever and a
/// FIFO would block the state change until a writer shows up. The read itself is capped too, as
/// the file may grow between the check and the read.
pub fn read_label_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err("it is a directory, not a text file with one class name per line".into());
    }
    if !meta.is_file() {
        return Err(
            "it is not a regular file (a device, FIFO or socket): give a text file with one \
             class name per line"
                .into(),
        );
    }
    let too_big = || {
        format!(
            "it is larger than {} KiB; a label file has one class name per line",
            MAX_LABEL_FILE_BYTES / 1024
        )
    };
    if meta.len() > MAX_LABEL_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_LABEL_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_LABEL_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".into())
}

/// Parses Ultralytics' `names` metadata, a Python dict literal like
/// `{0: 'person', 1: 'bicycle', 2: "it's"}` (both quote styles, Python escapes). Keys must be
/// exactly 0..n (any order); quoted keys (JSON style) and a plain list `['a', 'b']` are also
/// accepted. `None` if it doesn't parse or is empty.
pub fn parse_names(s: &str) -> Option<Vec<String>> {
    let mut p = Parser {
        s: s.trim().as_bytes(),
        src: s.trim(),
        pos: 0,
    };
    let names = match p.peek()? {
        b'{' => {
            p.pos += 1;
            let mut pairs: Vec<(usize, String)> = Vec::new();
            while !p.eat(b'}') {
                let key = p.key()?;
                p.expect(b':')?;
                pairs.push((key, p.string()?));
                if !p.eat(b',') {
                    p.expect(b'}')?;
                    break;
                }
            }
            pairs.sort_by_key(|&(k, _)| k);
            if pairs.iter().enumerate().any(|(i, &(k, _))| i != k) {
                return None;
            }
            pairs.into_iter().map(|(_, v)| v).collect()
        }
        b'[' => {
            p.pos += 1;
            let mut names = Vec::new();
            while !p.eat(b']') {
                names.push(p.string()?);
                if !p.eat(b',') {
                    p.expect(b']')?;
                    break;
                }
            }
            names
        }
        _ => return None,
    };
    p.skip_ws();
    (p.pos == p.s.len() && !names.is_empty()).then_some(names)
}

/// Parses Ultralytics' `imgsz` metadata: "[640, 640]" (h, w), or "640" for a square input.
/// Also accepts a tuple "(h, w)" and "[640]". `None` if it doesn't parse or a size is 0.
pub fn parse_imgsz(s: &str) -> Option<(u32, u32)> {
    let s = s.trim();
    let inner = match (s.chars().next()?, s.chars().last()?) {
        ('[', ']') | ('(', ')') => &s[1..s.len() - 1],
        _ => s,
    };
    let dims: Vec<u32> = inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok().filter(|&d| d > 0))
        .collect::<Option<_>>()?;
    match dims[..] {
        [d] => Some((d, d)),
        [h, w] => Some((h, w)),
        _ => None,
    }
}

/// Checks labels against the model's class count. Any difference is an error naming both
/// numbers: fewer labels leave classes unnamed, more mean the labels belong to another model.
pub fn check_count(labels: &[String], num_classes: usize) -> Result<(), LabelError> {
    if labels.len() == num_classes {
        Ok(())
    } else {
        Err(LabelError::CountMismatch {
            labels: labels.len(),
            classes: num_classes,
        })
    }
}

/// Minimal reader for the Python literal subset Ultralytics writes.
struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    /// A non-negative integer key, optionally quoted.
    fn key(&mut self) -> Option<usize> {
        if matches!(self.peek()?, b'\'' | b'"') {
            return self.string()?.trim().parse().ok();
        }
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.src[start..self.pos].parse().ok()
    }

    /// A single- or double-quoted string with Python escapes.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote or backslash (pos stays on a char boundary:
            // both are ASCII).
            let start = self.pos;
            while !matches!(self.s.get(self.pos), Some(&c) if c == quote || c == b'\\') {
                if self.pos >= self.s.len() {
                    return None;
                }
                self.pos += 1;
            }
            out.push_str(&self.src[start..self.pos]);
            if self.s[self.pos] == quote {
                self.pos += 1;
                return Some(out);
            }
            self.pos += 1; // backslash
            let c = *self.s.get(self.pos)?;
            self.pos += 1;
            match c {
                b'\\' | b'\'' | b'"' => out.push(c as char),
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'0' => out.push('\0'),
                b'x' => out.push(self.hex(2)?),
                b'u' => out.push(self.hex(4)?),
                b'U' => out.push(self.hex(8)?),
                // Python keeps unknown escapes verbatim.
                _ => {
                    self.pos -= 1;
                    out.push('\\');
                }
            }
        }
    }

    fn hex(&mut self, n: usize) -> Option<char> {
        let digits = self.src.get(self.pos..self.pos + n)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let v = u32::from_str_radix(digits, 16).ok()?;
        self.pos += n;
        char::from_u32(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `names` metadata of shared/models/yolov8n.onnx, verbatim.
    const COCO_NAMES: &str = "{0: 'person', 1: 'bicycle', 2: 'car', 3: 'motorcycle', 4: 'airplane', 5: 'bus', 6: 'train', 7: 'truck', 8: 'boat', 9: 'traffic light', 10: 'fire hydrant', 11: 'stop sign', 12: 'parking meter', 13: 'bench', 14: 'bird', 15: 'cat', 16: 'dog', 17: 'horse', 18: 'sheep', 19: 'cow', 20: 'elephant', 21: 'bear', 22: 'zebra', 23: 'giraffe', 24: 'backpack', 25: 'umbrella', 26: 'handbag', 27: 'tie', 28: 'suitcase', 29: 'frisbee', 30: 'skis', 31: 'snowboard', 32: 'sports ball', 33: 'kite', 34: 'baseball bat', 35: 'baseball glove', 36: 'skateboard', 37: 'surfboard', 38: 'tennis racket', 39: 'bottle', 40: 'wine glass', 41: 'cup', 42: 'fork', 43: 'knife', 44: 'spoon', 45: 'bowl', 46: 'banana', 47: 'apple', 48: 'sandwich', 49: 'orange', 50: 'broccoli', 51: 'carrot', 52: 'hot dog', 53: 'pizza', 54: 'donut', 55: 'cake', 56: 'chair', 57: 'couch', 58: 'potted plant', 59: 'bed', 60: 'dining table', 61: 'toilet', 62: 'tv', 63: 'laptop', 64: 'mouse', 65: 'remote', 66: 'keyboard', 67: 'cell phone', 68: 'microwave', 69: 'oven', 70: 'toaster', 71: 'sink', 72: 'refrigerator', 73: 'book', 74: 'clock', 75: 'vase', 76: 'scissors', 77: 'teddy bear', 78: 'hair drier', 79: 'toothbrush'}";

    #[test]
    fn coco_names() {
        let n = parse_names(COCO_NAMES).unwrap();
        assert_eq!(n.len(), 80);
        assert_eq!(n[0], "person");
        assert_eq!(n[9], "traffic light");
        assert_eq!(n[79], "toothbrush");
        assert_eq!(check_count(&n, 80), Ok(()));
    }

    #[test]
    fn names_quotes_and_escapes() {
        let n = parse_names(
            r#"{0: 'a\'b', 1: "it's", 2: 'say "hi"', 3: 'back\\slash', 4: 'caf\xe9 ü'}"#,
        )
        .unwrap();
        assert_eq!(n, ["a'b", "it's", "say \"hi\"", "back\\slash", "café ü"]);
        // Python repr with both quote kinds escapes the single quote.
        assert_eq!(parse_names(r#"{0: 'it\'s "x"'}"#).unwrap(), ["it's \"x\""]);
        assert_eq!(parse_names("{0: '\\u00e9\\U0001F600'}").unwrap(), ["é😀"]);
        // Unknown escapes are kept as in Python.
        assert_eq!(parse_names(r"{0: 'a\qb'}").unwrap(), [r"a\qb"]);
    }

    #[test]
    fn names_variants() {
        assert_eq!(parse_names("{1: 'b', 0: 'a'}").unwrap(), ["a", "b"]);
        assert_eq!(parse_names(r#"{"0": "a", "1": "b"}"#).unwrap(), ["a", "b"]);
        assert_eq!(parse_names("  {0: 'a',\n 1: 'b',}  ").unwrap(), ["a", "b"]);
        assert_eq!(parse_names("['x', \"y\"]").unwrap(), ["x", "y"]);
    }

    #[test]
    fn names_rejects() {
        for bad in [
            "",
            "{}",
            "[]",
            "{0: 'a', 2: 'c'}",  // gap
            "{0: 'a', 0: 'b'}",  // duplicate
            "{1: 'a'}",          // doesn't start at 0
            "{0: 'a'",           // unterminated dict
            "{0: 'a}",           // unterminated string
            "{0: a}",            // unquoted
            "{-1: 'a'}",         // negative
            "{0: 'a'} trailing", // junk
            "person",
        ] {
            assert_eq!(parse_names(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn label_file() {
        let text = "person\r\nbicycle\r\n  traffic light \r\n";
        assert_eq!(
            parse_label_file(text).unwrap(),
            ["person", "bicycle", "traffic light"]
        );
        assert_eq!(parse_label_file("\u{feff}a\nb").unwrap(), ["a", "b"]);
        assert_eq!(parse_label_file("a\nb\n\n\n  \n").unwrap(), ["a", "b"]);
        assert_eq!(parse_label_file("\n \r\n"), Err(LabelError::Empty));
        assert_eq!(parse_label_file(""), Err(LabelError::Empty));
        let e = parse_label_file("a\nb\n\nc\n").unwrap_err();
        assert_eq!(e, LabelError::BlankLine { line: 3 });
        assert!(e.to_string().contains("line 3"), "{e}");
        assert_eq!(
            parse_label_file("\na\n"),
            Err(LabelError::BlankLine { line: 1 })
        );
        assert!(
            LabelError::Empty
                .to_string()
                .contains("one class name per line")
        );
    }

    #[test]
    fn coco_label_file_roundtrip() {
        let names = parse_names(COCO_NAMES).unwrap();
        let file = names.join("\n") + "\n";
        assert_eq!(parse_label_file(&file).unwrap(), names);
    }

    #[test]
    fn imgsz() {
        assert_eq!(parse_imgsz("[640, 640]"), Some((640, 640)));
        assert_eq!(parse_imgsz("[480, 640]"), Some((480, 640)));
        assert_eq!(parse_imgsz(" 640 "), Some((640, 640)));
        assert_eq!(parse_imgsz("(384, 640)"), Some((384, 640)));
        assert_eq!(parse_imgsz("[320]"), Some((320, 320)));
        for bad in [
            "",
            "[]",
            "[0, 640]",
            "[640, 640, 3]",
            "abc",
            "[640, x]",
            "-640",
        ] {
            assert_eq!(parse_imgsz(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn count_check() {
        let labels: Vec<String> = ["a", "b"].map(String::from).to_vec();
        assert_eq!(check_count(&labels, 2), Ok(()));
        let e = check_count(&labels, 80).unwrap_err().to_string();
        assert!(e.contains(" 2 ") && e.contains("80"), "{e}");
        let e = check_count(&labels, 1).unwrap_err().to_string();
        assert!(e.contains(" 2 ") && e.contains(" 1"), "{e}");
    }

    #[test]
    fn read_label_file_refuses_devices_fifos_directories_and_huge_files() {
        let dir = std::env::temp_dir().join(format!("gst-yolo-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok.txt");
        std::fs::write(&ok, "a\nb\n").unwrap();
        assert_eq!(read_label_file(&ok).unwrap(), "a\nb\n");

        // /dev/zero used to be read until memory ran out.
        let e = read_label_file(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        // A FIFO used to block forever waiting for a writer.
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let e = read_label_file(&fifo).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = read_label_file(&dir).unwrap_err();
        assert!(e.contains("directory"), "{e}");
        let big = dir.join("big.txt");
        std::fs::write(&big, vec![b'a'; MAX_LABEL_FILE_BYTES as usize + 1]).unwrap();
        let e = read_label_file(&big).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        assert!(read_label_file(&dir.join("missing.txt")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
