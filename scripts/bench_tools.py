#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Python half of scripts/bench.sh (run inside .bench/venv).

  ultralytics MODEL VIDEO THREADS OUT.jsonl   Ultralytics `predict` over VIDEO, timed; boxes to OUT
  opencv MODEL VIDEO OUT.jsonl                the reference pipeline (shared/reference/make_reference.py:
                                              OpenCV's FFmpeg reader, letterbox, ONNX Runtime, NMS) on
                                              every frame of VIDEO: Ultralytics' boxes without torch
  match OURS.jsonl THEIRS.jsonl               how many of THEIR boxes ours match (class, IoU >= 0.9)
  quantize MODEL OUTDIR CALIB_IMAGE...        INT8 models: dynamic and static QDQ (calibrated)
  accuracy REFERENCE.json MEDIA_DIR NAME=JSONL...  each model's detections vs the fp32 reference
  report BENCH_LINES                          the markdown table from the BENCH lines

Everything prints a human line; measurements also print `BENCH {json}` lines for `report`.
"""
import json
import os
import sys
import time


def bench(obj):
    print("BENCH " + json.dumps(obj), flush=True)


def pct(sorted_vals, p):
    """Nearest-rank percentile, as src/stats.rs computes it."""
    if not sorted_vals:
        return 0.0
    import math
    rank = max(1, min(len(sorted_vals), math.ceil(p / 100 * len(sorted_vals))))
    return sorted_vals[rank - 1]


# --- Ultralytics -----------------------------------------------------------------------------

def ultralytics_predict(model, video, threads, out):
    threads = int(threads)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import onnxruntime as ort
    import torch

    torch.set_num_threads(threads)
    # Ultralytics' ONNX session with yolodetect's thread count; the rest stays as Ultralytics
    # sets it (BENCH_ULTRA_OPTS=ours gives it all of yolodetect's options: no spinning, CPU
    # arena).
    ours = os.environ.get("BENCH_ULTRA_OPTS") == "ours"
    real_session = ort.InferenceSession

    def session(path, sess_options=None, providers=None, **kw):
        so = sess_options or ort.SessionOptions()
        so.intra_op_num_threads = threads
        if ours:
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.enable_cpu_mem_arena = True
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return real_session(path, sess_options=so, providers=providers, **kw)

    ort.InferenceSession = session
    from ultralytics import YOLO
    import ultralytics

    t0 = time.perf_counter()
    yolo = YOLO(model, task="detect")
    arrivals = []
    with open(out, "w") as f:
        for i, r in enumerate(yolo.predict(source=video, stream=True, save=False, verbose=False,
                                           device="cpu", imgsz=640, conf=0.25, iou=0.7)):
            arrivals.append(time.perf_counter())
            b = r.boxes
            dets = [{"class_id": int(c), "confidence": round(float(s), 4),
                     "box": [round(float(v), 1) for v in xyxy]}
                    for c, s, xyxy in zip(b.cls.tolist(), b.conf.tolist(), b.xyxy.tolist())]
            f.write(json.dumps({"frame": i, "detections": dets}) + "\n")
    total = time.perf_counter() - t0
    skip = 5
    used = arrivals[skip:]
    iv = sorted((b - a) * 1000 for a, b in zip(used, used[1:]))
    fps = (len(used) - 1) / (used[-1] - used[0])
    print(f"ultralytics ({'yolodetect session options' if ours else 'its own session options'}, "
          f"{threads} threads) {ultralytics.__version__} (torch {torch.__version__}, onnxruntime "
          f"{ort.__version__}): {len(arrivals)} frames in {total:.2f} s; frame interval p50 "
          f"{pct(iv, 50):.2f} ms p90 {pct(iv, 90):.2f} ms; {fps:.2f} fps over frames {skip}..")
    bench({"name": "ultralytics", "frames": len(arrivals), "p50_ms": round(pct(iv, 50), 3),
           "p90_ms": round(pct(iv, 90), 3), "fps": round(fps, 3), "total_s": round(total, 3),
           "version": ultralytics.__version__, "torch": torch.__version__,
           "onnxruntime": ort.__version__,
           "options": "yolodetect session options" if ours else "its own session options"})


# --- box matching ----------------------------------------------------------------------------

def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def opencv_reference(model, video, out):
    """Every frame of `video` through the reference script's pre- and post-processing (needs
    numpy, opencv-python-headless and onnxruntime; $GST_YOLO_SHARED or ../shared)."""
    import cv2
    import numpy as np
    import onnxruntime as ort
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("GST_YOLO_SHARED", os.path.join(here, "..", "..", "shared"))
    sys.path.insert(0, os.path.join(shared, "reference"))
    import make_reference as ref
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    cap = cv2.VideoCapture(video)
    n = 0
    with open(out, "w") as f:
        while True:
            ok, im0 = cap.read()
            if not ok:
                break
            h0, w0 = im0.shape[:2]
            im, r, (px, py) = ref.letterbox(im0)
            x = np.ascontiguousarray(im[:, :, ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0
            p = sess.run(None, {sess.get_inputs()[0].name: x})[0][0].T
            cls, sc = p[:, 4:].argmax(1), p[:, 4:].max(1)
            m = sc > 0.25
            p, cls, sc = p[m], cls[m], sc[m]
            b = np.stack([p[:, 0] - p[:, 2] / 2, p[:, 1] - p[:, 3] / 2,
                          p[:, 0] + p[:, 2] / 2, p[:, 1] + p[:, 3] / 2], 1)
            keep = sorted(ref.nms(b + cls[:, None] * 7680.0, sc, 0.7), key=lambda i: -sc[i])[:300]
            dets = []
            for i in keep:
                x1, y1, x2, y2 = (b[i] - [px, py, px, py]) / r
                dets.append({"class_id": int(cls[i]), "confidence": float(sc[i]),
                             "box": [float(np.clip(x1, 0, w0)), float(np.clip(y1, 0, h0)),
                                     float(np.clip(x2, 0, w0)), float(np.clip(y2, 0, h0))]})
            f.write(json.dumps({"frame": n, "detections": dets}) + "\n")
            n += 1
    print(f"opencv reference: {n} frames of {video} with OpenCV {cv2.__version__}, "
          f"onnxruntime {ort.__version__}")


def load_frames(path):
    frames = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                d = json.loads(line)
                frames[d["frame"]] = d["detections"]
    return frames


def match(ours_path, theirs_path, min_iou=0.9):
    ours, theirs = load_frames(ours_path), load_frames(theirs_path)
    total = matched = total35 = matched35 = 0
    ours_total = sum(len(v) for v in ours.values())
    missed = []
    for fr, tdets in theirs.items():
        odets = ours.get(fr, [])
        for t in tdets:
            total += 1
            best = max((iou(t["box"], o["box"]) for o in odets if o["class_id"] == t["class_id"]),
                       default=0.0)
            ok = best >= min_iou
            matched += ok
            if t["confidence"] >= 0.35:
                total35 += 1
                matched35 += ok
            if not ok:
                missed.append(t["confidence"])
    share = matched / total if total else 1.0
    share35 = matched35 / total35 if total35 else 1.0
    near = sum(c < 0.30 for c in missed)
    print(f"box match: {matched}/{total} Ultralytics boxes ({100 * share:.2f}%) have a same-class "
          f"box of ours with IoU >= {min_iou}; of those with conf >= 0.35: {matched35}/{total35} "
          f"({100 * share35:.2f}%); {near} of the {len(missed)} misses have conf < 0.30; frames "
          f"ours {len(ours)} theirs {len(theirs)}; boxes ours {ours_total} theirs {total}")
    bench({"name": "box-match", "matched": matched, "total": total, "share": round(share, 5),
           "matched35": matched35, "total35": total35, "share35": round(share35, 5),
           "missed_below_030": near, "missed": len(missed),
           "ours_boxes": ours_total, "frames_ours": len(ours), "frames_theirs": len(theirs)})


# --- INT8 ------------------------------------------------------------------------------------

def quantize(model, outdir, *images):
    import numpy as np
    import cv2
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    os.makedirs(outdir, exist_ok=True)
    pre = os.path.join(outdir, "yolov8n-pre.onnx")
    quant_pre_process(model, pre, skip_symbolic_shape=True)

    def letterbox(path, size=640):
        # The reference pre-processing (../shared/reference/make_reference.py).
        im = cv2.imread(path)
        h, w = im.shape[:2]
        r = min(size / h, size / w)
        nw, nh = int(round(w * r)), int(round(h * r))
        dw, dh = (size - nw) / 2, (size - nh) / 2
        if (nw, nh) != (w, h):
            im = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR)
        top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
        left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
        im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(114, 114, 114))
        x = np.ascontiguousarray(im[:, :, ::-1].transpose(2, 0, 1))[None]
        return x.astype(np.float32) / 255.0

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"images": letterbox(p)} for p in images])

        def get_next(self):
            return next(self.it, None)

    t = time.perf_counter()
    dyn = os.path.join(outdir, "yolov8n-int8-dynamic.onnx")
    quantize_dynamic(pre, dyn, weight_type=QuantType.QUInt8)
    print(f"dynamic INT8: {dyn} ({time.perf_counter() - t:.1f} s)")
    # The Detect head's box decode ends in one Concat of pixel coordinates (0..640) and class
    # scores (0..1): quantized together the scores drop to zero. Keep the decode (everything of
    # the head module but its cv2/cv3 convolution branches) in float.
    import onnx
    g = onnx.load(pre).graph
    out_node = next(n for n in g.node if g.output[0].name in n.output)
    head = out_node.name.rsplit("/", 1)[0] + "/"
    exclude = [n.name for n in g.node
               if n.name.startswith(head) and "/cv2" not in n.name and "/cv3" not in n.name]
    t = time.perf_counter()
    st = os.path.join(outdir, "yolov8n-int8-static.onnx")
    quantize_static(pre, st, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude)
    print(f"static QDQ INT8 ({len(images)} calibration images, {len(exclude)} head nodes "
          f"under {head} kept in float): {st} "
          f"({time.perf_counter() - t:.1f} s)")


def accuracy(reference, media, *named):
    """Each NAME=JSONL holds yolo-json lines for the reference images' PNGs, in the order of
    the reference; compared under the reference's DECODED tolerance."""
    ref = json.load(open(reference))["results"]
    for spec in named:
        name, path = spec.split("=", 1)
        outs = [json.loads(l)["detections"] for l in open(path) if l.startswith("{")]
        if len(outs) != len(ref):
            print(f"{name}: {len(outs)} outputs for {len(ref)} images")
            continue
        need = matched = spurious = 0
        ious, dconf = [], []
        for r, out in zip(ref, outs):
            for d in r["detections"]:
                if d["conf"] < 0.35:
                    continue
                need += 1
                cands = [(iou(d["box_xyxy"], o["box"]), o) for o in out
                         if o["class_id"] == d["class_id"]]
                best = max(cands, key=lambda c: c[0], default=(0.0, None))
                if best[1] is not None:
                    ious.append(best[0])
                    dconf.append(abs(best[1]["confidence"] - d["conf"]))
                    if best[0] >= 0.8 and abs(best[1]["confidence"] - d["conf"]) <= 0.15:
                        matched += 1
            for o in out:
                if o["confidence"] >= 0.35 and not any(
                        d["class_id"] == o["class_id"] and iou(d["box_xyxy"], o["box"]) >= 0.5
                        for d in r["detections"]):
                    spurious += 1
        mi = sum(ious) / len(ious) if ious else 0.0
        md = sum(dconf) / len(dconf) if dconf else 0.0
        print(f"{name}: {matched}/{need} reference boxes (conf >= 0.35) matched under the DECODED "
              f"tolerance (IoU >= 0.8, |dconf| <= 0.15); {spurious} extra boxes >= 0.35; best-match "
              f"IoU mean {mi:.3f} min {min(ious, default=0):.3f}; |dconf| mean {md:.3f} max "
              f"{max(dconf, default=0):.3f}")
        bench({"name": f"accuracy-{name}", "matched": matched, "needed": need,
               "extra": spurious, "iou_mean": round(mi, 4), "iou_min": round(min(ious, default=0), 4),
               "dconf_mean": round(md, 4), "dconf_max": round(max(dconf, default=0), 4)})


# --- report ----------------------------------------------------------------------------------

def median(v):
    v = sorted(x for x in v if x == x)
    if not v:
        return float("nan")
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def report(path):
    # Each measurement may appear once per round; lists keep them in round order.
    b = {}
    for line in open(path):
        if line.startswith("BENCH "):
            d = json.loads(line[6:])
            b.setdefault(d["name"], []).append(d)

    def fps_of(d):
        # Pipelines: frames / wall time; raw runs: 1000 / p50.
        return d.get("fps") or 1000.0 / d["p50_ms"]

    def rounds(name):
        return [fps_of(d) for d in b.get(name, [])]

    def med(name, key):
        return median([d[key] for d in b.get(name, []) if key in d])

    rows = [("1", "raw ONNX Runtime `run` (Engine, pre-made tensor)", "ort-raw"),
            ("2", "`yolodetect ! fakesink`, 640x640 RGB input", "pipe-640"),
            ("3", "`decodebin ! yolodetect ! fakesink`, 1080p H.264", "pipe-1080"),
            ("3q", "`decodebin ! queue ! yolodetect ! fakesink`, 1080p H.264", "pipe-1080-queue"),
            ("4", "`decodebin ! fakesink` (decode only), 1080p H.264", "decode-1080"),
            ("5", "Ultralytics `predict(stream=True)`, 1080p H.264", "ultralytics"),
            ("1s", "raw ONNX Runtime, static QDQ INT8", "ort-raw-int8-static"),
            ("2s", "`yolodetect` static QDQ INT8, 640x640 RGB", "pipe-640-int8-static"),
            ("1d", "raw ONNX Runtime, dynamic INT8", "ort-raw-int8-dynamic"),
            ("2d", "`yolodetect` dynamic INT8, 640x640 RGB", "pipe-640-int8-dynamic")]
    print("| # | what | rounds | p50 ms/frame | p90 ms/frame | fps (median of rounds) | fps per round |")
    print("|---|---|---|---|---|---|---|")
    for num, what, name in rows:
        ds = b.get(name)
        if not ds:
            continue
        if name == "ultralytics" and ds[0].get("options"):
            what += f" ({ds[0]['options']})"
        f = rounds(name)
        print(f"| {num} | {what} | {len(ds)} | {med(name, 'p50_ms'):.2f} | {med(name, 'p90_ms'):.2f} | "
              f"{median(f):.2f} | {', '.join(f'{x:.2f}' for x in f)} |")
    print()
    print("fps: pipelines = frames / wall time between the 6th and the last frame at the sink; "
          "(1) = 1000 / p50 of `run`. p50/p90 ms/frame: of the per-frame intervals at the sink "
          "(pipelines) or of `run` (1), median over rounds.")
    print()

    def ratio(num, dens):
        # Per round (the rounds interleave, so machine drift hits both sides alike), then median.
        n = min([len(rounds(num))] + [len(rounds(d)) for d in dens])
        per = [rounds(num)[i] / min(rounds(d)[i] for d in dens) for i in range(n)]
        return median(per), per

    print("| ratio | median of rounds | per round | target |")
    print("|---|---|---|---|")
    for label, num, dens, target in [
            ("(2)/(1)", "pipe-640", ["ort-raw"], ">= 0.95"),
            ("(3)/min((1),(4))", "pipe-1080", ["ort-raw", "decode-1080"], ">= 0.90"),
            ("(3q)/min((1),(4))", "pipe-1080-queue", ["ort-raw", "decode-1080"], "(with a queue)"),
            ("(3)/(5)", "pipe-1080", ["ultralytics"], ">= 1.25"),
            ("(3q)/(5)", "pipe-1080-queue", ["ultralytics"], "(with a queue)"),
            ("(1)/(5)", "ort-raw", ["ultralytics"], "(ceiling of (3)/(5) without overlap)")]:
        m, per = ratio(num, dens)
        if per:
            print(f"| {label} | {m:.3f} | {', '.join(f'{x:.3f}' for x in per)} | {target} |")
    m = (b.get("box-match") or [None])[-1]
    if m:
        print(f"| boxes of (5) matched by ours (same class, IoU >= 0.9) | {m['matched']}/{m['total']} "
              f"= {100 * m['share']:.2f}% | | >= 99% |")
        print(f"| ... of its boxes with conf >= 0.35 | {m['matched35']}/{m['total35']} "
              f"= {100 * m['share35']:.2f}% | {m['missed_below_030']} of {m['missed']} misses have conf < 0.30 | |")
    print()
    print("| stage cost inside yolodetect (`stats` property, median of rounds) | 640x640 RGB p50 / p99 ms "
          "| 1080p I420 p50 / p99 ms |")
    print("|---|---|---|")

    def stat(name, key):
        return median([d["stats"][key] for d in b.get(name, []) if key in d.get("stats", {})])

    for st in ["pre", "infer", "post", "meta", "added", "total"]:
        def cell(name):
            p50, p99 = stat(name, f"{st}-p50-ms"), stat(name, f"{st}-p99-ms")
            return "-" if p50 != p50 else f"{p50:.2f} / {p99:.2f}"
        label = "added (everything but infer)" if st == "added" else st
        print(f"| {label} | {cell('pipe-640')} | {cell('pipe-1080')} |")
    pp = (b.get("prepost-allocs") or [None])[0]
    if pp:
        print()
        print(f"Allocations in steady state (examples/ort-bench.rs --prepost, {pp['frames']} frames of "
              f"1080p I420, counting allocator): pre-processing {pp['pre_allocs']}, "
              f"post-processing {pp['post_allocs']}.")
    churn = [(k, b.get(f"churn-arena-{k}", [])) for k in ("off", "on")]
    if all(ds for _, ds in churn):
        print()
        print("| CPU arena (EngineConfig.cpu_arena), per process | RSS after 1 | after 10 | after 50 "
              "create/drop cycles | run p50, alternating engines: off / on |")
        print("|---|---|---|---|---|")
        for k, ds in churn:
            for d in ds:
                print(f"| {k} | {d.get('rss_after_1_mib', 0):.0f} MiB | {d.get('rss_after_10_mib', 0):.0f} MiB "
                      f"| {d.get('rss_after_50_mib', 0):.0f} MiB | {d['off_p50_ms']:.2f} / {d['on_p50_ms']:.2f} ms |")
    accs = [ds[-1] for n, ds in b.items() if n.startswith("accuracy-")]
    if accs:
        print()
        print("| model through yolodetect (reference PNGs) | reference boxes matched (DECODED tolerance) "
              "| extra boxes | IoU mean / min | abs conf diff mean / max |")
        print("|---|---|---|---|---|")
        for d in accs:
            print(f"| {d['name'][9:]} | {d['matched']}/{d['needed']} | {d['extra']} | "
                  f"{d['iou_mean']:.3f} / {d['iou_min']:.3f} | {d['dconf_mean']:.3f} / {d['dconf_max']:.3f} |")
    overlay = [l.strip() for l in open(path) if l.startswith("overlay ")]
    if overlay:
        print()
        print("yolooverlay drawing cost (examples/overlay-cost.rs):")
        print()
        for l in overlay:
            print(f"- {l}")


if __name__ == "__main__":
    cmds = {"ultralytics": ultralytics_predict, "opencv": opencv_reference, "match": match,
            "quantize": quantize,
            "accuracy": accuracy, "report": report}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__)
        sys.exit(2)
    cmds[sys.argv[1]](*sys.argv[2:])
