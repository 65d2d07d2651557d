#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""An RTSP server (gst-rtsp-server) whose media bin holds a leakcheck that
reached READY before the server put the bin in its media pipeline.

Run by tests/leakcheck_placement.rs with GST_PLUGIN_PATH pointing at the
built plugin, and the report file's directory as its argument. The factory
readies each media bin as it builds it (an application failing early on an
element that cannot start, as playbin readies its sink bins), so leakcheck
is in READY before it has a pipeline. Once the media plays, `stuck` is
locked in PAUSED. Prints `PORT <n>` once listening, then, when leakcheck
judges the media: `REPORT pipeline=<name> media=<name> leaks=<n>
cycles=<n> file-cycles=<n> findings=<kind:name:state,...>`.
"""

import json
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

REPORT_FILE = os.path.join(sys.argv[1], "rtsp-report.json")
LAUNCH = ("videotestsrc is-live=true ! video/x-raw,format=I420,width=64,height=48,"
          "framerate=30/1 ! rtpvrawpay name=pay0 pt=96 "
          "leakcheck name=lc grace=0 report-file=%s identity name=stuck" % REPORT_FILE)
stuck_elements = []
# The media pipeline each media bin was seen in while playing: the bin may
# already be out of it when leakcheck's judgement of its NULL arrives.
media_pipelines = {}


class ReadiedFactory(GstRtspServer.RTSPMediaFactory):
    def do_create_element(self, url):
        element = Gst.parse_launch("( %s )" % LAUNCH)
        if element.set_state(Gst.State.READY) == Gst.StateChangeReturn.FAILURE:
            return None
        return element


def on_judged(check, _pspec, bin_):
    report = check.emit("get-report")
    findings = report.get_value("findings")
    names = ",".join(
        "%s:%s:%s" % (f.get_name(), f.get_value("name") if f.has_field("name") else "",
                      f.get_value("state") if f.has_field("state") else "")
        for f in findings)
    with open(REPORT_FILE) as f:
        file_cycles = json.load(f)["cycles"]
    print("REPORT pipeline=%s media=%s leaks=%d cycles=%d file-cycles=%d findings=%s" % (
        report.get_value("pipeline"), media_pipelines.get(bin_.get_name(), ""),
        check.get_property("leaks"),
        report.get_value("cycles"), file_cycles, names), flush=True)


def on_new_state(media, state, bin_):
    parent = bin_.get_parent()
    if parent is not None:
        media_pipelines[bin_.get_name()] = parent.get_name()
    stuck = bin_.get_by_name("stuck")
    if state == Gst.State.PLAYING and stuck not in stuck_elements:
        stuck_elements.append(stuck)
        stuck.set_locked_state(True)
        stuck.set_state(Gst.State.PAUSED)


def configure(factory, media):
    bin_ = media.get_element()
    bin_.get_by_name("lc").connect("notify::leaks", on_judged, bin_)
    media.connect("new-state", on_new_state, bin_)


def main():
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    factory = ReadiedFactory()
    factory.set_shared(False)
    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory("/late", factory)
    server.attach(None)
    print("PORT %d" % server.get_bound_port(), flush=True)
    loop = GLib.MainLoop()
    # The test closes our stdin when it is done.
    GLib.io_add_watch(sys.stdin, GLib.IO_HUP | GLib.IO_IN, lambda *a: loop.quit())
    loop.run()
    for stuck in stuck_elements:
        stuck.set_locked_state(False)
        stuck.set_state(Gst.State.NULL)


main()
