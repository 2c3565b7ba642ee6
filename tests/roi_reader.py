#!/usr/bin/python3
"""Reads yolodetect's detections from GstVideoRegionOfInterestMeta with PyGObject only.

The way a Python application reads gst-yolo's results without this crate (README.md,
"Reading detections"); tests/python_roi.rs runs it and checks the output against the reference.

Usage: roi_reader.py MODEL IMAGE.png
Prints one JSON object per detection of the image's single frame:
{"id", "label", "label_id", "confidence", "x_min", "y_min", "x_max", "y_max", "roi": [x, y, w, h],
 "width", "height"}, the box normalised to 0..1 and the ROI in pixels.
Needs python3-gi and gir1.2-gst-plugins-base-1.0; GST_PLUGIN_PATH must reach libgstyolo.so.
"""

import json
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402


def detections(buffer):
    """Yields (roi meta, its "detection" parameters) for every ROI on the buffer."""
    api = GstVideo.VideoRegionOfInterestMeta.get_info().api
    # PyGObject cannot call gst_buffer_iterate_meta(); yolodetect numbers its ROIs 0..n-1.
    for i in range(buffer.get_n_meta(api)):
        roi = GstVideo.buffer_get_video_region_of_interest_meta_id(buffer, i)
        if roi is None:
            raise RuntimeError(f"ROI meta with id {i} missing")
        params = roi.get_param("detection")
        if params is None:
            raise RuntimeError(f"ROI {i} has no 'detection' parameters")
        yield roi, params


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model, image = sys.argv[1:]
    Gst.init(None)
    pipeline = Gst.parse_launch(
        "filesrc name=src ! pngdec ! videoconvert ! video/x-raw,format=RGB "
        "! yolodetect name=det ! appsink name=sink"
    )
    pipeline.get_by_name("src").set_property("location", image)
    pipeline.get_by_name("det").set_property("model", model)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    sample = sink.emit("pull-sample")
    if sample is None:
        msg = pipeline.get_bus().timed_pop_filtered(Gst.SECOND, Gst.MessageType.ERROR)
        err = msg.parse_error()[0].message if msg else "no frame reached the appsink"
        pipeline.set_state(Gst.State.NULL)
        sys.exit(f"error: {err}")
    caps = sample.get_caps().get_structure(0)
    width, height = caps.get_value("width"), caps.get_value("height")
    for roi, p in detections(sample.get_buffer()):
        print(
            json.dumps(
                {
                    "id": roi.id,
                    "label": GLib.quark_to_string(roi.roi_type),
                    "label_id": p.get_value("label_id"),
                    "confidence": p.get_value("confidence"),
                    "x_min": p.get_value("x_min"),
                    "y_min": p.get_value("y_min"),
                    "x_max": p.get_value("x_max"),
                    "y_max": p.get_value("y_max"),
                    "roi": [roi.x, roi.y, roi.w, roi.h],
                    "width": width,
                    "height": height,
                }
            )
        )
    pipeline.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
