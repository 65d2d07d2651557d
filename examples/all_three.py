#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""All three edgeguard elements from Python (PyGObject).

A live source into a tee: one branch encoded by vpuguardenc into a file, one
branch delayed by delaybuffer, and a leakcheck watching the pipeline. Prints
the encoder decision, the delay line's statistics and the leak report.

Run with the plugin on GST_PLUGIN_PATH, e.g.
    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/all_three.py out.mkv
(Debian's PyGObject works with /usr/bin/python3.)
"""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "all_three.mkv"
    Gst.init(None)
    for name in ("vpuguardenc", "delaybuffer", "leakcheck"):
        if Gst.ElementFactory.find(name) is None:
            sys.exit(f"{name} not found: put libgstedgeguard.so on GST_PLUGIN_PATH")

    pipeline = Gst.parse_launch(
        "videotestsrc is-live=true do-timestamp=true num-buffers=60 ! "
        "video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! tee name=t "
        "t. ! queue ! vpuguardenc name=enc "
        'sw-properties="props,speed-preset=ultrafast,tune=zerolatency" ! '
        f"matroskamux ! filesink location={out} "
        "t. ! delaybuffer name=delay delay=500000000 ! fakesink sync=true "
        "leakcheck name=check grace=0"
    )
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    while True:
        msg = bus.timed_pop(10 * Gst.SECOND)
        if msg is None:
            sys.exit("timed out")
        if msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            sys.exit(f"error: {err.message} ({debug})")
        if msg.type == Gst.MessageType.ELEMENT:
            s = msg.get_structure()
            if s.get_name() == "vpuguardenc-decision":
                print(
                    f"vpuguardenc: {s.get_string('encoder')} "
                    f"(hardware={s.get_value('hardware')}, reason={s.get_string('reason')})"
                )
        if msg.type == Gst.MessageType.EOS:
            break

    stats = pipeline.get_by_name("delay").get_property("stats")
    print(
        f"delaybuffer: received={stats.get_value('received')} "
        f"pushed={stats.get_value('pushed')} dropped={stats.get_value('dropped')}"
    )
    pipeline.set_state(Gst.State.NULL)
    report = pipeline.get_by_name("check").emit("get-report")
    print(f"leakcheck: {report.get_value('leaks')} finding(s) after {report.get_value('cycles')} cycle(s)")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
