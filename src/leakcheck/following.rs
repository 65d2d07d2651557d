// SPDX-License-Identifier: MPL-2.0
//! Which pipeline a leakcheck element follows, and who is switching it to
//! another one. One thread switches at a time; the others never wait for it
//! (they may be inside a state change the application waits on, or be the
//! single judging worker): they leave a note that it should look again, and
//! it does when its switch is over. A transition made meanwhile is not lost:
//! the switching thread watches the new pipeline's bus and bins before it
//! reads what the pipeline already holds.

/// What a thread that found the pipeline `serial` above its element is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It is the pipeline followed already: nothing.
    Followed,
    /// Another thread is switching: it will look again when done.
    Busy,
    /// Switch to it: this thread owns the switch until `finish`.
    Switch,
}

#[derive(Debug, Default)]
pub struct Following {
    /// The serial of the tracked top-level pipeline.
    pub tracker: Option<u64>,
    switching: bool,
    look_again: bool,
}

impl Following {
    pub fn claim(&mut self, serial: u64) -> Claim {
        if self.tracker == Some(serial) {
            Claim::Followed
        } else if self.switching {
            self.look_again = true;
            Claim::Busy
        } else {
            self.switching = true;
            Claim::Switch
        }
    }

    /// Ends the switch; true when another thread asked meanwhile that the
    /// top-level pipeline be looked for again (the element may have moved).
    pub fn finish(&mut self) -> bool {
        self.switching = false;
        std::mem::take(&mut self.look_again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_followed_pipeline_needs_nothing() {
        let mut f = Following {
            tracker: Some(7),
            ..Following::default()
        };
        assert_eq!(f.claim(7), Claim::Followed);
        assert!(!f.finish());
    }

    #[test]
    fn one_thread_switches_and_the_others_ask_it_to_look_again() {
        let mut f = Following::default();
        assert_eq!(f.claim(7), Claim::Switch);
        assert_eq!(f.claim(7), Claim::Busy);
        assert_eq!(f.claim(9), Claim::Busy);
        f.tracker = Some(7);
        // Once the new pipeline is followed, a look at it needs nothing.
        assert_eq!(f.claim(7), Claim::Followed);
        assert!(f.finish(), "asked to look again");
        // Asked once, answered once.
        assert_eq!(f.claim(9), Claim::Switch);
        assert!(!f.finish());
    }
}
