//! The durable runs this instance is driving, on a store shared by several
//! instances. Each poll asks the store which of them this instance still
//! holds: a run another instance took over (this one's lease on it ran out,
//! while it was paused or cut off from the database) stops here at once,
//! writing nothing more, instead of running the rest of its nodes a second
//! time beside the instance that has it now.

use crate::responder::Control;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The runs being driven, by id.
#[derive(Default)]
pub(crate) struct Held {
    runs: Mutex<HashMap<String, Arc<Control>>>,
}

/// A run's place among the held ones; dropped when its drive ends.
pub(crate) struct Holding {
    held: Arc<Held>,
    id: String,
    control: Arc<Control>,
}

impl Held {
    fn runs(&self) -> MutexGuard<'_, HashMap<String, Arc<Control>>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds run `id`, stopped through `control` when lost.
    pub fn hold(self: &Arc<Self>, id: &str, control: Arc<Control>) -> Holding {
        self.runs().insert(id.to_string(), control.clone());
        Holding {
            held: self.clone(),
            id: id.to_string(),
            control,
        }
    }

    /// The runs held now.
    pub fn ids(&self) -> Vec<String> {
        self.runs().keys().cloned().collect()
    }

    /// Stops run `id` as lost; false when it is not held (any more).
    pub fn lose(&self, id: &str) -> bool {
        match self.runs().get(id) {
            Some(control) => {
                control.lose();
                true
            }
            None => false,
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut runs = self.held.runs();
        // Only this drive's entry (a later drive of the same run has its own).
        if runs
            .get(&self.id)
            .is_some_and(|c| Arc::ptr_eq(c, &self.control))
        {
            runs.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_run_is_stopped_and_a_finished_one_forgotten() {
        let held = Arc::new(Held::default());
        let a = Arc::new(Control::default());
        let b = Arc::new(Control::default());
        let holding_a = held.hold("a", a.clone());
        let holding_b = held.hold("b", b.clone());
        let mut ids = held.ids();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        assert!(held.lose("a"));
        assert!(a.is_lost() && a.is_cancelled());
        assert!(!b.is_lost());
        drop(holding_b);
        assert!(!held.lose("b"), "its drive ended");
        drop(holding_a);
        assert!(held.ids().is_empty());
    }
}
