#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""An RTSP server (gst-rtsp-server) whose per-client media carry a leakcheck.

Run by tests/leakcheck_churn.rs with GST_PLUGIN_PATH pointing at the built
plugin. Prints `PORT <n>` once listening, then one line per media torn down:
`REPORT <mount> leaks=<n> cycles=<n> fds=<n> findings=<kind:name,...>`
when its leakcheck judged it.
The /leaky mount removes an element from the running media while PLAYING.
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

SOURCE = ("videotestsrc is-live=true ! video/x-raw,format=I420,width=64,height=48,"
          "framerate=30/1 ! rtpvrawpay name=pay0 pt=96 leakcheck name=lc")
kept = []


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def on_judged(check, _pspec, mount):
    report = check.emit("get-report")
    findings = report.get_value("findings")
    names = ",".join(
        "%s:%s" % (f.get_name(), f.get_value("name") if f.has_field("name") else "")
        for f in findings)
    print("REPORT %s leaks=%d cycles=%d fds=%d findings=%s" % (
        mount, check.get_property("leaks"), report.get_value("cycles"), fd_count(), names),
        flush=True)


def on_new_state(media, state, bin_):
    victim = bin_.get_by_name("victim")
    if state == Gst.State.PLAYING and victim is not None:
        kept.append(victim)
        bin_.remove(victim)


def configure(factory, media, mount):
    bin_ = media.get_element()
    # The judgement comes `grace` (1 s) after the pipeline reached NULL, or
    # when the media is freed, whichever is first: the server's own teardown
    # after NULL (its streams release their appsrc/appsink) is over by then.
    bin_.get_by_name("lc").connect("notify::leaks", on_judged, mount)
    if mount == "/leaky":
        media.connect("new-state", on_new_state, bin_)


def main():
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    mounts = server.get_mount_points()
    for mount, extra in (("/clean", ""), ("/leaky", " identity name=victim")):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch("( %s%s )" % (SOURCE, extra))
        factory.set_shared(False)
        factory.connect("media-configure", configure, mount)
        mounts.add_factory(mount, factory)
    server.attach(None)
    print("PORT %d" % server.get_bound_port(), flush=True)
    loop = GLib.MainLoop()
    # The test closes our stdin when it is done.
    GLib.io_add_watch(sys.stdin, GLib.IO_HUP | GLib.IO_IN, lambda *a: loop.quit())
    loop.run()
    for victim in kept:
        victim.set_state(Gst.State.NULL)


main()
