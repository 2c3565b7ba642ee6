#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Reference tracks for yolotrack: Ultralytics' own BYTETracker over stored detections.

The detections are our pipeline's (examples/yolo-json.rs, one JSON line per frame); both
Ultralytics and `gstyolo::bytetrack` track the same boxes, and tests/yolotrack.rs compares the
ids. Regenerate both committed files with:

    cargo run --release --example yolo-json -- ../shared/media/video/bikes.mp4 --conf 0.1 \
        > .bench/bikes.jsonl
    python3 -m venv .bench/track-venv
    .bench/track-venv/bin/pip install --no-deps ultralytics
    .bench/track-venv/bin/pip install numpy scipy pyyaml lap
    .bench/track-venv/bin/python scripts/track-reference.py --from-jsonl .bench/bikes.jsonl

conf 0.1 is what Ultralytics' `model.track()` uses, so the low-confidence second association
has boxes to work with. Ultralytics is installed without torch: only the tracker's modules are
loaded, from the installed package's own files; the two numpy helpers they import from
torch-importing modules (`xywh2ltwh`, `bbox_ioa`) are taken from those files' source verbatim.
"""

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
DETS = REPO / "tests/data/bikes-detections.json"
TRACKS = REPO / "tests/data/bikes-tracks-ultralytics.json"


def load_ultralytics():
    """Imports ultralytics.trackers.byte_tracker without running ultralytics/__init__.py."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("ultralytics is not installed: pip install --no-deps ultralytics (see --help)")
    root = Path(spec.submodule_search_locations[0])
    for name, sub in [
        ("ultralytics", ""),
        ("ultralytics.utils", "utils"),
        ("ultralytics.trackers", "trackers"),
        ("ultralytics.trackers.utils", "trackers/utils"),
    ]:
        m = types.ModuleType(name)
        m.__path__ = [str(root / sub)]
        sys.modules[name] = m
    sys.modules["ultralytics.utils"].LOGGER = logging.getLogger("ultralytics")

    def verbatim(module, file, names):
        """A module holding the named functions, compiled from `file`'s own source."""
        tree = ast.parse((root / file).read_text())
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
        missing = set(names) - {f.name for f in funcs}
        if missing:
            sys.exit(f"{file} has no {missing}: unsupported ultralytics version")
        m = types.ModuleType(module)
        # Only isinstance(x, torch.Tensor) checks reach torch; numpy input never is one.
        m.__dict__.update(np=np, torch=types.SimpleNamespace(Tensor=type("Tensor", (), {})))
        exec(compile(ast.Module(body=funcs, type_ignores=[]), str(root / file), "exec"), m.__dict__)
        sys.modules[module] = m
        return m

    verbatim("ultralytics.utils.ops", "utils/ops.py", ["xywh2ltwh"])
    metrics = verbatim("ultralytics.utils.metrics", "utils/metrics.py", ["bbox_ioa"])

    def batch_probiou(*_):
        raise NotImplementedError("rotated boxes are not tracked here")

    metrics.batch_probiou = batch_probiou
    from ultralytics.trackers.byte_tracker import BYTETracker

    cfg = yaml.safe_load((root / "cfg/trackers/bytetrack.yaml").read_text())
    version = importlib.metadata.version("ultralytics")
    return BYTETracker, cfg, version


class Dets:
    """The slice of ultralytics' Boxes that BYTETracker reads, from xyxy in float32."""

    def __init__(self, rows):
        a = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
        self.cls, self.conf, self.xyxy = a[:, 0], a[:, 1], a[:, 2:6]
        # Boxes.xywh: xyxy2xywh in float32.
        x1, y1, x2, y2 = self.xyxy.T
        self.xywh = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)

    def __len__(self):
        return len(self.conf)

    def __getitem__(self, mask):
        out = Dets.__new__(Dets)
        out.cls, out.conf, out.xyxy, out.xywh = (
            self.cls[mask],
            self.conf[mask],
            self.xyxy[mask],
            self.xywh[mask],
        )
        return out


def from_jsonl(path):
    frames, size = [], None
    for line in Path(path).read_text().splitlines():
        f = json.loads(line)
        size = (f["width"], f["height"])
        frames.append(
            [
                [d["class_id"], d["confidence"], *d["box"]]
                for d in f["detections"]
            ]
        )
    return {
        "source": "bikes.mp4 through yolodetect model=yolov8n.onnx conf-threshold=0.1 "
        "(examples/yolo-json.rs), one list per frame",
        "width": size[0] if size else 0,
        "height": size[1] if size else 0,
        "fields": ["class_id", "confidence", "x1", "y1", "x2", "y2"],
        "frames": frames,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-jsonl", help="yolo-json output to store as the detections first")
    ap.add_argument("--detections", default=str(DETS))
    ap.add_argument("--out", default=str(TRACKS))
    args = ap.parse_args()

    if args.from_jsonl:
        data = from_jsonl(args.from_jsonl)
        Path(args.detections).write_text(json.dumps(data, separators=(",", ":")) + "\n")
    data = json.loads(Path(args.detections).read_text())

    BYTETracker, cfg, version = load_ultralytics()
    tracker = BYTETracker(types.SimpleNamespace(**cfg))
    frames = []
    for rows in data["frames"]:
        out = tracker.update(Dets(rows))
        # Result rows: x1, y1, x2, y2, track_id, score, cls, idx (the detection's index).
        frames.append(sorted([int(r[7]), int(r[4])] for r in out))
    Path(args.out).write_text(
        json.dumps(
            {
                "tracker": f"ultralytics {version} BYTETracker, its bytetrack.yaml: {cfg}",
                "detections": Path(args.detections).name,
                "fields": ["detection_index", "track_id"],
                "frames": frames,
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    n = sum(len(f) for f in frames)
    ids = {t for f in frames for _, t in f}
    print(f"{len(frames)} frames, {n} tracked boxes, {len(ids)} ids -> {args.out}")


if __name__ == "__main__":
    main()
