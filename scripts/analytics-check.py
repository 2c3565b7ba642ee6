#!/usr/bin/python3
"""Reads gst-yolo's GstAnalyticsRelationMeta with PyGObject and the GstAnalytics-1.0 typelib.

The way a Python application reads the standard analytics metadata without this crate (feature
`v1_24`, GStreamer >= 1.24); scripts/analytics-interop.sh runs it in the trixie chroot.

Usage: analytics-check.py MODEL MEDIA [FRAMES]
Runs `filesrc ! decodebin ! videoconvert ! yolodetect ! yolotrack ! appsink` on MEDIA (an image
or a video, FRAMES frames at most, default 1) and prints one JSON object per object-detection
mtd: {"frame", "pts", "id", "label", "confidence", "box": [x, y, w, h], "tracks":
[{"id", "first_seen", "last_seen", "lost"}]}, the tracks being the tracking mtds related to
the detection. Exits non-zero when no frame or no relation meta arrives.
Needs python3-gi, gir1.2-gst-plugins-bad-1.0; GST_PLUGIN_PATH must reach libgstyolo.so.
"""

import json
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstAnalytics", "1.0")
from gi.repository import GLib, Gst, GstAnalytics  # noqa: E402


def mtds(rmeta):
    """(object-detection mtds, tracking mtds) of a relation meta, by id."""
    ods, tracks = {}, {}
    # gst_analytics_relation_meta_iterate() takes a gpointer state PyGObject cannot hold (and
    # get_length() is not introspectable), but mtd ids run 0, 1, ... with no gap.
    i = 0
    while rmeta.get_mtd(i, GstAnalytics.MTD_TYPE_ANY)[0]:
        found, od = rmeta.get_od_mtd(i)
        if found:
            ods[i] = od
        else:
            found, trk = rmeta.get_tracking_mtd(i)
            if found:
                tracks[i] = trk
        i += 1
    return ods, tracks


def frame_records(n, buf):
    rmeta = GstAnalytics.buffer_get_analytics_relation_meta(buf)
    if rmeta is None:
        sys.exit(f"frame {n}: no GstAnalyticsRelationMeta")
    ods, tracks = mtds(rmeta)
    for i, od in ods.items():
        ok, x, y, w, h, conf = od.get_location()
        if not ok:
            sys.exit(f"frame {n}: mtd {i} has no location")
        related = []
        for j, trk in tracks.items():
            if rmeta.get_relation(i, j) & GstAnalytics.RelTypes.RELATE_TO:
                ok, tid, first, last, lost = trk.get_info()
                related.append({"id": tid, "first_seen": first, "last_seen": last, "lost": lost})
        yield {
            "frame": n,
            "pts": buf.pts,
            "id": i,
            "label": GLib.quark_to_string(od.get_obj_type()),
            "confidence": round(conf, 4),
            "box": [x, y, w, h],
            "tracks": related,
        }


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    model, media = sys.argv[1:3]
    frames = int(sys.argv[3]) if len(sys.argv) == 4 else 1
    Gst.init(None)
    pipeline = Gst.parse_launch(
        "filesrc name=src ! decodebin ! videoconvert ! yolodetect name=det ! yolotrack "
        "! appsink name=sink sync=false"
    )
    pipeline.get_by_name("src").set_property("location", media)
    pipeline.get_by_name("det").set_property("model", model)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    n = 0
    while n < frames:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        for rec in frame_records(n, sample.get_buffer()):
            print(json.dumps(rec))
        n += 1
    if n == 0:
        msg = pipeline.get_bus().timed_pop_filtered(Gst.SECOND, Gst.MessageType.ERROR)
        err = msg.parse_error()[0].message if msg else "no frame reached the appsink"
        pipeline.set_state(Gst.State.NULL)
        sys.exit(f"error: {err}")
    pipeline.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
