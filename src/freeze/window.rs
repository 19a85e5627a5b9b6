//! One freeze window, read: whether it covers a time, until when, and when it next
//! starts. Calendar work is the crates' (croner for cron, jiff and its bundled IANA
//! database for time zones); this file only joins them.

use std::time::Duration;

use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};
use jiff::{SignedDuration, Timestamp, Zoned, tz::TimeZone};

use crate::api::FreezeWindow;

/// Longest recurring freeze (a year and a day): longer ones are one-shot windows.
pub const MAX_DURATION: Duration = Duration::from_secs(8784 * 3600);

/// A window, ready to evaluate.
#[derive(Clone, Debug)]
pub enum Window {
    Once { start: Timestamp, end: Timestamp },
    Recurring { cron: Box<Cron>, zone: TimeZone, duration: SignedDuration },
}

/// Why a window cannot be read: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct Unreadable {
    /// The field, relative to the window (`schedule`, `timeZone`, …).
    pub field: &'static str,
    pub message: String,
}

fn unreadable(field: &'static str, message: impl Into<String>) -> Unreadable {
    Unreadable { field, message: message.into() }
}

/// A standard five-field cron expression (no seconds, no year).
pub fn parse_schedule(schedule: &str) -> Result<Cron, Unreadable> {
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build().parse(schedule).map_err(|e| {
        unreadable(
            "schedule",
            format!(
                "{schedule:?} is not a cron expression of five fields (minute hour day-of-month month day-of-week): {e}"
            ),
        )
    })
}

/// An IANA time zone (`Europe/Berlin`), `UTC` when absent.
pub fn parse_zone(zone: Option<&str>) -> Result<TimeZone, Unreadable> {
    let Some(name) = zone else {
        return Ok(TimeZone::UTC);
    };
    TimeZone::get(name).map_err(|_| {
        unreadable("timeZone", format!("{name:?} is not an IANA time zone (such as Europe/Berlin or America/New_York)"))
    })
}

impl Window {
    /// Reads `window`; what the CRD's CEL rules already refuse is refused here too.
    pub fn read(window: &FreezeWindow) -> Result<Self, Unreadable> {
        if let (Some(start), Some(end)) = (&window.start, &window.end) {
            return Ok(Self::Once { start: start.0, end: end.0 });
        }
        let schedule =
            window.schedule.as_deref().ok_or_else(|| unreadable("schedule", "is required without start and end"))?;
        let cron = parse_schedule(schedule)?;
        let zone = parse_zone(window.time_zone.as_deref())?;
        let duration = window
            .duration
            .as_ref()
            .ok_or_else(|| unreadable("duration", "is required with schedule"))?
            .parse()
            .map_err(|e| unreadable("duration", e.to_string()))?;
        if duration.is_zero() || duration > MAX_DURATION {
            return Err(unreadable(
                "duration",
                "must be more than 0s and at most 8784h (use start and end for longer freezes)",
            ));
        }
        let duration = SignedDuration::try_from(duration).map_err(|e| unreadable("duration", e.to_string()))?;
        Ok(Self::Recurring { cron: Box::new(cron), zone, duration })
    }

    /// When the freeze covering `at` ends, if one covers it (start inclusive, end
    /// exclusive).
    pub fn covering_end(&self, at: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Once { start, end } => (*start <= at && at < *end).then_some(*end),
            Self::Recurring { cron, zone, duration } => {
                // The latest start at or before `at` is the one that covers it if any
                // does: an earlier start ends no later.
                let started = cron.find_previous_occurrence(&at.to_zoned(zone.clone()), true).ok()?;
                let end = wall_clock_end(&started, *duration)?;
                (at < end).then_some(end)
            }
        }
    }

    /// The first start strictly after `at`, if there is one.
    pub fn next_start(&self, at: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Once { start, .. } => (*start > at).then_some(*start),
            Self::Recurring { cron, zone, .. } => {
                cron.find_next_occurrence(&at.to_zoned(zone.clone()), false).ok().map(|z| z.timestamp())
            }
        }
    }
}

/// `started` plus `duration` on its zone's wall clock: a freeze from Friday 17:00
/// for 64h ends Monday 09:00 local whether or not the clocks change in between. An
/// end that falls into a gap (spring forward) moves past it, as a wall clock does.
fn wall_clock_end(started: &Zoned, duration: SignedDuration) -> Option<Timestamp> {
    let civil = started.datetime().checked_add(duration).ok()?;
    let end = started.time_zone().to_ambiguous_zoned(civil).compatible().ok()?.timestamp();
    // A start in the second pass of a repeated hour can map its wall clock end to
    // the first pass, before the start: then the duration is elapsed time.
    if end > started.timestamp() { Some(end) } else { started.timestamp().checked_add(duration).ok() }
}
