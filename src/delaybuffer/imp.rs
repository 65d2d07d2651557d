// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::glib::translate::ToGlibPtr;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Leaky;
use super::latency;
use super::ring::{self, Bounds, Item, Ring};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "delaybuffer",
        gst::DebugColorFlags::empty(),
        Some("Zero-copy delay line"),
    )
});

const DEFAULT_DELAY: u64 = gst::ClockTime::SECOND.nseconds();
const DEFAULT_MAX_SIZE_BUFFERS: u32 = 0;
const DEFAULT_MAX_SIZE_BYTES: u64 = 0;
const DEFAULT_MAX_SIZE_TIME: u64 = 0;
const DEFAULT_LEAKY: Leaky = Leaky::No;
const DEFAULT_STALL_TIMEOUT: u64 = gst::ClockTime::SECOND.nseconds();
/// Starvation means upstream's buffers are held here: at least two of them.
const MIN_HELD_FOR_STARVATION: u32 = 2;

#[derive(Debug, Clone, Copy)]
struct Settings {
    bounds: Bounds,
    leaky: Leaky,
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
        }
    }
}

/// What the sink (upstream) thread and the src task share, under one mutex.
struct Shared {
    ring: Ring<gst::Buffer, gst::Event>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Whether upstream is live, asked with a LATENCY query on the first buffer.
    live: Option<bool>,
    flushing: bool,
    /// An EOS is held: everything before it may leave (non-live).
    eos_held: bool,
    /// The last result of pushing downstream, returned to upstream.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// The clock wait the task is blocked in, to cut short on flush or delay change.
    clock_id: Option<gst::SingleShotClockId>,
    /// Whether a GAP was sent to let downstream preroll while filling (non-live).
    gap_sent: bool,
    last_running_time: Option<u64>,
    /// When the last buffer arrived: clock running time (live), monotonic (not live).
    last_arrival_running_time: Option<u64>,
    last_arrival: Option<std::time::Instant>,
    /// Not live, after a stall: buffers up to this running time leave at once.
    release_through: Option<u64>,
    /// The starvation WARNING was posted for this stream.
    starvation_warned: bool,
    framerate: Option<gst::Fraction>,
    received: u64,
    pushed: u64,
    dropped: u64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            ring: Ring::default(),
            segment: gst::FormattedSegment::new(),
            live: None,
            flushing: true,
            eos_held: false,
            flow: Ok(gst::FlowSuccess::Ok),
            clock_id: None,
            gap_sent: false,
            last_running_time: None,
            last_arrival_running_time: None,
            last_arrival: None,
            release_through: None,
            starvation_warned: false,
            framerate: None,
            received: 0,
            pushed: 0,
            dropped: 0,
        }
    }
}

pub struct DelayBuffer {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    /// The delay in ns; atomic because the task reads it on every buffer.
    delay: AtomicU64,
    stall_timeout: AtomicU64,
    // Lock order: settings, then shared. Never held while pushing or waiting on the clock.
    shared: Mutex<Shared>,
    /// Signalled when the ring or the flushing flag changes.
    changed: Condvar,
    warned_no_framerate: AtomicBool,
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
            .query_function(|pad, parent, query| {
                DelayBuffer::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_query(pad, query),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build();
        DelayBuffer {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            delay: AtomicU64::new(DEFAULT_DELAY),
            stall_timeout: AtomicU64::new(DEFAULT_STALL_TIMEOUT),
            shared: Mutex::new(Shared::default()),
            changed: Condvar::new(),
            warned_no_framerate: AtomicBool::new(false),
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
                        "Delay of this branch in ns; shifts its running time, not the \
                         pipeline latency (0 = pass-through behind a thread boundary)",
                    )
                    .default_value(DEFAULT_DELAY)
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
                    .blurb("Most running time held, oldest to newest (0 = no limit)")
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
                        "How long input may stop, while less than the delay is held, before \
                         delaybuffer warns that upstream's pool is too small (and, when not \
                         live, releases what it holds so nothing waits forever); in ns",
                    )
                    .minimum(1)
                    .default_value(DEFAULT_STALL_TIMEOUT)
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
                    .blurb("Buffers dropped by leaky=downstream or by lowering the delay")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Levels and the received, pushed and dropped counts")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "delay" => self.set_delay(value.get().unwrap()),
            "stall-timeout" => {
                self.stall_timeout
                    .store(value.get().unwrap(), Ordering::SeqCst);
                let _guard = self.lock();
                self.changed.notify_all();
            }
            name => {
                let mut settings = self.settings.lock();
                match name {
                    "max-size-buffers" => settings.bounds.buffers = value.get().unwrap(),
                    "max-size-bytes" => settings.bounds.bytes = value.get().unwrap(),
                    "max-size-time" => settings.bounds.time = value.get().unwrap(),
                    "leaky" => settings.leaky = value.get().unwrap(),
                    _ => unreachable!(),
                }
                drop(settings);
                self.check_bounds_hold_delay();
                // Room may have appeared for a blocked upstream.
                self.changed.notify_all();
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "delay" => self.delay.load(Ordering::SeqCst).to_value(),
            "stall-timeout" => self.stall_timeout.load(Ordering::SeqCst).to_value(),
            "max-size-buffers" => self.settings.lock().bounds.buffers.to_value(),
            "max-size-bytes" => self.settings.lock().bounds.bytes.to_value(),
            "max-size-time" => self.settings.lock().bounds.time.to_value(),
            "leaky" => self.settings.lock().leaky.to_value(),
            "current-level-buffers" => self.shared.lock().ring.buffers().to_value(),
            "current-level-bytes" => self.shared.lock().ring.bytes().to_value(),
            "current-level-time" => self.shared.lock().ring.span().to_value(),
            "dropped" => self.shared.lock().dropped.to_value(),
            "stats" => {
                let s = self.shared.lock();
                gst::Structure::builder("delaybuffer-stats")
                    .field("current-level-buffers", s.ring.buffers())
                    .field("current-level-bytes", s.ring.bytes())
                    .field("current-level-time", s.ring.span())
                    .field("received", s.received)
                    .field("pushed", s.pushed)
                    .field("dropped", s.dropped)
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
        self.srcpad.set_offset(DEFAULT_DELAY as i64);
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
            crate::pad_templates::always_sink_and_src(&any, &any)
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToPlaying {
            // A task waiting for a clock can start waiting on it now.
            let _guard = self.shared.lock();
            self.changed.notify_all();
        }
        Ok(result)
    }
}

impl DelayBuffer {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock()
    }

    fn set_delay(&self, delay: u64) {
        let old = self.delay.swap(delay, Ordering::SeqCst);
        gst::info!(CAT, imp = self, "delay changed from {old} to {delay} ns");
        // Downstream running time follows the delay.
        self.srcpad
            .set_offset(i64::try_from(delay).unwrap_or(i64::MAX));
        let dropped = {
            let mut s = self.lock();
            let mut dropped = 0;
            if delay < old
                && s.live == Some(true)
                && let Some(now) = self.current_running_time()
            {
                // Frames already older than the new delay would all go out at
                // once; drop them instead of bursting.
                dropped = s.ring.drop_older_than(now.saturating_sub(delay));
                s.dropped += u64::from(dropped);
            }
            if let Some(id) = s.clock_id.take() {
                id.unschedule();
            }
            self.changed.notify_all();
            dropped
        };
        if dropped > 0 {
            gst::info!(
                CAT,
                imp = self,
                "dropped {dropped} buffers older than the new delay"
            );
        }
        self.check_bounds_hold_delay();
    }

    /// Warns when a max-size bound is too small to hold the delay at the known framerate.
    fn check_bounds_hold_delay(&self) {
        let bounds = self.settings.lock().bounds;
        let delay = self.delay.load(Ordering::SeqCst);
        let framerate = self.lock().framerate;
        let mut problems = Vec::new();
        if bounds.time != 0 && bounds.time < delay {
            problems.push(format!(
                "max-size-time={} is below delay={delay}",
                bounds.time
            ));
        }
        if let (Some(fps), true) = (framerate, bounds.buffers != 0)
            && let Some(needed) =
                ring::buffers_for_delay(delay, fps.numer() as u32, fps.denom() as u32)
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

    fn current_running_time(&self) -> Option<u64> {
        let obj = self.obj();
        let clock = obj.clock()?;
        let base = obj.base_time()?;
        clock.time().checked_sub(base).map(|t| t.nseconds())
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut s = self.lock();
        if s.flushing {
            return Err(gst::FlowError::Flushing);
        }
        s.flow?;
        if s.live.is_none() {
            drop(s);
            let mut query = gst::query::Latency::new();
            let live = self.sinkpad.peer_query(&mut query) && query.result().0;
            gst::info!(
                CAT,
                imp = self,
                "upstream is {}",
                if live { "live" } else { "not live" }
            );
            s = self.lock();
            s.live = Some(live);
        }
        let running_time = buffer
            .pts()
            .and_then(|pts| s.segment.to_running_time(pts))
            .map(|t| t.nseconds())
            // Without a timestamp, the arrival time is the best guess (documented).
            .or_else(|| self.current_running_time())
            .or(s.last_running_time)
            .unwrap_or(0);
        let size = buffer.size() as u64;
        let settings = *self.settings.lock();
        while s.ring.is_full(&settings.bounds, size, running_time) {
            match settings.leaky {
                Leaky::Downstream => {
                    if s.ring.drop_oldest_buffer() {
                        s.dropped += 1;
                        // The task may be waiting for the buffer just dropped.
                        if let Some(id) = s.clock_id.take() {
                            id.unschedule();
                        }
                        gst::debug!(CAT, imp = self, "full: dropped the oldest buffer");
                    }
                }
                Leaky::No => {
                    gst::log!(CAT, imp = self, "full: blocking upstream");
                    self.changed.wait(&mut s);
                    if s.flushing {
                        return Err(gst::FlowError::Flushing);
                    }
                }
            }
        }
        gst::trace!(
            CAT,
            imp = self,
            "holding {:?} at running time {running_time}",
            buffer
        );
        let was_empty = s.ring.front().is_none();
        s.ring.push_buffer(buffer, running_time, size);
        s.received += 1;
        s.last_running_time = Some(running_time);
        // Arrival times for stall detection: the clock only matters when live.
        if s.live == Some(true) {
            s.last_arrival_running_time = self.current_running_time();
        } else {
            s.last_arrival = Some(std::time::Instant::now());
        }
        // Wake the task only when this buffer can change what it waits for:
        // live, it sleeps on the clock unless the ring was empty; not live,
        // until the held span reaches the delay. Waking it for every buffer
        // would cost a context switch each.
        let delay = self.delay.load(Ordering::SeqCst);
        if was_empty || (s.live != Some(true) && s.ring.span() >= delay) {
            self.changed.notify_all();
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "event {:?}", event);
        match event.view() {
            gst::EventView::FlushStart(_) => {
                let forwarded = self.srcpad.push_event(event);
                self.set_flushing(true);
                let _ = self.srcpad.pause_task();
                return forwarded;
            }
            gst::EventView::FlushStop(_) => {
                {
                    let mut s = self.lock();
                    s.segment = gst::FormattedSegment::new();
                    s.last_running_time = None;
                }
                let forwarded = self.srcpad.push_event(event);
                self.set_flushing(false);
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
        match event.view() {
            gst::EventView::Segment(e) => match e.segment().downcast_ref::<gst::ClockTime>() {
                Some(segment) => s.segment = segment.clone(),
                None => {
                    drop(s);
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "delaybuffer needs TIME segments, got {:?}",
                            e.segment().format()
                        )
                    );
                    return false;
                }
            },
            gst::EventView::Caps(c) => {
                s.framerate = c
                    .caps()
                    .structure(0)
                    .and_then(|st| st.get::<gst::Fraction>("framerate").ok())
                    .filter(|f| f.numer() > 0);
            }
            gst::EventView::Eos(_) => s.eos_held = true,
            _ => (),
        }
        // Events that cannot be delivered after an error are dropped, but EOS
        // still has to go out so that the branch finishes.
        if s.flow.is_err() && !matches!(event.type_(), gst::EventType::Eos) {
            return false;
        }
        s.ring.push_event(event);
        self.changed.notify_all();
        true
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Allocation(q) = query.view_mut() {
            return self.answer_allocation(q);
        }
        // Other serialized queries (DRAIN, custom) are answered at once, not
        // behind held data: waiting `delay` for them would stall upstream.
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        let gst::QueryViewMut::Latency(q) = query.view_mut() else {
            return gst::Pad::query_default(pad, Some(&*self.obj()), query);
        };
        if !self.sinkpad.peer_query(q.query_mut()) {
            return false;
        }
        let (live, min, max) = q.result();
        let settings = *self.settings.lock();
        // Only positive framerates are kept (see the CAPS event).
        let frame_duration = self
            .lock()
            .framerate
            .and_then(|fps| {
                gst::ClockTime::SECOND.mul_div_floor(fps.denom() as u64, fps.numer() as u64)
            })
            .map(gst::ClockTime::nseconds);
        let new_max = latency::max_latency(
            max.map(gst::ClockTime::nseconds),
            &settings.bounds,
            settings.leaky,
            frame_duration,
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
        let framerate = caps
            .as_ref()
            .and_then(|c| c.structure(0))
            .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
            .filter(|f| f.numer() > 0);
        let delay = self.delay.load(Ordering::SeqCst);
        let max_buffers = self.settings.lock().bounds.buffers;
        let extra = match framerate {
            Some(f) => ring::buffers_for_delay(delay, f.numer() as u32, f.denom() as u32)
                .unwrap_or(u32::MAX),
            None if max_buffers != 0 => max_buffers.saturating_add(2),
            None => {
                if !self.warned_no_framerate.swap(true, Ordering::SeqCst) {
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
        let pools: Vec<_> = query.allocation_pools().collect();
        for i in (0..pools.len()).rev() {
            query.remove_nth_allocation_pool(i as u32);
        }
        let mut kept = 0;
        for (pool, size, min, max) in pools {
            let min = min.saturating_add(extra);
            if max != 0 && max < min {
                gst::info!(
                    CAT,
                    imp = self,
                    "dropping a fixed pool of {max} buffers: {min} needed"
                );
                continue;
            }
            query.add_allocation_pool(pool.as_ref(), size, min, max);
            kept += 1;
        }
        if kept == 0 {
            let size = caps
                .as_ref()
                .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
                .map_or(0, |info| info.size() as u32);
            query.add_allocation_pool(None::<&gst::BufferPool>, size, extra, 0);
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
        let mut s = self.lock();
        s.flushing = flushing;
        let mut flushed_events = Vec::new();
        if flushing {
            flushed_events = s.ring.clear();
            if let Some(id) = s.clock_id.take() {
                id.unschedule();
            }
        } else {
            s.flow = Ok(gst::FlowSuccess::Ok);
            s.eos_held = false;
            s.gap_sent = false;
            s.release_through = None;
            s.starvation_warned = false;
            s.last_arrival = None;
            s.last_arrival_running_time = None;
        }
        self.changed.notify_all();
        drop(s);
        // Stream-start, caps, tags not sent yet still describe the stream after
        // the flush: keep them on the src pad to go out with the next data.
        for event in flushed_events {
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
            {
                let mut s = self.lock();
                *s = Shared::default();
            }
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
        let pad: *mut gst::ffi::GstPad = self.srcpad.to_glib_none().0;
        let _lock = self.srcpad.object_lock();
        // SAFETY: the pad outlives this call, and its task field is read and
        // the task's state set under the pad's object lock, as GStreamer does.
        unsafe {
            let task = (*pad).task;
            !task.is_null() && gst::ffi::gst_task_set_state(task, gst::ffi::GST_TASK_STARTED) != 0
        }
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        // A weak reference: the task must not keep the element alive.
        let weak = self.obj().downgrade();
        let pad = self.srcpad.downgrade();
        self.srcpad.start_task(move || match weak.upgrade() {
            Some(obj) => obj.imp().src_loop(),
            None => {
                if let Some(pad) = pad.upgrade() {
                    let _ = pad.pause_task();
                }
            }
        })
    }

    /// One step of the src task: push the next item once it is due.
    fn src_loop(&self) {
        let mut s = self.lock();
        let item = loop {
            if s.flushing {
                drop(s);
                let _ = self.srcpad.pause_task();
                return;
            }
            let Some(front) = s.ring.front() else {
                self.changed.wait(&mut s);
                continue;
            };
            let running_time = match front {
                Item::Event(_) => break s.ring.pop(),
                Item::Buffer { running_time, .. } => *running_time,
            };
            let delay = self.delay.load(Ordering::SeqCst);
            let due = running_time.saturating_add(delay);
            if s.live == Some(true) {
                let obj = self.obj();
                let (Some(clock), Some(base)) = (obj.clock(), obj.base_time()) else {
                    // No clock before PLAYING: wait for change_state to wake us.
                    self.changed.wait(&mut s);
                    continue;
                };
                let target = base + gst::ClockTime::from_nseconds(due);
                let now = clock.time();
                if now >= target {
                    break s.ring.pop();
                }
                if !s.gap_sent {
                    // Live sinks behind us would otherwise complete their
                    // state change only when the first frame leaves, `delay`
                    // from now: the pipeline would stay PAUSED that long, and
                    // an application's EOS sent meanwhile deadlocks (its
                    // send_event holds the state lock the pipeline needs to
                    // reach PLAYING). The sink prerolls on the GAP, then
                    // waits on the clock until the first frame is due.
                    s = self.send_preroll_gap(s);
                    continue;
                }
                // Wake up early to notice input that stopped while filling.
                let stall_check = self.stall_deadline(&s, delay).map(|t| base + t);
                if let Some(check) = stall_check
                    && now >= check
                {
                    self.warn_starvation(&mut s, delay);
                    continue;
                }
                let wake = stall_check.map_or(target, |check| check.min(target));
                let id = clock.new_single_shot_id(wake);
                s.clock_id = Some(id.clone());
                drop(s);
                let _ = id.wait();
                s = self.lock();
                s.clock_id = None;
                // Re-check: a flush, a new delay or a clock jump may have happened.
                continue;
            }
            // Not live: release once the held span reaches the delay, or at EOS.
            let released = s.release_through.is_some_and(|t| running_time <= t);
            if s.eos_held || released || s.ring.span() >= delay {
                break s.ring.pop();
            }
            if !s.gap_sent {
                // Downstream sinks preroll on it, so a tee in front never waits for the delay.
                s = self.send_preroll_gap(s);
                continue;
            }
            let stall_timeout =
                std::time::Duration::from_nanos(self.stall_timeout.load(Ordering::SeqCst));
            let timeout = self.changed.wait_for(&mut s, stall_timeout);
            let stalled = s.last_arrival.is_some_and(|t| t.elapsed() >= stall_timeout);
            if timeout.timed_out()
                && stalled
                && !s.flushing
                && s.ring.buffers() >= MIN_HELD_FOR_STARVATION
            {
                // Nothing came for a while: upstream may be waiting for the
                // buffers held here. Let them go rather than wait forever.
                self.warn_starvation(&mut s, delay);
                s.release_through = s.last_running_time;
            }
        };
        // Room for a blocked upstream.
        self.changed.notify_all();
        let is_buffer = matches!(item, Some(Item::Buffer { .. }));
        if is_buffer {
            s.pushed += 1;
        }
        drop(s);
        match item {
            Some(Item::Buffer { buffer, .. }) => {
                let result = self.srcpad.push(buffer);
                self.handle_flow(result);
            }
            Some(Item::Event(event)) => {
                let is_eos = event.type_() == gst::EventType::Eos;
                self.srcpad.push_event(event);
                if is_eos {
                    gst::debug!(CAT, imp = self, "EOS sent, pausing");
                    let mut s = self.lock();
                    s.flow = Err(gst::FlowError::Eos);
                    drop(s);
                    let _ = self.srcpad.pause_task();
                }
            }
            None => (),
        }
    }

    /// The running time (live) at which stopped input counts as a stall, when
    /// less than the delay is held and no warning was posted yet.
    fn stall_deadline(&self, s: &Shared, delay: u64) -> Option<gst::ClockTime> {
        // One held buffer is a slow start (a first frame taking long to make),
        // not a pool held dry.
        if s.starvation_warned
            || s.ring.span() >= delay
            || s.ring.buffers() < MIN_HELD_FOR_STARVATION
        {
            return None;
        }
        let last = s.last_arrival_running_time?;
        let timeout = self.stall_timeout.load(Ordering::SeqCst);
        Some(gst::ClockTime::from_nseconds(last.saturating_add(timeout)))
    }

    /// Posts, once per stream, what upstream would need to keep the delay fed.
    fn warn_starvation(&self, s: &mut Shared, delay: u64) {
        if s.starvation_warned {
            return;
        }
        s.starvation_warned = true;
        let held = s.ring.buffers();
        let span = s.ring.span();
        let needed = s
            .framerate
            .and_then(|f| ring::buffers_for_delay(delay, f.numer() as u32, f.denom() as u32))
            .map_or_else(|| "delay x framerate + 2".to_string(), |n| n.to_string());
        gst::element_imp_warning!(
            self,
            gst::ResourceError::NoSpaceLeft,
            (
                "Input stopped while {} buffers ({} of {} ns) are held: upstream's buffer pool is probably too small for the delay. It needs {} buffers: raise nvvidconv output-buffers or nvv4l2decoder num-extra-surfaces, or the source's pool size (v4l2src copies frames when more than 32 are needed)",
                held,
                span,
                delay,
                needed
            ),
            [
                "stall-timeout {} ns passed without input",
                self.stall_timeout.load(Ordering::SeqCst)
            ]
        );
    }

    /// Sends the stream's one preroll GAP, without holding the lock while
    /// downstream takes it, and locks again.
    fn send_preroll_gap<'a>(&'a self, mut s: MutexGuard<'a, Shared>) -> MutexGuard<'a, Shared> {
        s.gap_sent = true;
        let gap = self.preroll_gap(&s);
        drop(s);
        if let Some(gap) = gap {
            let _ = self.srcpad.push_event(gap);
        }
        self.lock()
    }

    /// A GAP at the first held buffer's position, for downstream to preroll on.
    fn preroll_gap(&self, s: &Shared) -> Option<gst::Event> {
        // Only after the sticky events before the first buffer went out.
        let pts = match s.ring.front()? {
            Item::Buffer { running_time, .. } => s
                .segment
                .position_from_running_time(gst::ClockTime::from_nseconds(*running_time)),
            Item::Event(_) => None,
        }?;
        Some(gst::event::Gap::builder(pts).build())
    }

    fn handle_flow(&self, result: Result<gst::FlowSuccess, gst::FlowError>) {
        let Err(err) = result else { return };
        gst::debug!(CAT, imp = self, "downstream returned {err:?}, pausing");
        {
            let mut s = self.lock();
            s.flow = Err(err);
            // Upstream may be blocked on a full ring: let it see the error.
            self.changed.notify_all();
        }
        if matches!(err, gst::FlowError::Error | gst::FlowError::NotNegotiated) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Internal data stream error."),
                ["streaming stopped, reason {err:?}"]
            );
        }
        let _ = self.srcpad.pause_task();
    }
}
