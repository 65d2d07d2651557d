// SPDX-License-Identifier: MPL-2.0
//! Changing the decoder mid-stream without outputting a frame twice or
//! losing one: failover from a failed hardware child, reclaiming the
//! hardware decoder, and EOS while a hardware child may still fail on the
//! frames it holds. The replacement is fed the access units since the last
//! keyframe the old decoder had not finished with; what it outputs up to the
//! old decoder's last output is dropped.
//!
//! Everything here runs in the streaming thread, under the sink pad's stream
//! lock. Failures seen on other threads (a child's own output thread posting
//! an ERROR) are only recorded there, in the chain's watch.

use super::chain::{Chain, monotonic_now};
use super::*;
use crate::guard::watch::running_time;
use crate::vpuguarddec::gop_window::Replay;
use crate::vpuguarddec::units::{self, Unit};
use std::time::Duration;

/// How long EOS waits for a hardware child that outputs nothing more while
/// draining before EOS is taken as gone through.
const EOS_WAIT_FOR_HARDWARE: Duration = Duration::from_secs(3);

/// What the application is told of a switch: a WARNING for a failure, and
/// the decision.
pub(super) struct Announcement {
    settings: Settings,
    reason: Reason,
    failure: Option<String>,
    units: usize,
    lost: u64,
}

/// The chain that takes over.
struct Replacement {
    factory: gst::ElementFactory,
    hardware: bool,
    /// Held by a hardware chain from its start until it is back in NULL.
    slot: Option<Slot>,
    /// The decision lock, held until a hardware chain has started.
    held: Option<Held>,
    seen: Seen,
}

impl VpuGuardDec {
    /// Replaces a chain whose failure was just recorded (on the child's own
    /// thread) from a thread of GStreamer's pool, rather than when the next
    /// access unit arrives. The stream lock keeps the streaming thread out
    /// meanwhile; the switch is announced once it is released (an
    /// application seeking from a sync handler on the decision would
    /// otherwise wait for the source's stream lock while the source waits
    /// for ours).
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
            let decoder = self.state.lock().as_ref().map(|s| s.factory.clone());
            let decoder = decoder.unwrap_or_default();
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                (
                    "Hardware decoder {} failed, decoding with {}",
                    a.settings.hw_decoder,
                    decoder
                ),
                [
                    "{}; {} access units since the last keyframe sent to {}, {} frames lost",
                    failure,
                    a.units,
                    decoder,
                    a.lost
                ]
            );
        }
        self.post_decision(
            &a.settings,
            a.reason,
            Some(metrics::Switch {
                replayed: a.units as u64,
                lost: a.lost,
            }),
        );
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
        let Some(input) = self.skip_to_keyframe(input) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        self.reclaim_if_due(pad)?;
        if self.flushes.load(Ordering::SeqCst) != flushes {
            // Flushed by a seek while switching: this unit is the old segment's.
            return Ok(gst::FlowSuccess::Ok);
        }
        self.push_watched(pad, input)
    }

    /// After a switch that found no keyframe to start from, drops access
    /// units (counted lost) until one comes.
    fn skip_to_keyframe(&self, input: Input) -> Option<Input> {
        let awaiting = self
            .state
            .lock()
            .as_ref()
            .is_some_and(|s| s.awaiting_keyframe);
        if !awaiting {
            return Some(input);
        }
        let mut buffers = input.buffers();
        let key = buffers
            .iter()
            .position(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
        let skipped = key.unwrap_or(buffers.len());
        if let Some(state) = self.state.lock().as_mut() {
            state.frames_lost += skipped as u64;
            state.awaiting_keyframe = key.is_none();
        }
        // The skipped references go after the lock.
        let rest = buffers.split_off(skipped);
        drop(buffers);
        match (key, input) {
            (None, _) => None,
            (Some(0), input) => Some(input),
            (Some(_), Input::Buffer(buffer)) => Some(Input::Buffer(buffer)),
            (Some(_), Input::List(_)) => {
                let mut list = gst::BufferList::new_sized(rest.len());
                let list_mut = list.get_mut().expect("a new list is writable");
                rest.into_iter().for_each(|b| list_mut.add(b));
                Some(Input::List(list))
            }
        }
    }

    /// Pushes into the chain, keeping a reference to each access unit while
    /// the chain may still have to be replaced.
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
            // A software chain past its first output, not to be replaced.
            let stopped = self.watches.lock().current.take();
            drop(stopped);
            return input.push(pad, &*obj);
        }
        units::remember(&watch, pad.upcast_ref(), &input);
        match input.push(pad, &*obj) {
            Err(err) => match self.failure_behind(&watch, err) {
                // The unit is in the window: the replacement gets it.
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
            // A decoder that refuses the caps it was primed with mid-stream
            // returns NOT_NEGOTIATED; downstream's own refusal is noted.
            let own = matches!(err, gst::FlowError::Error | gst::FlowError::NotNegotiated)
                && !self.downstream_error.load(Ordering::SeqCst);
            own.then(|| {
                format!(
                    "{} returned an error flow without an error message",
                    watch.child.name()
                )
            })
        })
    }

    /// A failure recorded since the last access unit (on the child's own
    /// thread): the chain is replaced before the next one goes in.
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

    /// Replaces a failed hardware chain by the software decoder of the
    /// stream's codec, fed from the last keyframe.
    fn replace_failed(
        &self,
        pad: &gst::GhostPad,
        watch: &Watch,
        failure: &str,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().clone();
        let stream_started = watch.output_seen() || self.srcpad().current_caps().is_some();
        let reason = if stream_started {
            Reason::HwFailedMidStream
        } else {
            Reason::HwStartFailed
        };
        let factory = pad
            .current_caps()
            .and_then(|caps| candidates::software_decoder(&settings.sw_decoder, &caps));
        let fail = |why: String| {
            self.post_error_message(gst::error_msg!(
                gst::StreamError::Decode,
                (
                    "Hardware decoder {} failed and no decoder can take over (sw-decoder={})",
                    settings.hw_decoder,
                    settings.sw_decoder
                ),
                ["{}; {}", failure, why]
            ));
            Err(gst::FlowError::Error)
        };
        let Some(factory) = factory else {
            return fail("no software decoder takes the stream".into());
        };
        let seen = self.state.lock().as_ref().map(|s| s.seen.clone());
        let replacement = Replacement {
            factory,
            hardware: false,
            slot: None,
            held: None,
            seen: seen.unwrap_or_default(),
        };
        match self.replace_chain(pad, replacement) {
            Ok(replay) => self.complete_switch(pad, &settings, reason, Some(failure), replay),
            Err(why) => fail(why),
        }
    }

    /// On the software decoder with `reclaim-interval` set: counts the VPU
    /// once the schedule allows and switches back to hardware when the
    /// budget has room.
    fn reclaim_if_due(&self, pad: &gst::GhostPad) -> Result<(), gst::FlowError> {
        let now = monotonic_now();
        let due = {
            let mut state = self.state.lock();
            let due = state
                .as_ref()
                .and_then(|s| (!s.hardware && s.reclaim.due(now)).then(|| s.seen.clone()));
            if let (Some(_), Some(state)) = (&due, state.as_mut()) {
                state.reclaim.checked(now);
            }
            due
        };
        let Some(seen) = due else {
            return Ok(());
        };
        let settings = self.settings.lock().clone();
        if !self.switchable(&settings, false) || self.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(replacement) = self.reclaim_decision(&settings, pad, seen) else {
            return Ok(());
        };
        match self.replace_chain(pad, replacement) {
            Ok(replay) => self
                .complete_switch(pad, &settings, Reason::Reclaimed, None, replay)
                .map(|_| ()),
            Err(why) => {
                if let Some(state) = self.state.lock().as_mut() {
                    state.reclaim.hardware_failed(now);
                }
                gst::element_imp_warning!(
                    self,
                    gst::LibraryError::Init,
                    (
                        "Hardware decoder {} could not be taken back, staying on software",
                        settings.hw_decoder
                    ),
                    ["{}", why]
                );
                Ok(())
            }
        }
    }

    /// Counts the VPU without waiting for the decision lock; the hardware
    /// chain to switch to when the budget has room.
    fn reclaim_decision(
        &self,
        settings: &Settings,
        pad: &gst::GhostPad,
        seen: Seen,
    ) -> Option<Replacement> {
        let caps = pad.current_caps()?;
        let factory = gst::ElementFactory::find(&settings.hw_decoder)
            .filter(|f| candidates::takes(f, &caps))?;
        let count = self.count_vpu(settings, Patience::TryOnce).ok()?;
        let inputs = Inputs {
            kind: GuardKind::Decoder,
            mode: decision::Mode::Auto,
            hw_available: true,
            downstream_takes_hw: true,
            downstream_takes_sw: true,
            vpu: count.view,
            budget: settings.budget(),
            stream_pixel_rate: 0,
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
            .take_slot(&self.obj().path_string(), SessionKind::Decoder, 0)
            .inspect_err(|e| gst::warning!(CAT, imp = self, "cannot record a slot: {e}"))
            .ok()?;
        Some(Replacement {
            factory,
            hardware: true,
            slot: Some(slot),
            held: Some(held),
            seen: Seen {
                sessions: inputs.load().sessions,
                session_file: session_file.unwrap_or(seen.session_file),
            },
        })
    }

    /// Starts the new chain beside the old one, then stops the old one and
    /// puts the new one in its place. Returns what the new one must be fed.
    /// If the new chain cannot start, the old one stays and the error says why.
    fn replace_chain(&self, pad: &gst::GhostPad, new: Replacement) -> Result<Replay<Unit>, String> {
        let settings = self.settings.lock().clone();
        let input_caps = pad.current_caps().ok_or("no caps on the sink pad")?;
        // Downstream keeps the caps it negotiated: no renegotiation at a switch.
        let output = self.srcpad().current_caps();
        let chain = self
            .create_chain(
                &settings,
                &new.factory,
                &input_caps,
                new.hardware,
                output.as_ref(),
            )
            .map_err(ChainError::why)?;
        let watch = chain.watch();
        let no_watch = std::mem::replace(&mut self.watches.lock().starting, watch.clone());
        drop(no_watch);
        let started = self
            .start_chain(&chain)
            .and_then(|()| self.prime_chain(&chain, None))
            .and_then(|()| match watch.as_ref().and_then(|w| w.failure()) {
                Some(failure) => Err(failure),
                None => Ok(()),
            });
        drop(new.held);
        if let Err(why) = started {
            self.remove_elements(&chain.elements);
            let starting = self.watches.lock().starting.take();
            drop(starting);
            return Err(why);
        }
        if let Some(output) = output {
            crate::guard::suppress_repeated_caps(&chain.last().static_pad("src").unwrap(), output);
        }
        let replay = match self.retire_old_chain(&chain) {
            Ok(replay) => replay,
            Err(why) => {
                // The stream stopped meanwhile: the new chain goes too.
                self.remove_elements(&chain.elements);
                let starting = self.watches.lock().starting.take();
                drop(starting);
                return Err(why);
            }
        };
        drop_output_until(chain.last(), replay.output_until);
        let no_watch = std::mem::replace(&mut self.watches.lock().current, watch);
        drop(no_watch);
        let starting = self.watches.lock().starting.take();
        drop(starting);
        let old_state = {
            let mut state = self.state.lock();
            let Some(old) = state.as_mut() else {
                drop(state);
                // The stream stopped meanwhile: the new chain goes too.
                self.remove_elements(&chain.elements);
                return Err("the stream ended".into());
            };
            let mut reclaim = old.reclaim.clone();
            if !new.hardware {
                reclaim.hardware_failed(monotonic_now());
            }
            let new_state = State {
                elements: chain.elements.clone(),
                factory: chain.factory.clone(),
                hardware: new.hardware,
                seen: new.seen,
                slot: new.slot,
                switches: old.switches.saturating_add(1),
                frames_lost: old.frames_lost + replay.lost,
                awaiting_keyframe: replay.needs_keyframe,
                reclaim,
                untold: None,
            };
            state.replace(new_state)
        };
        // The old state's elements are out of the bin: their last
        // references go after the lock.
        drop(old_state);
        Ok(replay)
    }

    /// Stops the chain decoding now while still linked (what it outputs
    /// meanwhile reaches downstream and settles the window), puts `chain` in
    /// its place and releases the old slot. Returns what `chain` is fed.
    fn retire_old_chain(&self, chain: &Chain) -> Result<Replay<Unit>, String> {
        let (old_elements, old_slot) = {
            let mut state = self.state.lock();
            let state = state.as_mut().ok_or("the stream ended")?;
            (state.elements.clone(), state.slot.take())
        };
        for element in &old_elements {
            crate::guard::chain::stop(element);
        }
        let old_watch = self.watches.lock().current.take();
        let replay = old_watch.as_deref().map(units::take_replay);
        drop(old_watch);
        let attached = self.attach_chain(chain);
        let _ = self.obj().remove_many(&old_elements);
        // Its decoder is in NULL: the VPU session is closed.
        drop(old_slot);
        if let Err(err) = attached {
            self.remove_elements(&chain.elements);
            self.teardown();
            let starting = self.watches.lock().starting.take();
            drop(starting);
            return Err(format!("cannot link the new chain: {}", err.why()));
        }
        Ok(replay.unwrap_or(Replay {
            units: Vec::new(),
            output_until: None,
            lost: 0,
            needs_keyframe: false,
            released: Vec::new(),
        }))
    }

    /// Tells the application, then feeds the new chain from the keyframe.
    fn complete_switch(
        &self,
        pad: &gst::GhostPad,
        settings: &Settings,
        reason: Reason,
        failure: Option<&str>,
        replay: Replay<Unit>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let decoder = self.state.lock().as_ref().map(|s| s.factory.clone());
        let decoder = decoder.unwrap_or_default();
        let announcement = Announcement {
            settings: settings.clone(),
            reason,
            failure: failure.map(str::to_string),
            units: replay.units.len(),
            lost: replay.lost,
        };
        let flushes = self.flushes.load(Ordering::SeqCst);
        if self.deferring.load(Ordering::SeqCst) {
            if let Some(state) = self.state.lock().as_mut() {
                state.untold = Some(announcement);
            }
        } else {
            self.announce(&announcement);
        }
        if self.flushes.load(Ordering::SeqCst) != flushes {
            // An application seeking from a sync handler on the decision, in
            // this thread: the units in hand are the old segment's. Ok, not
            // FLUSHING, so that a source that seeked inside this push goes on.
            return Ok(gst::FlowSuccess::Ok);
        }
        gst::info!(
            CAT,
            imp = self,
            "switched to {decoder} ({}), replaying {} access units",
            reason.as_str(),
            replay.units.len()
        );
        drop(replay.released);
        self.replay(pad, replay.units)
    }

    /// Feeds `units` to the new chain, each under the caps it was first given
    /// under (a caps change may lie inside the window), then the caps in force.
    fn replay(
        &self,
        pad: &gst::GhostPad,
        units: Vec<Unit>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(internal) = pad.internal() else {
            return Err(gst::FlowError::Flushing);
        };
        let current = pad.current_caps();
        let mut in_force = current.clone();
        let mut result = Ok(gst::FlowSuccess::Ok);
        for unit in units {
            if unit.caps.is_some() && unit.caps != in_force {
                in_force = unit.caps;
                internal.push_event(gst::event::Caps::new(in_force.as_ref().unwrap()));
            }
            result = self.push_watched(pad, Input::Buffer(unit.buffer));
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
    /// would then refuse the units a replacement needs), and waits until it
    /// came out or the chain failed; on failure the replacement gets the
    /// units and then EOS.
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
            let sent = target.send_event(event.clone());
            if sent {
                watch.wait_for_eos_out(pad.upcast_ref(), EOS_WAIT_FOR_HARDWARE, || {
                    self.stopping.load(Ordering::SeqCst)
                });
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
        forward(event)
    }
}

/// Drops what the chain ending in `last` outputs at or before `until` (the
/// old decoder output it already), then gets out of the way.
fn drop_output_until(last: &gst::Element, until: Option<u64>) {
    let Some(until) = until else { return };
    last.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH,
        move |pad, info| {
            let Some(buffer) = info.buffer() else {
                // A flush: running times start anew, nothing was output yet.
                return gst::PadProbeReturn::Remove;
            };
            match running_time(pad, buffer.pts()) {
                Some(t) if t.nseconds() <= until => gst::PadProbeReturn::Drop,
                _ => gst::PadProbeReturn::Remove,
            }
        },
    );
}
