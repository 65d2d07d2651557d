// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::glib::translate::{FromGlibPtrNone, ToGlibPtr};
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use super::allocation::{self, Extra};
use super::flow::{self, Held, LiveStep, MAX_DELAY, MAX_STALL_TIMEOUT};
use super::latency;
use super::pacing::{self, Bounds, Limit};
use super::reader::{Output, Reader};
use super::short_pool;
use super::tap_pad::TapPad;
use super::window::{Item, Level, Window};

mod output;
mod short_pools;
mod src_task;
mod taps;
use super::{Leaky, ShortPool};
use crate::metrics::{self, DelayStats};
use short_pools::PoolLookup;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "delaybuffer",
        gst::DebugColorFlags::empty(),
        Some("Zero-copy delay line"),
    )
});

const DEFAULT_DELAY: gst::ClockTime = gst::ClockTime::SECOND;
const DEFAULT_MAX_SIZE_BUFFERS: u32 = 0;
const DEFAULT_MAX_SIZE_BYTES: u64 = 0;
const DEFAULT_MAX_SIZE_TIME: u64 = 0;
const DEFAULT_LEAKY: Leaky = Leaky::No;
const DEFAULT_STALL_TIMEOUT: gst::ClockTime = gst::ClockTime::SECOND;
const DEFAULT_SHORT_POOL: ShortPool = ShortPool::Copy;
const DEFAULT_WINDOW: gst::ClockTime = gst::ClockTime::ZERO;

#[derive(Debug, Clone, Copy)]
struct Settings {
    bounds: Bounds,
    leaky: Leaky,
    stall_timeout: gst::ClockTime,
    short_pool: ShortPool,
    /// Running time the taps' window holds, at least their largest delay.
    window: gst::ClockTime,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bounds: Bounds {
                buffers: DEFAULT_MAX_SIZE_BUFFERS,
                bytes: DEFAULT_MAX_SIZE_BYTES,
                time: DEFAULT_MAX_SIZE_TIME,
            },
            leaky: DEFAULT_LEAKY,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            short_pool: DEFAULT_SHORT_POOL,
            window: DEFAULT_WINDOW,
        }
    }
}

/// Whether the latency changed, and the pools let go, after a stream event.
type Noted = (bool, Vec<(gst::BufferPool, Option<u32>)>);

/// What the sink (upstream) thread, the output tasks and the property
/// setters share. The settings live here too, so that every wait re-reads
/// them under the lock it waits with.
struct Shared {
    settings: Settings,
    /// The input segment, to turn buffer timestamps into running time.
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Whether upstream is live, asked with a LATENCY query on the first buffer.
    live: Option<bool>,
    flushing: bool,
    /// In PLAYING: the clock runs for us and input that stops is a stall.
    playing: bool,
    /// The pipeline clock and base time, while PLAYING.
    clock: Option<(gst::Clock, u64)>,
    /// An EOS is in the window, with its seqnum: everything before it may
    /// leave (non-live), and an EOS sent in its place carries its seqnum.
    eos_held: Option<gst::Seqnum>,
    /// Flushes so far: a GAP pushed from another thread after a flush is the
    /// old segment's, and is not sent.
    flushes: u64,
    last_running_time: Option<u64>,
    /// When the last buffer arrived: running time (live), monotonic ns (not live).
    last_arrival: Option<u64>,
    /// Not live, after a stall: buffers up to this running time leave at once.
    release_through: Option<u64>,
    /// Upstream waits for room under `src`'s limit: not live, the oldest leaves
    /// (as from a full queue), whatever the delay.
    input_waiting: bool,
    /// The starvation WARNING was posted for this stream.
    starvation_warned: bool,
    framerate: Option<gst::Fraction>,
    /// The pools input buffers came from, with how many of their buffers
    /// may be held as references (`None`: the pool grows, or copying failed).
    pools: Vec<(gst::BufferPool, Option<u32>)>,
    /// The running time held (ns) that the last ALLOCATION answer asked
    /// upstream pools to hold: a longer hold asks again (RECONFIGURE).
    allocated_for: u64,
    /// Whether the stream's memory is one `short-pool=copy` may copy (see
    /// `short_pool::copyable`): otherwise its buffers are held as references.
    copyable: bool,
    received: u64,
    copied: u64,
    copied_bytes: u64,
    /// Everything held, read by `src` and the taps.
    window: Window<gst::Buffer, gst::Event>,
    /// The sticky events that left the window, by type: they are still in
    /// force for a reader starting at its front.
    window_sticky: Vec<gst::Event>,
    /// `src`'s reader: its delay (the `delay` property), its flow (returned
    /// to upstream), what it sent and counted.
    src: Reader,
    taps: Vec<Reader>,
    /// Taps requested so far, to name the next one.
    taps_requested: u32,
}

impl Shared {
    fn new(settings: Settings, src: Reader) -> Self {
        Shared {
            settings,
            segment: gst::FormattedSegment::new(),
            live: None,
            flushing: true,
            playing: false,
            clock: None,
            eos_held: None,
            flushes: 0,
            last_running_time: None,
            last_arrival: None,
            release_through: None,
            input_waiting: false,
            starvation_warned: false,
            framerate: None,
            pools: Vec::new(),
            copyable: true,
            allocated_for: 0,
            received: 0,
            copied: 0,
            copied_bytes: 0,
            window: Window::default(),
            window_sticky: Vec::new(),
            src,
            taps: Vec::new(),
            taps_requested: 0,
        }
    }

    /// Whether a buffer or event from upstream can be taken now.
    fn accepting(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.flushing {
            return Err(gst::FlowError::Flushing);
        }
        self.src.flow
    }

    /// The pipeline's running time, while PLAYING.
    fn running_time_now(&self) -> Option<u64> {
        let (clock, base) = self.clock.as_ref()?;
        clock.time().nseconds().checked_sub(*base)
    }

    fn is_live(&self) -> bool {
        self.live == Some(true)
    }
}

/// Monotonic nanoseconds, for stall detection when the pipeline is not live:
/// read on every buffer, so straight from CLOCK_MONOTONIC (what `Instant`
/// reads too), without `Instant`'s checked subtraction and a static epoch.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given; the
    // monotonic clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// Errors that upstream will not report to the application itself: like
/// `queue`, delaybuffer posts an ERROR for them when EOS can no longer go out.
fn is_fatal_or_not_linked(err: gst::FlowError) -> bool {
    !matches!(err, gst::FlowError::Flushing | gst::FlowError::Eos)
}

pub struct DelayBuffer {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    // The one lock of the element. It is never held while calling into
    // GStreamer code that may call back or block: pushing, posting, notify,
    // signals, queries, state changes and dropping buffers (whose last
    // reference may run a pool's release) all happen after it is released.
    // Under it only leaf calls are made: reading the clock, creating,
    // unscheduling and dropping a clock id. GStreamer's own locks (pad stream
    // locks, the object lock) are taken before it or not at all; `changed`
    // is waited on and notified with it held.
    shared: Mutex<Shared>,
    /// Signalled, with `shared` held, when the window, a flow, the settings
    /// or the state change.
    changed: Condvar,
    /// Where a reader that does not read (unlinked, ended, failed, off)
    /// waits: signalled with `changed` by everything but a buffer coming
    /// in or going out, which cannot make it read again.
    idle: Condvar,
    warned_no_framerate: AtomicBool,
    /// Held by the thread pushing the preroll GAP from its check of
    /// `flushes` until the push returned, and taken by a FLUSH_START once
    /// forwarded: no GAP of the stream before a flush can then reach
    /// downstream after its FLUSH_STOP, ahead of the new SEGMENT. Never held
    /// with `shared`.
    gap_push: Mutex<()>,
    /// This element's series; set once constructed.
    metrics: OnceLock<metrics::Handle>,
}

#[glib::object_subclass]
impl ObjectSubclass for DelayBuffer {
    const NAME: &'static str = "GstDelayBuffer";
    type Type = super::DelayBuffer;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_query(pad, query),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .activatemode_function(|pad, parent, mode, active| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic in activatemode")),
                    |this| this.src_activate(pad, mode, active),
                )
            })
            .event_function(|pad, parent, event| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_query(pad, query),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build();
        let src = Reader::new(Output::Src, srcpad.clone(), DEFAULT_DELAY, true);
        DelayBuffer {
            sinkpad,
            srcpad,
            shared: Mutex::new(Shared::new(Settings::default(), src)),
            changed: Condvar::new(),
            idle: Condvar::new(),
            warned_no_framerate: AtomicBool::new(false),
            gap_push: Mutex::new(()),
            metrics: OnceLock::new(),
        }
    }
}

impl ObjectImpl for DelayBuffer {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt64::builder("delay")
                    .nick("Delay")
                    .blurb(
                        "Delay of this branch in ns, at most one hour; shifts its running \
                         time, not the pipeline latency (0 = pass-through behind a thread \
                         boundary)",
                    )
                    .maximum(MAX_DELAY)
                    .default_value(DEFAULT_DELAY.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-size-buffers")
                    .nick("Max. size (buffers)")
                    .blurb("Most buffers held (0 = no limit)")
                    .default_value(DEFAULT_MAX_SIZE_BUFFERS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("max-size-bytes")
                    .nick("Max. size (bytes)")
                    .blurb("Most bytes held, counted from the memory sizes (0 = no limit)")
                    .default_value(DEFAULT_MAX_SIZE_BYTES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("max-size-time")
                    .nick("Max. size (ns)")
                    .blurb(
                        "Most running time held, oldest to newest (0 = no limit; with no \
                         max-size-* set, input that is not live waits once delay + 1 s is held)",
                    )
                    .default_value(DEFAULT_MAX_SIZE_TIME)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("leaky", DEFAULT_LEAKY)
                    .nick("Leaky")
                    .blurb("What to do when a max-size bound is hit")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("stall-timeout")
                    .nick("Stall timeout")
                    .blurb(
                        "How long input may stop in PLAYING, while less than the delay is \
                         held, before delaybuffer warns that upstream's pool is too small \
                         (and, when not live, releases what it holds so nothing waits \
                         forever); in ns, at most one hour",
                    )
                    .minimum(1)
                    .maximum(MAX_STALL_TIMEOUT)
                    .default_value(DEFAULT_STALL_TIMEOUT.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("short-pool", DEFAULT_SHORT_POOL)
                    .nick("Short pool")
                    .blurb(
                        "What to do with held buffers from a pool that cannot grow enough to \
                         spare them (nvarguscamerasrc, fixed V4L2 queues, decoder surfaces): \
                         copy the oldest into memory of delaybuffer's own, so the source never \
                         waits, or wait (hold references only, and warn when input stops)",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("window")
                    .nick("Window")
                    .blurb(
                        "Running time held for the tap_%u pads, in ns, at most one hour: \
                         how far back a tap can move (0 = the largest tap delay; never less)",
                    )
                    .maximum(MAX_DELAY)
                    .default_value(DEFAULT_WINDOW.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("current-level-buffers")
                    .nick("Current level (buffers)")
                    .blurb("Buffers held now")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("current-level-bytes")
                    .nick("Current level (bytes)")
                    .blurb("Bytes held now")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("current-level-time")
                    .nick("Current level (ns)")
                    .blurb("Running time held now, oldest to newest buffer")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("dropped")
                    .nick("Dropped")
                    .blurb(
                        "Buffers dropped by leaky=downstream, by lowering the delay or as \
                         already late when a branch is linked again",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Levels, the received, pushed and dropped counts, the buffers \
                         (copied) and bytes (copied-bytes) copied out of short pools, and the \
                         buffers held in the window for src and the taps (window-buffers)",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            // As queue's: emitted, without any lock held, each time a buffer
            // finds a max-size bound reached; a handler may raise the bound.
            vec![
                glib::subclass::Signal::builder("overrun")
                    .run_first()
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "delay" => self.set_delay(gst::ClockTime::from_nseconds(value.get().unwrap())),
            "window" => {
                let mut s = self.lock();
                s.settings.window = gst::ClockTime::from_nseconds(value.get().unwrap());
                drop(s);
                self.reallocate_if_holding_more();
            }
            "stall-timeout" => {
                let mut s = self.lock();
                s.settings.stall_timeout = gst::ClockTime::from_nseconds(value.get().unwrap());
                s.src.cancel_clock_wait();
                self.notify_all();
            }
            name => {
                {
                    let mut s = self.lock();
                    let settings = &mut s.settings;
                    match name {
                        "max-size-buffers" => settings.bounds.buffers = value.get().unwrap(),
                        "max-size-bytes" => settings.bounds.bytes = value.get().unwrap(),
                        "max-size-time" => settings.bounds.time = value.get().unwrap(),
                        "leaky" => settings.leaky = value.get().unwrap(),
                        "short-pool" => settings.short_pool = value.get().unwrap(),
                        _ => unreachable!(),
                    }
                    // Room may have appeared for a blocked upstream.
                    self.notify_all();
                }
                self.check_bounds_hold_delay();
                self.post_latency();
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.lock();
        let level = || s.src_level();
        match pspec.name() {
            "delay" => s.src.delay.nseconds().to_value(),
            "stall-timeout" => s.settings.stall_timeout.nseconds().to_value(),
            "max-size-buffers" => s.settings.bounds.buffers.to_value(),
            "max-size-bytes" => s.settings.bounds.bytes.to_value(),
            "max-size-time" => s.settings.bounds.time.to_value(),
            "leaky" => s.settings.leaky.to_value(),
            "short-pool" => s.settings.short_pool.to_value(),
            "window" => s.settings.window.nseconds().to_value(),
            "current-level-buffers" => u32::try_from(level().buffers)
                .unwrap_or(u32::MAX)
                .to_value(),
            "current-level-bytes" => level().bytes.to_value(),
            "current-level-time" => level().span.to_value(),
            "dropped" => s.src.dropped.to_value(),
            "stats" => {
                let copied_bytes = s.copied_bytes;
                let window_buffers = s.window.buffers();
                drop(s);
                let stats = self.stats();
                gst::Structure::builder("delaybuffer-stats")
                    .field("current-level-buffers", stats.level_buffers)
                    .field("current-level-bytes", stats.level_bytes)
                    .field("current-level-time", stats.level_time.nseconds())
                    .field("received", stats.received)
                    .field("pushed", stats.pushed)
                    .field("dropped", stats.dropped)
                    .field("copied", stats.copied)
                    .field("copied-bytes", copied_bytes)
                    .field("window-buffers", window_buffers)
                    .build()
                    .to_value()
            }
            _ => unreachable!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
        let handle = metrics::publish(&*obj, |obj| {
            let imp = obj.imp();
            let mut pads = vec![imp.stats()];
            pads.extend(imp.tap_stats());
            metrics::Sample::Delay(pads)
        });
        let _ = self.metrics.set(handle);
    }
}

impl GstObjectImpl for DelayBuffer {}

impl ElementImpl for DelayBuffer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Zero-copy delay buffer",
                "Generic",
                "Delays one branch by holding buffer references and shifting its running \
                 time, without copying frames or adding pipeline latency",
                "edgeguard developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let any = gst::Caps::new_any();
            let mut templates = crate::pad_templates::always_sink_and_src(&any, &any);
            templates.push(
                gst::PadTemplate::with_gtype(
                    "tap_%u",
                    gst::PadDirection::Src,
                    gst::PadPresence::Request,
                    &any,
                    TapPad::static_type(),
                )
                .expect("a static pad template is valid"),
            );
            templates
        });
        PAD_TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let pad = self.request_tap(templ, name);
        if let Err(err) = self.obj().add_pad(&pad) {
            gst::warning!(CAT, imp = self, "cannot add {pad:?}: {err}");
            // Never added: nothing to deactivate or remove.
            drop(self.forget_tap(&pad));
            return None;
        }
        gst::info!(CAT, imp = self, "{} requested", pad.name());
        self.reallocate_if_holding_more();
        Some(pad)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        self.release_tap(pad);
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PlayingToPaused {
            self.set_playing(None);
        }
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToPlaying {
            let obj = self.obj();
            let clock = obj
                .clock()
                .map(|c| (c, obj.base_time().map_or(0, |b| b.nseconds())));
            self.set_playing(Some(clock));
        }
        Ok(result)
    }
}

impl DelayBuffer {
    /// The `stats` property's values and the metrics' for `src`.
    fn stats(&self) -> DelayStats {
        let pad = self.srcpad.name().to_string();
        let s = self.lock();
        let level = s.src_level();
        DelayStats {
            pad,
            delay: s.src.delay,
            level_time: gst::ClockTime::from_nseconds(level.span),
            level_buffers: u32::try_from(level.buffers).unwrap_or(u32::MAX),
            level_bytes: level.bytes,
            received: s.received,
            pushed: s.src.pushed,
            dropped: s.src.dropped,
            copied: s.copied,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock()
    }

    /// Wakes every waiter: on `changed` (data, time, room) and on `idle`
    /// (readers waiting for their flow to be reset or to be turned on).
    fn notify_all(&self) {
        self.changed.notify_all();
        self.idle.notify_all();
    }

    fn post_latency(&self) {
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
    }

    /// Enters PLAYING (`Some`, with the clock and base time if there is a
    /// clock) or leaves it (`None`). Only in PLAYING does the clock run for
    /// the task and does input that stops count as a stall.
    fn set_playing(&self, clock: Option<Option<(gst::Clock, u64)>>) {
        let now = clock
            .as_ref()
            .and_then(|c| c.as_ref())
            .and_then(|(c, base)| c.time().nseconds().checked_sub(*base));
        let old_clock = {
            let mut s = self.lock();
            s.playing = clock.is_some();
            if s.playing && s.last_arrival.is_some() {
                // Time spent PAUSED is not time without input.
                s.last_arrival = if s.is_live() {
                    now
                } else {
                    Some(monotonic_ns())
                };
            }
            let old = std::mem::replace(&mut s.clock, clock.flatten());
            // A clock wait was for a base time that no longer holds.
            Self::cancel_clock_waits(&mut s);
            self.notify_all();
            old
        };
        drop(old_clock);
    }

    fn set_delay(&self, delay: gst::ClockTime) {
        let (old, late) = {
            let mut s = self.lock();
            let old = std::mem::replace(&mut s.src.delay, delay);
            let dropped = s.src.dropped;
            if delay < old {
                // Frames already older than the new delay would all go out
                // at once: dropped instead of bursting, up to a keyframe.
                self.move_reader(&mut s, &self.srcpad);
            }
            s.src.cancel_clock_wait();
            self.notify_all();
            (old, s.src.dropped - dropped)
        };
        gst::info!(
            CAT,
            imp = self,
            "delay changed from {old} to {delay}, dropped {late} late buffers"
        );
        self.check_bounds_hold_delay();
        if old != delay {
            self.post_latency();
        }
    }

    /// Warns when a max-size bound is too small to hold the delay at the known framerate.
    fn check_bounds_hold_delay(&self) {
        let (bounds, delay, framerate) = {
            let s = self.lock();
            (s.settings.bounds, s.src.delay.nseconds(), s.framerate)
        };
        let mut problems = Vec::new();
        if bounds.time != 0 && bounds.time < delay {
            problems.push(format!(
                "max-size-time={} is below delay={delay}",
                bounds.time
            ));
        }
        if let (Some(fps), true) = (framerate, bounds.buffers != 0)
            && let Some(needed) = allocation::buffers_for_delay(delay, fps)
            && bounds.buffers < needed - 2
        {
            problems.push(format!(
                "max-size-buffers={} holds less than delay={delay} ns at {fps} fps ({} buffers)",
                bounds.buffers,
                needed - 2
            ));
        }
        if !problems.is_empty() {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Negotiation,
                (
                    "The max-size bounds cannot hold the delay: {}",
                    problems.join("; ")
                )
            );
        }
    }

    fn query_live(&self) -> bool {
        let mut query = gst::query::Latency::new();
        let live = self.sinkpad.peer_query(&mut query) && query.result().0;
        gst::info!(
            CAT,
            imp = self,
            "upstream is {}",
            if live { "live" } else { "not live" }
        );
        live
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut left = Vec::new();
        let mut released = Vec::new();
        let mut pool = PoolLookup::Known(None);
        let result = self.hold(buffer, &mut pool, &mut left);
        let short = match pool {
            PoolLookup::Known(short) => short,
            PoolLookup::Unknown(key, pool) => self.look_up_pool(key, pool),
        };
        if let (Ok(_), Some(short)) = (result, short) {
            self.copy_oldest(short, &mut released);
        }
        // After the lock: the last reference may return a buffer to its pool.
        drop(left);
        drop(released);
        result
    }

    /// Puts `buffer` in the window once `src` has room for it (blocking
    /// upstream, or with leaky=downstream dropping `src`'s oldest), and,
    /// not live, once no tap is too far behind. What left the window goes
    /// into `left`; into `pool`, what `short-pool=copy` knows of the pool
    /// it came from (looked up under the same lock).
    fn hold(
        &self,
        buffer: gst::Buffer,
        pool: &mut PoolLookup,
        left: &mut Vec<Item<gst::Buffer, gst::Event>>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut s = self.lock();
        // An unlinked `src` never stops the taps.
        let to_src = match s.accepting() {
            Ok(_) => true,
            Err(gst::FlowError::NotLinked) if !s.taps.is_empty() => false,
            Err(err) => return Err(err),
        };
        if s.live.is_none() {
            let live = MutexGuard::unlocked(&mut s, || self.query_live());
            // A flush may have started meanwhile: this buffer is from before it.
            if s.flushing {
                return Err(gst::FlowError::Flushing);
            }
            s.live.get_or_insert(live);
        }
        let live = s.is_live();
        let now = if live { s.running_time_now() } else { None };
        let running_time = buffer
            .pts()
            .and_then(|pts| s.segment.to_running_time(pts))
            .map(|t| t.nseconds())
            // Without a timestamp, the arrival time is the best guess (documented).
            .or(now)
            .or(s.last_running_time)
            .unwrap_or(0);
        let size = buffer.size() as u64;
        s.received += 1;
        if to_src {
            match self.wait_for_room(&mut s, size, running_time) {
                // `src` found unlinked meanwhile: the taps take the buffer.
                Err(gst::FlowError::NotLinked) if !s.taps.is_empty() => (),
                Err(err) => return Err(err),
                Ok(_) => (),
            }
        }
        gst::trace!(
            CAT,
            imp = self,
            "holding {:?} at running time {running_time}",
            buffer
        );
        let src_was_empty = s.src_buffers() == 0;
        *pool = s.short_pool(&buffer);
        let key = output::is_keyframe(&buffer);
        s.window.push_buffer(buffer, running_time, size, key);
        s.last_running_time = Some(running_time);
        // Arrival times for stall detection: the clock's when live.
        s.last_arrival = if live { now } else { Some(monotonic_ns()) };
        self.trim_window(&mut s, left);
        if !s.taps.is_empty() {
            self.changed.notify_all();
            if !live {
                self.wait_for_slow_taps(&mut s, left)?;
            }
        }
        // Wake `src` only when this buffer can change what it waits for: it
        // held nothing; until the second buffer it has no stall to watch for
        // (live or not); live, it otherwise sleeps on the clock, and not live
        // it waits until the held span reaches the delay. Waking it for every
        // buffer would cost a context switch each.
        let level = s.src_level();
        let wake = src_was_empty
            || level.buffers == flow::MIN_HELD_FOR_STARVATION
            || (!live && level.span >= s.src.delay.nseconds());
        if wake {
            s.src.cancel_clock_wait();
            self.changed.notify_all();
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Waits until `src` has room for a buffer of `size` at `running_time`
    /// under its limit (`max-size-*`, or the non-live pacing), blocking
    /// upstream (leaky=no, pacing) or dropping `src`'s oldest buffer
    /// (leaky=downstream).
    fn wait_for_room(
        &self,
        s: &mut MutexGuard<'_, Shared>,
        size: u64,
        running_time: u64,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        // The settings are read afresh on every turn: a property change while
        // upstream is blocked takes effect at once.
        let mut overrun_reported = false;
        loop {
            s.accepting()?;
            let limit = pacing::limit(s.settings.bounds, s.live, s.src.delay.nseconds());
            let (bounds, paced) = match limit {
                Limit::None => return Ok(gst::FlowSuccess::Ok),
                Limit::Bounds(bounds) => (bounds, false),
                Limit::Paced(bounds) => (bounds, true),
            };
            if !pacing::is_full(&bounds, &s.src_level(), size, running_time) {
                return Ok(gst::FlowSuccess::Ok);
            }
            // Pacing is no max-size bound: it never drops and signals nothing.
            if !paced && s.settings.leaky == Leaky::Downstream {
                if !self.drop_src_oldest(s) {
                    return Ok(gst::FlowSuccess::Ok);
                }
                gst::debug!(CAT, imp = self, "full: dropped the oldest buffer");
                continue;
            }
            if !paced && !overrun_reported {
                // A handler may raise a bound or make delaybuffer leaky: look
                // again before blocking.
                overrun_reported = true;
                MutexGuard::unlocked(s, || {
                    self.obj().emit_by_name::<()>("overrun", &[]);
                });
                continue;
            }
            gst::log!(
                CAT,
                imp = self,
                "{}: blocking upstream",
                if paced {
                    "delay and headroom held"
                } else {
                    "full"
                }
            );
            // Not live, the task lets the oldest go now: a bound smaller
            // than what the delay needs never waits silently.
            s.input_waiting = true;
            self.notify_all();
            self.changed.wait(s);
            s.input_waiting = false;
        }
    }

    /// leaky=downstream: `src` skips its oldest buffer not sent yet
    /// (counted); the events around it still go out, in order. False when
    /// it holds none.
    fn drop_src_oldest(&self, s: &mut Shared) -> bool {
        let from = s.src.unread_from().max(s.window.start());
        let oldest = s.window.first_from(from, 0);
        if oldest == s.window.end() {
            return false;
        }
        s.src.skip_before = oldest + 1;
        s.src.dropped += 1;
        // The task may be waiting for the buffer just dropped.
        s.src.cancel_clock_wait();
        true
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "event {:?}", event);
        match event.view() {
            gst::EventView::FlushStart(_) => {
                let forwarded = self.srcpad.push_event(event.clone());
                self.set_flushing(true);
                // Waits for a preroll GAP being pushed: downstream flushes,
                // so it returns at once; one not pushed yet sees the flush.
                drop(self.gap_push.lock());
                // Waits for the task's current push to return.
                let _ = self.srcpad.pause_task();
                self.flush_taps(&event, true);
                return forwarded;
            }
            gst::EventView::FlushStop(_) => {
                let forwarded = self.srcpad.push_event(event.clone());
                self.set_flushing(false);
                self.flush_taps(&event, false);
                if !self.resume_task()
                    && let Err(err) = self.start_task()
                {
                    gst::error!(CAT, imp = self, "cannot restart the task: {err}");
                    return false;
                }
                return forwarded;
            }
            _ => (),
        }
        if !event.is_serialized() {
            return gst::Pad::event_default(pad, Some(&*self.obj()), event);
        }
        let mut s = self.lock();
        if s.flushing {
            return false;
        }
        // Before anything else: what a SEGMENT or CAPS changes holds for
        // the taps too, whether `src` is linked or not.
        let (latency_changed, old_pools) = match self.note_stream_event(&mut s, &event) {
            Ok(noted) => noted,
            Err(format) => {
                drop(s);
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("delaybuffer needs TIME segments, got {format:?}")
                );
                return false;
            }
        };
        // An unlinked `src` beside taps never stops the taps: they get the
        // event, and `src` reads it when it is linked again.
        let detached = !s.src_holds();
        if let Err(err) = s.src.flow
            && !detached
            && (!event.is_sticky() || event.type_() == gst::EventType::Eos)
        {
            // Like queue: sticky events wait for the flow to resume, others are
            // refused, and EOS, which can no longer go out, becomes an ERROR
            // when upstream will not report the failure itself.
            drop(s);
            if event.type_() == gst::EventType::Eos && is_fatal_or_not_linked(err) {
                self.post_flow_error(&self.srcpad, err);
            }
            return false;
        }
        if event.type_() == gst::EventType::Eos {
            s.eos_held = Some(event.seqnum());
        }
        let left = self.feed_event(&mut s, event);
        drop(s);
        drop(left);
        drop(old_pools);
        if latency_changed {
            self.post_latency();
        }
        true
    }

    /// What a SEGMENT or CAPS changes in the element's own state: the input
    /// timeline, the framerate, the pools looked up for short-pool. Returns
    /// whether the latency changed and the pools let go (for the caller to
    /// drop unlocked); the format of a segment not in TIME as an error.
    fn note_stream_event(&self, s: &mut Shared, event: &gst::Event) -> Result<Noted, gst::Format> {
        match event.view() {
            gst::EventView::Segment(e) => match e.segment().downcast_ref::<gst::ClockTime>() {
                Some(segment) => s.segment = segment.clone(),
                None => return Err(e.segment().format()),
            },
            gst::EventView::Caps(c) => {
                let framerate = allocation::framerate(c.caps());
                // The framerate turns max-size-buffers into latency.
                let latency_changed = framerate != s.framerate
                    && s.settings.bounds.buffers != 0
                    && s.settings.leaky == Leaky::No;
                s.framerate = framerate;
                s.copyable = short_pool::copyable(c.caps());
                if !s.copyable && s.settings.short_pool == ShortPool::Copy {
                    gst::info!(
                        CAT,
                        imp = self,
                        "short-pool=copy: GStreamer cannot copy the memory of {} without a CPU map \
                         of what may be a descriptor: held as references",
                        c.caps()
                    );
                }
                // New caps usually come with new pools: the old ones are
                // looked up no more, and are let go.
                return Ok((latency_changed, std::mem::take(&mut s.pools)));
            }
            _ => (),
        }
        Ok((false, Vec::new()))
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Allocation(q) = query.view_mut() {
            return self.answer_allocation(q);
        }
        // Other serialized queries (DRAIN, custom) are answered at once, not
        // behind held data: waiting `delay` for them would stall upstream.
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn src_event(&self, pad: &gst::Pad, mut event: gst::Event) -> bool {
        match event.type_() {
            gst::EventType::Reconfigure => self.relinked(pad),
            gst::EventType::Qos => {
                // The QoS timestamp is in our shifted output running time;
                // upstream's is `delay` earlier.
                let shift = self.lock().src.out_shift.map_or(0, |s| s.nseconds());
                unshift_qos(&mut event, shift);
            }
            _ => (),
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        let gst::QueryViewMut::Latency(q) = query.view_mut() else {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        };
        if !self.sinkpad.peer_query(q.query_mut()) {
            return false;
        }
        let (live, min, max) = q.result();
        let (settings, delay, framerate) = {
            let s = self.lock();
            (s.settings, s.src.delay, s.framerate)
        };
        let frame_duration = framerate
            .and_then(|fps| {
                gst::ClockTime::SECOND.mul_div_floor(fps.denom() as u64, fps.numer() as u64)
            })
            .map(gst::ClockTime::nseconds);
        let new_max = latency::max_latency(
            max.map(gst::ClockTime::nseconds),
            &settings.bounds,
            settings.leaky,
            frame_duration,
            delay.nseconds(),
        )
        .map(gst::ClockTime::from_nseconds);
        gst::debug!(
            CAT,
            imp = self,
            "latency: live {live}, min {min}, max {max:?} -> {new_max:?}"
        );
        q.set(live, min, new_max);
        true
    }

    /// Forwards the query, then asks upstream pools for enough buffers to hold
    /// the delay: min-buffers + ceil(delay x framerate) + 2.
    fn answer_allocation(&self, query: &mut gst::query::Allocation) -> bool {
        let (caps, _) = query.get_owned();
        let framerate = caps.as_deref().and_then(allocation::framerate);
        let (delay, max_buffers) = {
            let mut s = self.lock();
            let held = self.held_length(&s);
            s.allocated_for = held;
            (held, s.settings.bounds.buffers)
        };
        let extra = match allocation::extra_buffers(delay, framerate, max_buffers) {
            Extra::Buffers(n) => n,
            Extra::Unknown => {
                // Without caps (asked before negotiation) there is nothing to
                // say yet: the query comes again with caps.
                if let Some(caps) = &caps
                    && !self.warned_no_framerate.swap(true, Ordering::SeqCst)
                {
                    gst::element_imp_warning!(
                        self,
                        gst::CoreError::Negotiation,
                        ("Caps have no framerate: cannot tell upstream how many buffers to allocate for the delay; set max-size-buffers"),
                        ["caps: {:?}", caps]
                    );
                }
                0
            }
        };
        let answered = self.srcpad.peer_query(query.query_mut());
        let proposed: Vec<_> = query.allocation_pools().collect();
        for i in (0..proposed.len()).rev() {
            query.remove_nth_allocation_pool(i as u32);
        }
        let count = proposed.len();
        let kept = allocation::raise_pools(proposed, extra);
        if kept.len() < count {
            gst::info!(
                CAT,
                imp = self,
                "dropped {} fixed pools that cannot hold {extra} more buffers",
                count - kept.len()
            );
        }
        if kept.is_empty() {
            let size = caps
                .as_ref()
                .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
                .map_or(0, |info| u32::try_from(info.size()).unwrap_or(u32::MAX));
            query.add_allocation_pool(None::<&gst::BufferPool>, size, extra, 0);
        }
        for (pool, size, min, max) in kept {
            query.add_allocation_pool(pool.as_ref(), size, min, max);
        }
        gst::debug!(
            CAT,
            imp = self,
            "allocation: downstream {}answered, asked for {extra} more buffers",
            if answered { "" } else { "not " }
        );
        true
    }

    fn set_flushing(&self, flushing: bool) {
        let (events, buffers) = {
            let mut s = self.lock();
            s.flushing = flushing;
            s.src.flushing = flushing;
            let held = if flushing {
                s.flushes += 1;
                Self::cancel_clock_waits(&mut s);
                // The window's stream-start and caps still hold after the
                // flush, its segment does not.
                let (mut events, mut buffers) = (Vec::new(), Vec::new());
                for item in taps::clear_window(&mut s) {
                    match item {
                        Item::Event(e) => events.push(e),
                        Item::Buffer { buffer, .. } => buffers.push(buffer),
                    }
                }
                s.window_sticky
                    .retain(|e| e.type_() != gst::EventType::Segment);
                (events, buffers)
            } else {
                s.segment = gst::FormattedSegment::new();
                s.last_running_time = None;
                let end = s.window.end();
                s.src.restart(end);
                s.eos_held = None;
                s.release_through = None;
                s.input_waiting = false;
                s.starvation_warned = false;
                s.last_arrival = None;
                Default::default()
            };
            self.notify_all();
            held
        };
        drop(buffers);
        // Stream-start, caps, tags not sent yet still describe the stream after
        // the flush: keep them on the src pad to go out with the next data.
        for event in events {
            if event.is_sticky()
                && !matches!(event.type_(), gst::EventType::Segment | gst::EventType::Eos)
            {
                let _ = self.srcpad.store_sticky_event(&event);
            }
        }
    }

    fn src_activate(
        &self,
        _pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "only push mode is supported"));
        }
        if active {
            let src = Reader::new(Output::Src, self.srcpad.clone(), DEFAULT_DELAY, true);
            let old = {
                let mut s = self.lock();
                let mut fresh = Shared::new(s.settings, src);
                fresh.src.delay = s.src.delay;
                // A GAP of the stream before still in flight must see a change.
                fresh.flushes = s.flushes;
                // The taps outlive a stream: they start at the fresh window's start.
                fresh.taps = std::mem::take(&mut s.taps);
                fresh.taps_requested = s.taps_requested;
                for tap in &mut fresh.taps {
                    tap.restart(0);
                }
                std::mem::replace(&mut *s, fresh)
            };
            drop(old);
            self.set_flushing(false);
            self.start_task()
                .map_err(|e| gst::loggable_error!(CAT, "cannot start the task: {e}"))
        } else {
            self.set_flushing(true);
            self.srcpad
                .stop_task()
                .map_err(|e| gst::loggable_error!(CAT, "cannot stop the task: {e}"))
        }
    }

    /// Restarts the src pad's paused task, if it has one. Not with
    /// `start_task`: gst_pad_start_task() on a pad that already has a task
    /// only restarts it and never calls the destroy notify of the new closure
    /// it is given, so each flush leaked one boxed closure (found by valgrind).
    fn resume_task(&self) -> bool {
        resume_pad_task(&self.srcpad)
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        self.start_output_task(&self.srcpad)
    }
}

/// Moves a QoS event from a delayed output's running time into upstream's,
/// `shift` earlier.
fn unshift_qos(event: &mut gst::Event, shift: u64) {
    let event = event.make_mut();
    let offset = event
        .running_time_offset()
        .saturating_sub(i64::try_from(shift).unwrap_or(i64::MAX));
    event.set_running_time_offset(offset);
}

/// Restarts `pad`'s paused task, if it has one (see `DelayBuffer::resume_task`).
fn resume_pad_task(pad: &gst::Pad) -> bool {
    let raw: *mut gst::ffi::GstPad = pad.to_glib_none().0;
    let _lock = pad.object_lock();
    // SAFETY: the pad outlives this call, and its task field is read and
    // the task's state set under the pad's object lock, as GStreamer does.
    unsafe {
        let task = (*raw).task;
        !task.is_null() && gst::ffi::gst_task_set_state(task, gst::ffi::GST_TASK_STARTED) != 0
    }
}

/// `event`, a SEGMENT, with `delay` added to its running time: the delayed
/// branch gets its own timeline. An offset the application sets on the src
/// pad still applies on top.
fn shifted_segment(event: &gst::Event, delay: u64) -> gst::Event {
    let gst::EventView::Segment(e) = event.view() else {
        return event.clone();
    };
    let mut segment = e.segment().clone();
    // delay <= MAX_DELAY, far below i64::MAX.
    let offset = i64::try_from(delay).unwrap_or(i64::MAX);
    if segment.offset_running_time(offset).is_err() {
        gst::warning!(CAT, "cannot shift {segment:?} by {delay} ns");
        return event.clone();
    }
    gst::event::Segment::builder(&segment)
        .seqnum(event.seqnum())
        .running_time_offset(event.running_time_offset())
        .build()
}
