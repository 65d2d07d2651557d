// SPDX-License-Identifier: MPL-2.0
//! Changing the encoder mid-stream without losing a frame: failover from a
//! failed hardware child, reclaiming the hardware encoder, and EOS while a
//! hardware child may still fail on the frames it holds.
//!
//! Everything here runs in the streaming thread, under the sink pad's stream
//! lock: no frame can reach the old chain while it is replaced. Failures seen
//! on other threads (a child's own output thread posting an ERROR) are only
//! recorded there, in the chain's watch.

use super::chain::{Role, monotonic_now};
use super::*;
use crate::guard::watch::running_time;
use crate::vpuguardenc::frames::{self, Frame};
use crate::vpuguardenc::stream_format;

/// How long EOS waits for a hardware child that outputs nothing more while
/// draining before EOS is taken as gone through (MPP encoders output every
/// frame within milliseconds; a slow one that keeps outputting is waited for).
const EOS_WAIT_FOR_HARDWARE: Duration = Duration::from_secs(3);

/// What the application is told of a switch: a WARNING for a failure, and
/// the decision.
pub(super) struct Announcement {
    settings: Settings,
    reason: Reason,
    failure: Option<String>,
    report: SwitchReport,
}

/// A switch that has taken place, for `complete_switch` to announce and finish.
struct Switched<'a> {
    settings: &'a Settings,
    reason: Reason,
    /// Why the old chain was replaced, when it failed.
    failure: Option<&'a str>,
    report: SwitchReport,
    /// What the old chain never output, for the new one.
    frames: Vec<Frame>,
    /// The flush count when the switch began: a flush since makes `frames`
    /// stale.
    flushes: u64,
}

/// The chain that takes over.
struct Replacement {
    factory: gst::ElementFactory,
    role: Role,
    /// Held by a hardware chain from its start until it is back in NULL.
    slot: Option<Slot>,
    /// The decision lock, held until a hardware chain has opened its session.
    held: Option<Held>,
    seen: Seen,
    /// Why the old chain is replaced, when it failed.
    failure: Option<String>,
}

impl VpuGuardEnc {
    /// Replaces a chain whose failure was just recorded (on the child's own
    /// thread), from a thread of GStreamer's pool, rather than when the next
    /// frame arrives: on a live stream that is up to a frame interval later.
    /// The stream lock keeps the streaming thread out meanwhile; the switch
    /// is announced only once it is released, since an application seeking
    /// from a sync handler on the decision would otherwise wait for the
    /// source's stream lock while the source waits for ours.
    pub(super) fn fail_over_now(&self) {
        let pad = self.sinkpad();
        crate::guard::chain::off_stream(pad, &self.stopping, &self.deferring, || {
            let _ = self.replace_if_failed(pad);
        });
        let untold = self.state.lock().as_mut().and_then(|s| s.untold.take());
        if let Some(announcement) = untold {
            self.announce(&announcement);
        }
    }

    /// Tells the application of a switch: a WARNING when the old chain
    /// failed, the decision message, the read-only properties.
    fn announce(&self, a: &Announcement) {
        if let Some(failure) = &a.failure {
            let encoder = self.state.lock().as_ref().map(|s| s.factory.clone());
            let encoder = encoder.unwrap_or_default();
            let (what, detail) = match a.reason {
                Reason::HwStartFailed => ("failed to start", "before its first output"),
                _ => ("failed mid-stream", "after output had flowed"),
            };
            gst::element_imp_warning!(
                self,
                gst::StreamError::Encode,
                (
                    "Hardware encoder {} {}, encoding with {}",
                    a.settings.hw_encoder,
                    what,
                    encoder
                ),
                [
                    "{} ({}); {} frames in flight sent to {}, {} lost past the window",
                    failure,
                    detail,
                    a.report.replayed,
                    encoder,
                    a.report.lost
                ]
            );
        }
        self.post_decision(&a.settings, a.reason, Some(&a.report));
        self.notify_chain_properties();
    }

    pub(super) fn current_watch(&self) -> Option<Arc<Watch>> {
        self.watches.lock().current.clone()
    }

    pub(super) fn sink_chain(
        &self,
        pad: &gst::GhostPad,
        input: Input,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let flushes = self.flushes.load(Ordering::SeqCst);
        self.replace_if_failed(pad)?;
        self.reclaim_if_due(pad, &input)?;
        if self.flushes.load(Ordering::SeqCst) != flushes {
            // Flushed by a seek while switching: this frame is the old segment's.
            return Ok(gst::FlowSuccess::Ok);
        }
        self.push_watched(pad, input)
    }

    /// Pushes into the chain, keeping a reference to each frame while the
    /// chain may still have to be replaced.
    fn push_watched(
        &self,
        pad: &gst::GhostPad,
        input: Input,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let obj = self.obj();
        let Some(watch) = self.current_watch() else {
            return input.push(pad, &*obj);
        };
        if !watch.keeps_frames() {
            // A hardware child that works and has no replacement: stop
            // following it (its errors reach the application as they are).
            let stopped = self.watches.lock().current.take();
            drop(stopped);
            return input.push(pad, &*obj);
        }
        frames::remember(&watch, pad.upcast_ref(), &input);
        match input.push(pad, &*obj) {
            Err(err) => match self.failure_behind(&watch, err) {
                // The frame is in the window: the replacement gets it.
                Some(failure) => self.replace_failed(pad, &watch, &failure),
                None => Err(err),
            },
            ok => ok,
        }
    }

    /// The failure behind a flow error the chain returned, when the guard
    /// handles it: the ERROR the child posted, or an error flow the child
    /// returned on its own (downstream did not return it).
    fn failure_behind(&self, watch: &Watch, err: gst::FlowError) -> Option<String> {
        if !watch.handles_failure() {
            return None;
        }
        watch.failure().or_else(|| {
            let own = err == gst::FlowError::Error && !self.downstream_error.load(Ordering::SeqCst);
            own.then(|| {
                format!(
                    "{} returned an error flow without an error message",
                    watch.child.name()
                )
            })
        })
    }

    /// A failure recorded since the last frame (on the child's own thread):
    /// the chain is replaced before the next frame goes in.
    fn replace_if_failed(&self, pad: &gst::GhostPad) -> Result<(), gst::FlowError> {
        let Some(watch) = self.current_watch() else {
            return Ok(());
        };
        match watch.failure() {
            Some(failure) if watch.handles_failure() => {
                self.replace_failed(pad, &watch, &failure).map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Replaces a failed hardware chain: before its first output by the
    /// software encoder (it could not start; downstream has seen nothing
    /// yet), after it by the failover encoder of the same codec.
    fn replace_failed(
        &self,
        pad: &gst::GhostPad,
        watch: &Watch,
        failure: &str,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().clone();
        // Once anything left the guard, downstream has this codec: a
        // reclaimed hardware encoder failing before its own first output is
        // replaced by the failover encoder too, never by sw-encoder.
        let stream_started = watch.output_seen() || self.srcpad().current_caps().is_some();
        let (factory, role, reason) = if stream_started {
            let factory = failover_factory(&settings).ok().flatten();
            (factory, Role::Failover, Reason::HwFailedMidStream)
        } else {
            let factory = gst::ElementFactory::find(&settings.sw_encoder);
            (factory, Role::Software, Reason::HwStartFailed)
        };
        let Some(factory) = factory else {
            self.post_error_message(gst::error_msg!(
                gst::StreamError::Encode,
                (
                    "Hardware encoder {} failed and no encoder can take over \
                     (failover-encoder={}, sw-encoder={})",
                    settings.hw_encoder,
                    settings.failover_encoder,
                    settings.sw_encoder
                ),
                ["{}", failure]
            ));
            return Err(gst::FlowError::Error);
        };
        let seen = self.state.lock().as_ref().map(|s| s.seen.clone());
        let replacement = Replacement {
            factory: factory.clone(),
            role,
            slot: None,
            held: None,
            seen: seen.unwrap_or_default(),
            failure: Some(failure.to_string()),
        };
        let flushes = self.flushes.load(Ordering::SeqCst);
        match self.replace_chain(pad, replacement) {
            Ok((report, frames)) => self.complete_switch(
                pad,
                Switched {
                    settings: &settings,
                    reason,
                    failure: Some(failure),
                    report,
                    frames,
                    flushes,
                },
            ),
            Err(why) => {
                self.post_error_message(gst::error_msg!(
                    gst::StreamError::Encode,
                    (
                        "Hardware encoder {} failed and {} could not take over",
                        settings.hw_encoder,
                        factory.name()
                    ),
                    ["{}; then: {}", failure, why]
                ));
                Err(gst::FlowError::Error)
            }
        }
    }

    /// On a software encoder of the hardware encoder's codec with
    /// `reclaim-interval` set: reads the listing once the schedule allows and
    /// switches back to hardware when the budget has room. `input` is the
    /// frame about to be encoded: the new encoder's first when no frame is in
    /// flight.
    fn reclaim_if_due(&self, pad: &gst::GhostPad, input: &Input) -> Result<(), gst::FlowError> {
        let now = monotonic_now();
        let candidate = {
            let state = self.state.lock();
            state
                .as_ref()
                .filter(|s| !s.hardware && s.reclaim.due(now))
                .map(|s| (s.codec, s.caps.clone(), s.seen.clone()))
        };
        let Some((codec, caps, seen)) = candidate else {
            return Ok(());
        };
        let settings = self.settings.lock().clone();
        if !self.switchable(&settings, Role::Software, codec)
            || self.stopping.load(Ordering::SeqCst)
        {
            return Ok(());
        }
        if let Some(state) = self.state.lock().as_mut() {
            state.reclaim.checked(now);
        }
        let Some(replacement) = self.reclaim_decision(&settings, &caps, seen) else {
            return Ok(());
        };
        let flushes = self.flushes.load(Ordering::SeqCst);
        match self.replace_chain(pad, replacement) {
            Ok((mut report, frames)) => {
                let next = running_time(pad.upcast_ref(), input.pts());
                report.first_running_time = report.first_running_time.or(next);
                let switched = Switched {
                    settings: &settings,
                    reason: Reason::Reclaimed,
                    failure: None,
                    report,
                    frames,
                    flushes,
                };
                self.complete_switch(pad, switched)?;
                Ok(())
            }
            Err(why) => {
                if let Some(state) = self.state.lock().as_mut() {
                    state.reclaim.hardware_failed(now);
                }
                gst::element_imp_warning!(
                    self,
                    gst::LibraryError::Init,
                    (
                        "Hardware encoder {} could not be taken back, staying on software",
                        settings.hw_encoder
                    ),
                    ["{}", why]
                );
                Ok(())
            }
        }
    }

    /// Counts the VPU without waiting for the decision lock; the hardware
    /// chain to switch to when the budget has room for this stream.
    fn reclaim_decision(
        &self,
        settings: &Settings,
        caps: &gst::CapsRef,
        seen: Seen,
    ) -> Option<Replacement> {
        let count = match self.count_vpu(settings, Patience::TryOnce) {
            Ok(count) => count,
            Err(_) => return None,
        };
        let inputs = Inputs {
            kind: GuardKind::Encoder,
            mode: decision::Mode::Auto,
            hw_available: true,
            downstream_takes_hw: true,
            downstream_takes_sw: true,
            vpu: count.view,
            budget: settings.budget.budget(),
            stream_pixel_rate: stream_pixel_rate(caps),
        };
        let outcome = decision::decide(&inputs);
        gst::debug!(
            CAT,
            imp = self,
            "reclaim check: {:?}: {:?}",
            inputs,
            outcome
        );
        if !matches!(outcome, Outcome::Hardware(_)) {
            return None;
        }
        let session_file = count.session_file.map(|p| p.display().to_string());
        let held = count.held?;
        let slot = held
            .take_slot(
                &self.obj().path_string(),
                SessionKind::Encoder,
                inputs.stream_pixel_rate,
            )
            .inspect_err(|e| gst::warning!(CAT, imp = self, "cannot record a slot: {e}"))
            .ok()?;
        Some(Replacement {
            factory: gst::ElementFactory::find(&settings.hw_encoder)?,
            role: Role::Hardware,
            slot: Some(slot),
            held: Some(held),
            seen: Seen {
                sessions: inputs.load().sessions,
                pixel_rate: inputs.load().pixel_rate,
                session_file: session_file.unwrap_or(seen.session_file),
                ..seen
            },
            failure: None,
        })
    }

    /// Starts the new chain beside the old one, then stops the old one and
    /// puts the new one in its place. Returns the frames the old chain never
    /// output, for the new one. If the new chain cannot start, the old one
    /// stays and the error says why.
    fn replace_chain(
        &self,
        pad: &gst::GhostPad,
        new: Replacement,
    ) -> Result<(SwitchReport, Vec<Frame>), String> {
        let settings = self.settings.lock().clone();
        let input_caps = pad.current_caps().ok_or("no caps on the sink pad")?;
        let codec = Codec::of_factory(&new.factory).ok_or("not an H.264/H.265 encoder")?;
        let switchable = self.switchable(&settings, new.role, codec);
        let output = self.replacement_output(codec, switchable);
        let chain = self
            .create_chain(
                &settings,
                &new.factory,
                &input_caps,
                new.role,
                switchable,
                output.as_ref(),
            )
            .map_err(|(ChainError::Config(why) | ChainError::Start(why))| why)?;
        if let Some(current) = self.srcpad().current_caps() {
            crate::guard::suppress_repeated_caps(&chain.last().static_pad("src").unwrap(), current);
        }
        let watch = chain.watch();
        let no_watch = std::mem::replace(&mut self.watches.lock().starting, watch.clone());
        drop(no_watch);
        // Primed before it is linked: a FLUSH_STOP (a seek racing the
        // switch) must not reach an encoder that has no caps yet.
        let started = self
            .start_chain(&chain)
            .and_then(|()| crate::guard::chain::prime(self.sinkpad(), &chain.elements, None))
            .and_then(|()| match watch.as_ref().and_then(|w| w.failure()) {
                Some(failure) => Err(failure),
                None => Ok(()),
            });
        // The hardware child has opened its session, or failed to.
        drop(new.held);
        if let Err(why) = started {
            self.remove_elements(&chain.elements);
            let starting = self.watches.lock().starting.take();
            drop(starting);
            return Err(why);
        }

        let old = self.state.lock().as_mut().map(|state| {
            (
                state.elements.clone(),
                state.slot.take(),
                state.switches,
                state.reclaim.clone(),
            )
        });
        let Some((old_elements, old_slot, switches, mut reclaim)) = old else {
            // The stream stopped meanwhile: the new chain goes too.
            self.remove_elements(&chain.elements);
            let starting = self.watches.lock().starting.take();
            drop(starting);
            return Err("the stream ended".into());
        };
        // Stopped while still linked: what it outputs meanwhile reaches
        // downstream and is covered, so it is not sent again. Its watch stays
        // in place meanwhile: an error it posts while stopping is its own.
        for element in &old_elements {
            crate::guard::chain::stop(element);
        }
        let old_watch = self.watches.lock().current.take();
        let (frames, lost) = old_watch
            .as_ref()
            .map(|w| frames::take_uncovered(w))
            .unwrap_or_default();
        drop(old_watch);
        let attached = self.attach_chain(&chain);
        let _ = self.obj().remove_many(&old_elements);
        // Its encoder is in NULL: the VPU session is closed.
        drop(old_slot);
        if let Err(ChainError::Config(why) | ChainError::Start(why)) = attached {
            // Past the point of no return: nothing is left to encode with.
            self.remove_elements(&chain.elements);
            self.teardown();
            let starting = self.watches.lock().starting.take();
            drop(starting);
            return Err(format!("cannot link the new chain: {why}"));
        }

        if new.failure.is_some() {
            reclaim.hardware_failed(monotonic_now());
        }
        let no_watch = std::mem::replace(&mut self.watches.lock().current, watch);
        drop(no_watch);
        // Only now: until the new watch is in place, the new chain's errors
        // are caught as a starting chain's.
        let starting = self.watches.lock().starting.take();
        drop(starting);
        let hardware = new.role == Role::Hardware;
        let new_state = Some(State {
            elements: chain.elements.clone(),
            factory: chain.factory.clone(),
            hardware,
            codec,
            seen: new.seen,
            caps: input_caps,
            slot: new.slot,
            switches: switches.saturating_add(1),
            reclaim,
            untold: None,
        });
        // The old state holds the old chain's last references: they go
        // after the lock (an element's dispose may call back into the bin).
        let old_state = std::mem::replace(&mut *self.state.lock(), new_state);
        drop(old_state);
        let report = SwitchReport {
            replayed: frames.len() as u64,
            lost,
            first_running_time: running_time(
                pad.upcast_ref(),
                frames.first().and_then(|f| f.buffer.pts()),
            ),
        };
        Ok((report, frames))
    }

    /// What a replacement chain outputs: the stream format downstream
    /// negotiated with the chain before (no codec or format change), else
    /// the in-band format a switchable chain asks for.
    fn replacement_output(&self, codec: Codec, switchable: bool) -> Option<gst::Caps> {
        let negotiated = self
            .srcpad()
            .current_caps()
            .filter(|caps| codec.accepted_by(caps));
        match negotiated {
            Some(caps) => stream_format::pinned_caps(&caps),
            None if switchable => {
                stream_format::in_band_caps(codec, &self.srcpad().peer_query_caps(None))
            }
            None => None,
        }
    }

    /// Tells the application, then sends the new chain the frames the old
    /// one never output, starting on a keyframe with its parameter sets.
    fn complete_switch(
        &self,
        pad: &gst::GhostPad,
        switched: Switched,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Switched {
            settings,
            reason,
            failure,
            report,
            frames,
            flushes,
        } = switched;
        let encoder = self.state.lock().as_ref().map(|s| s.factory.clone());
        let encoder = encoder.unwrap_or_default();
        let announcement = Announcement {
            settings: settings.clone(),
            reason,
            failure: failure.map(str::to_string),
            report,
        };
        if self.deferring.load(Ordering::SeqCst) {
            if let Some(state) = self.state.lock().as_mut() {
                state.untold = Some(announcement);
            }
        } else {
            self.announce(&announcement);
        }
        if self.flushes.load(Ordering::SeqCst) != flushes {
            // The stream was flushed meanwhile (an application seeking from
            // a sync handler as it heard of the switch, in this very thread):
            // the frames in hand belong to the old segment. Ok, not FLUSHING:
            // a source that performed the seek inside this push goes on with
            // the new segment only if the push succeeds.
            gst::debug!(
                CAT,
                imp = self,
                "flushed during the switch: {} frames dropped",
                frames.len()
            );
            drop(frames);
            return Ok(gst::FlowSuccess::Ok);
        }
        gst::info!(
            CAT,
            imp = self,
            "switched to {encoder} ({}), replaying {} frames",
            reason.as_str(),
            frames.len()
        );
        let Some(internal) = pad.internal() else {
            return Err(gst::FlowError::Flushing);
        };
        let key_unit = gst_video::DownstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        // Also delivers the sticky stream-start, caps and segment first.
        internal.push_event(key_unit);
        self.replay(pad, &internal, frames)
    }

    /// Sends `frames` to the new chain, each under the caps it was first
    /// given under (a caps change may have happened while they were in
    /// flight), then the caps in force again.
    fn replay(
        &self,
        pad: &gst::GhostPad,
        internal: &gst::ProxyPad,
        frames: Vec<Frame>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let current = pad.current_caps();
        let mut in_force = current.clone();
        let mut result = Ok(gst::FlowSuccess::Ok);
        for frame in frames {
            if frame.caps.is_some() && frame.caps != in_force {
                in_force = frame.caps;
                internal.push_event(gst::event::Caps::new(in_force.as_ref().unwrap()));
            }
            result = self.push_watched(pad, Input::Buffer(frame.buffer));
            if result.is_err() {
                break;
            }
        }
        if let Some(current) = current.filter(|c| Some(c) != in_force.as_ref()) {
            internal.push_event(gst::event::Caps::new(&current));
        }
        result
    }

    /// EOS while a hardware child may still fail on the frames it holds. It
    /// goes to the chain itself, not through the sink pad's proxy (which
    /// would then refuse the frames a replacement needs), and waits until it
    /// came out or the chain failed; on failure the replacement gets the
    /// frames and then EOS.
    pub(super) fn sink_eos(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        let obj = self.obj();
        let forward = |event| gst::Pad::event_default(pad, Some(&*obj), event);
        let Some(watch) = self.current_watch() else {
            return forward(event);
        };
        if !watch.handles_failure() {
            watch.settle_eos();
            return forward(event);
        }
        if watch.failure().is_none() {
            let Some(target) = pad.target() else {
                return forward(event);
            };
            // A chain that failed refuses EOS; its failure was posted first.
            let sent = target.send_event(event.clone());
            if sent {
                self.wait_for_eos_out_or_failure(pad, &watch);
            }
            if watch.eos_out() || watch.failure().is_none() {
                watch.settle_eos();
                return sent;
            }
        }
        let failure = watch.failure().unwrap_or_default();
        let flushes = self.flushes.load(Ordering::SeqCst);
        if self.replace_failed(pad, &watch, &failure).is_err() {
            return false;
        }
        if self.flushes.load(Ordering::SeqCst) != flushes {
            // A seek flushed the stream this EOS ended.
            return true;
        }
        // Into the replacement, through the proxy this time.
        forward(event)
    }

    fn wait_for_eos_out_or_failure(&self, pad: &gst::GhostPad, watch: &Watch) {
        watch.wait_for_eos_out(pad.upcast_ref(), EOS_WAIT_FOR_HARDWARE, || {
            self.stopping.load(Ordering::SeqCst)
        });
        if !watch.eos_out() && watch.failure().is_none() {
            gst::warning!(
                CAT,
                imp = self,
                "EOS did not come out of {}: no output for {EOS_WAIT_FOR_HARDWARE:?}",
                watch.child.name()
            );
        }
    }
}
