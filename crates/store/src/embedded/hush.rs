//! The writer's errors, at most one line a while: a full disk fails every
//! turn and every refused request it tries to keep, and a line for each
//! would bury the first one (and fill the disk the log is on). The first
//! failure of a kind is logged at once; repeats within [`WINDOW`] are
//! counted and told with the next line, or when writes succeed again.

use std::time::{Duration, Instant};

/// How long repeats of one error are held back.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// The writer's kinds of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An event could not be turned into writes.
    Run,
    /// A turn's writes or its sync failed.
    Turn,
    /// A refused request was not kept.
    Refused,
    /// A damaged entry was not set aside.
    Quarantine,
}

const KINDS: usize = 4;

impl Kind {
    fn message(self) -> &'static str {
        match self {
            Kind::Run => "Could not write a run.",
            Kind::Turn => "Could not write runs.",
            Kind::Refused => "Could not keep a refused request.",
            Kind::Quarantine => "Could not set a damaged entry aside.",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    /// When a line of this kind was last written.
    logged: Option<Instant>,
    /// Repeats held back since.
    held: u64,
}

/// The writer's error lines and the repeats held back.
#[derive(Debug, Default)]
pub(crate) struct Hush {
    slots: [Slot; KINDS],
}

impl Hush {
    /// Logs `error` of `kind` unless one of its kind was logged within the
    /// window; then it is counted instead.
    pub fn error(&mut self, kind: Kind, error: &dyn std::fmt::Display) {
        if let Some(repeats) = self.admit(kind, Instant::now()) {
            let message = kind.message();
            if repeats == 0 {
                tracing::error!(message, %error);
            } else {
                tracing::error!(message, %error, repeats_held_back = repeats);
            }
        }
    }

    /// Tells how many errors were held back once writes go well again, and
    /// forgets them.
    pub fn recovered(&mut self) {
        let held: u64 = self.slots.iter().map(|s| s.held).sum();
        let failed = self.slots.iter().any(|s| s.logged.is_some());
        if failed {
            tracing::warn!(
                message = "The store writes again.",
                errors_not_logged = held
            );
            self.slots = Default::default();
        }
    }

    /// `Some(repeats held back)` when a line is due now, `None` when held.
    fn admit(&mut self, kind: Kind, now: Instant) -> Option<u64> {
        let slot = &mut self.slots[kind as usize];
        match slot.logged {
            Some(at) if now.saturating_duration_since(at) < WINDOW => {
                slot.held += 1;
                None
            }
            _ => {
                slot.logged = Some(now);
                Some(std::mem::take(&mut slot.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_counted_not_logged() {
        let mut hush = Hush::default();
        let t0 = Instant::now();
        assert_eq!(hush.admit(Kind::Turn, t0), Some(0));
        for _ in 0..5 {
            assert_eq!(hush.admit(Kind::Turn, t0 + Duration::from_secs(1)), None);
        }
        // Another kind has its own window.
        assert_eq!(hush.admit(Kind::Refused, t0), Some(0));
        // Past the window: a line, with the five held back.
        assert_eq!(hush.admit(Kind::Turn, t0 + WINDOW), Some(5));
        assert_eq!(hush.admit(Kind::Turn, t0 + WINDOW), None);
    }

    #[test]
    fn recovery_forgets_the_failures() {
        let mut hush = Hush::default();
        let t0 = Instant::now();
        assert_eq!(hush.admit(Kind::Run, t0), Some(0));
        assert_eq!(hush.admit(Kind::Run, t0), None);
        hush.recovered();
        // The next failure is news: logged at once.
        assert_eq!(hush.admit(Kind::Run, t0), Some(0));
    }
}
