//! What the rollout controller remembers of pull-request merges between wake-ups:
//! when each batch commit was last found not merged, so the remote is asked again
//! only after [`MERGE_RECHECK`]. Held in the controller's `Context`.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use crate::rollout::machine::MERGE_RECHECK;

/// When each commit was last found not merged.
#[derive(Default)]
pub struct MergeChecks {
    unmerged_at: Mutex<HashMap<String, Instant>>,
}

impl MergeChecks {
    /// Whether `commit` was found not merged less than [`MERGE_RECHECK`] ago; forgets
    /// older answers (so the map holds only commits asked about lately).
    pub(super) fn recently_unmerged(&self, commit: &str) -> bool {
        let mut asked = self.unmerged_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        asked.retain(|_, at| at.elapsed() < MERGE_RECHECK);
        asked.contains_key(commit)
    }

    pub(super) fn unmerged(&self, commit: &str) {
        let mut asked = self.unmerged_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        asked.insert(commit.to_owned(), Instant::now());
    }
}
