//! Freeze windows, evaluated (pure): whether a rollout batch or a class-wide
//! re-render may be committed now, which windows hold it, when it may go on and
//! when the next freeze starts. The Rollout state machine and the EnvironmentClass
//! controller ask here; `crate::api::freeze` says what a window is.
//!
//! A rollout batch is held by the rollout's windows, those of the classes of its
//! environments and the cluster's `Freeze` objects; a class-wide re-render by the
//! class's and the cluster's. A window Berth cannot read holds (fail safe) with no
//! known end, and says why. Freezes that touch or overlap are one freeze: it opens
//! when none covers the time any more.

pub mod window;

use std::{collections::BTreeMap, fmt};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use window::{Unreadable, Window};

use crate::api::{FreezeWindow, rollout::FrozenStatus};

/// Most back-to-back windows followed to find when a freeze opens.
const MAX_STEPS: usize = 1_000;
/// How far ahead a freeze's end is looked for.
const HORIZON: SignedDuration = SignedDuration::from_hours(366 * 24);
/// Windows named in a status.
const NAMED: usize = 8;

/// Where a window comes from, as a person finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `spec.freezeWindows` of the rollout itself.
    Rollout,
    /// `spec.freezeWindows` of an EnvironmentClass.
    Class(String),
    /// `spec.windows` of a cluster-wide `Freeze`.
    Cluster(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rollout => f.write_str("Rollout"),
            Self::Class(name) => write!(f, "EnvironmentClass {name}"),
            Self::Cluster(name) => write!(f, "Freeze {name}"),
        }
    }
}

impl Source {
    /// The list the window is in, on its object.
    fn field(&self) -> &'static str {
        match self {
            Self::Rollout | Self::Class(_) => "spec.freezeWindows",
            Self::Cluster(_) => "spec.windows",
        }
    }
}

/// The platform's windows: every class's and every `Freeze`'s, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Calendar {
    classes: BTreeMap<String, Vec<FreezeWindow>>,
    cluster: BTreeMap<String, Vec<FreezeWindow>>,
}

impl Calendar {
    pub fn new(
        classes: impl IntoIterator<Item = (String, Vec<FreezeWindow>)>,
        cluster: impl IntoIterator<Item = (String, Vec<FreezeWindow>)>,
    ) -> Self {
        let nonempty = |(_, windows): &(String, Vec<FreezeWindow>)| !windows.is_empty();
        Self {
            classes: classes.into_iter().filter(nonempty).collect(),
            cluster: cluster.into_iter().filter(nonempty).collect(),
        }
    }

    /// What holds a re-render of `class`'s environments: its windows and the cluster's.
    pub fn for_class(&self, class: &str) -> Windows {
        let mut windows = Windows::default();
        if let Some((name, list)) = self.classes.get_key_value(class) {
            windows.add(&Source::Class(name.clone()), list);
        }
        self.add_cluster(&mut windows);
        windows
    }

    /// What holds a rollout batch: the rollout's windows, those of its
    /// environments' `classes` and the cluster's.
    pub fn for_batch<'c>(&self, rollout: &[FreezeWindow], classes: impl IntoIterator<Item = &'c str>) -> Windows {
        let mut windows = Windows::default();
        windows.add(&Source::Rollout, rollout);
        let mut seen = std::collections::BTreeSet::new();
        for class in classes {
            if seen.insert(class)
                && let Some((name, list)) = self.classes.get_key_value(class)
            {
                windows.add(&Source::Class(name.clone()), list);
            }
        }
        self.add_cluster(&mut windows);
        windows
    }

    fn add_cluster(&self, windows: &mut Windows) {
        for (name, list) in &self.cluster {
            windows.add(&Source::Cluster(name.clone()), list);
        }
    }
}

/// Windows that together hold something, each with where it comes from.
#[derive(Default)]
pub struct Windows {
    windows: Vec<Labelled>,
}

struct Labelled {
    label: String,
    read: Result<Window, Unreadable>,
}

impl Windows {
    fn add(&mut self, source: &Source, list: &[FreezeWindow]) {
        for (i, window) in list.iter().enumerate() {
            let read = Window::read(window);
            let label = match &read {
                Err(e) => format!("{source} {}[{i}].{e}, so it counts as frozen until that is fixed", source.field()),
                Ok(_) => format!("{source}: {}", describe(window)),
            };
            self.windows.push(Labelled { label, read });
        }
    }

    /// Whether and why they hold at `now`, and until when.
    pub fn check(&self, now: Timestamp) -> Verdict {
        let covering: Vec<&Labelled> = self
            .windows
            .iter()
            .filter(|w| w.read.as_ref().map_or(true, |read| read.covering_end(now).is_some()))
            .collect();
        if covering.is_empty() {
            return Verdict { covering: Vec::new(), opens_at: None, closes_at: self.next_start(now) };
        }
        let readable = covering.iter().all(|w| w.read.is_ok());
        let opens_at = if readable { self.opens(now) } else { None };
        Verdict {
            covering: covering.iter().map(|w| w.label.clone()).collect(),
            opens_at,
            closes_at: opens_at.and_then(|at| self.next_start(at)),
        }
    }

    fn readable(&self) -> impl Iterator<Item = &Window> {
        self.windows.iter().filter_map(|w| w.read.as_ref().ok())
    }

    /// The first time from `now` on that no window covers, following windows that
    /// touch or overlap; `None` past the horizon or after too many windows.
    fn opens(&self, now: Timestamp) -> Option<Timestamp> {
        let horizon = now.checked_add(HORIZON).ok()?;
        let mut at = now;
        for _ in 0..MAX_STEPS {
            match self.readable().filter_map(|w| w.covering_end(at)).max() {
                None => return Some(at),
                Some(end) if end > horizon => return None,
                Some(end) => at = end,
            }
        }
        None
    }

    /// When the next freeze starts after `at`.
    fn next_start(&self, at: Timestamp) -> Option<Timestamp> {
        self.readable().filter_map(|w| w.next_start(at)).min()
    }
}

/// `End-of-year freeze (2026-12-20T00:00:00Z to 2027-01-04T00:00:00Z)` or
/// `No weekend changes (0 17 * * 5 for 64h in Europe/Berlin)`.
fn describe(window: &FreezeWindow) -> String {
    let reason = window.reason.as_deref().unwrap_or("freeze window");
    match (&window.start, &window.end, &window.schedule, &window.duration) {
        (Some(start), Some(end), _, _) => format!("{reason} ({} to {})", start.0, end.0),
        (_, _, Some(schedule), Some(duration)) => {
            format!("{reason} ({schedule} for {duration} in {})", window.time_zone.as_deref().unwrap_or("UTC"))
        }
        _ => reason.to_owned(),
    }
}

/// Whether windows hold something now, which, and when that changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The windows covering now, each described with where it comes from; empty
    /// when nothing holds.
    pub covering: Vec<String>,
    /// While held: when no window covers any more (`None`: no end found).
    pub opens_at: Option<Timestamp>,
    /// The next freeze's start: after now when open, after `opens_at` when held.
    pub closes_at: Option<Timestamp>,
}

impl Verdict {
    pub fn frozen(&self) -> bool {
        !self.covering.is_empty()
    }

    /// One line a person can act on.
    pub fn message(&self, what: &str) -> String {
        let until = self.opens_at.map_or_else(
            || "no end is known (Berth keeps looking)".to_owned(),
            |at| format!("{what} waits until {at}"),
        );
        format!("frozen by {}; {until}", self.covering.join("; "))
    }

    /// The bounded status form.
    pub fn status(&self) -> FrozenStatus {
        FrozenStatus {
            windows: self.covering.iter().take(NAMED).cloned().collect(),
            opens_at: self.opens_at.map(Time),
            closes_at: self.closes_at.map(Time),
        }
    }
}

/// What is wrong with `windows` (at `path`, e.g. `spec.freezeWindows`), one line
/// per problem naming the field; empty when every window can be read.
pub fn problems(path: &str, windows: &[FreezeWindow]) -> Vec<String> {
    windows.iter().enumerate().filter_map(|(i, w)| Window::read(w).err().map(|e| format!("{path}[{i}].{e}"))).collect()
}

#[cfg(test)]
mod tests;
