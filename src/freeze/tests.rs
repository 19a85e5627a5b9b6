//! Freeze evaluation: DST changes in Berlin and New York, overlapping and touching
//! windows, next open and close, and unreadable windows holding.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn once(start: &str, end: &str, reason: &str) -> FreezeWindow {
    FreezeWindow::once(Time(ts(start)), Time(ts(end)), Some(reason.to_owned()))
}

fn every(schedule: &str, duration: &str, zone: &str, reason: &str) -> FreezeWindow {
    let duration = duration.parse().unwrap_or_else(|e| panic!("{duration}: {e}"));
    FreezeWindow::recurring(schedule, duration, zone, Some(reason.to_owned()))
}

/// The rollout's own windows only.
fn check(windows: &[FreezeWindow], now: &str) -> Verdict {
    Calendar::default().for_batch(windows, []).check(ts(now))
}

fn weekend(zone: &str) -> FreezeWindow {
    every("0 17 * * 5", "64h", zone, "No weekend changes")
}

#[test]
fn a_berlin_weekend_freeze_ends_monday_nine_local_across_spring_forward() {
    // 2026-03-29 02:00 CET becomes 03:00 CEST: the weekend is 63 hours long.
    let windows = [weekend("Europe/Berlin")];
    assert!(!check(&windows, "2026-03-27T15:59:59Z").frozen(), "Friday 16:59 CET is open");
    let friday = check(&windows, "2026-03-27T16:00:00Z");
    assert!(friday.frozen(), "Friday 17:00 CET freezes");
    assert_eq!(friday.opens_at, Some(ts("2026-03-30T07:00:00Z")), "Monday 09:00 CEST");
    assert_eq!(friday.closes_at, Some(ts("2026-04-03T15:00:00Z")), "the next Friday 17:00, now CEST");
    assert!(check(&windows, "2026-03-30T06:59:59Z").frozen());
    let monday = check(&windows, "2026-03-30T07:00:00Z");
    assert!(!monday.frozen(), "Monday 09:00 CEST is open");
    assert_eq!(monday.closes_at, Some(ts("2026-04-03T15:00:00Z")));
}

#[test]
fn a_berlin_weekend_freeze_ends_monday_nine_local_across_fall_back() {
    // 2026-10-25 03:00 CEST becomes 02:00 CET: the weekend is 65 hours long.
    let windows = [weekend("Europe/Berlin")];
    let friday = check(&windows, "2026-10-23T15:00:00Z");
    assert!(friday.frozen(), "Friday 17:00 CEST freezes");
    assert_eq!(friday.opens_at, Some(ts("2026-10-26T08:00:00Z")), "Monday 09:00 CET");
    assert_eq!(friday.closes_at, Some(ts("2026-10-30T16:00:00Z")), "the next Friday 17:00, now CET");
    assert!(check(&windows, "2026-10-26T07:59:59Z").frozen(), "Monday 08:59 CET is still frozen");
    assert!(!check(&windows, "2026-10-23T14:59:59Z").frozen());
}

#[test]
fn the_same_schedule_in_new_york_follows_new_yorks_clock_not_berlins() {
    // New York changes on 2026-03-08, three weeks before Berlin.
    let windows = [weekend("America/New_York")];
    let friday = check(&windows, "2026-03-06T22:00:00Z");
    assert!(friday.frozen(), "Friday 17:00 EST");
    assert_eq!(friday.opens_at, Some(ts("2026-03-09T13:00:00Z")), "Monday 09:00 EDT");
    assert!(!check(&windows, "2026-03-06T21:59:59Z").frozen());
}

#[test]
fn a_nightly_freeze_at_two_in_new_york_on_spring_forward_day_starts_after_the_gap() {
    // 02:00 does not exist on 2026-03-08 (01:59:59 EST is followed by 03:00 EDT).
    let windows = [every("0 2 * * *", "1h", "America/New_York", "nightly batch jobs")];
    let before = check(&windows, "2026-03-08T06:59:59Z");
    assert!(!before.frozen(), "01:59:59 EST");
    assert_eq!(
        before.closes_at,
        Some(ts("2026-03-08T07:00:00Z")),
        "the freeze starts when the clock reaches 03:00 EDT"
    );
    let during = check(&windows, "2026-03-08T07:30:00Z");
    assert!(during.frozen());
    assert_eq!(during.opens_at, Some(ts("2026-03-08T08:00:00Z")), "an hour of wall clock later, 04:00 EDT");
    // The day before and after keep 02:00 local.
    assert!(check(&windows, "2026-03-07T07:30:00Z").frozen(), "02:30 EST on Saturday");
    assert!(check(&windows, "2026-03-09T06:30:00Z").frozen(), "02:30 EDT on Monday");
    assert!(!check(&windows, "2026-03-09T07:30:00Z").frozen(), "03:30 EDT on Monday");
}

#[test]
fn a_freeze_at_one_thirty_in_new_york_on_fall_back_day_covers_both_passes_of_the_hour() {
    // 2026-11-01: 01:00–02:00 happens twice (EDT, then EST). From 01:30 for an hour
    // of wall clock is until 02:30 EST, so both 01:30s and everything between freeze.
    let windows = [every("30 1 * * *", "1h", "America/New_York", "backups")];
    assert!(!check(&windows, "2026-11-01T05:29:59Z").frozen(), "01:29:59 EDT");
    let first = check(&windows, "2026-11-01T05:30:00Z");
    assert!(first.frozen(), "01:30 EDT");
    assert_eq!(first.opens_at, Some(ts("2026-11-01T07:30:00Z")), "02:30 EST");
    assert!(check(&windows, "2026-11-01T06:15:00Z").frozen(), "01:15 EST, the second pass");
    assert!(check(&windows, "2026-11-01T06:45:00Z").frozen(), "01:45 EST");
    assert!(!check(&windows, "2026-11-01T07:30:00Z").frozen(), "02:30 EST");
    assert_eq!(first.closes_at, Some(ts("2026-11-02T06:30:00Z")), "01:30 EST the next night");
}

#[test]
fn overlapping_windows_from_a_rollout_a_class_and_the_cluster_open_when_the_last_one_ends() {
    let calendar = Calendar::new(
        [("production".to_owned(), vec![every("0 11 * * *", "2h", "UTC", "lunch deploys")])],
        [("audit".to_owned(), vec![once("2026-06-01T12:30:00Z", "2026-06-01T14:00:00Z", "audit")])],
    );
    let rollout = [once("2026-06-01T10:00:00Z", "2026-06-01T12:00:00Z", "release review")];
    let verdict = calendar.for_batch(&rollout, ["production", "staging"]).check(ts("2026-06-01T11:30:00Z"));
    assert_eq!(verdict.covering.len(), 2, "{:?}", verdict.covering);
    assert!(verdict.covering[0].starts_with("Rollout: release review"), "{:?}", verdict.covering);
    assert!(verdict.covering[1].starts_with("EnvironmentClass production: lunch deploys (0 11 * * * for 2h in UTC)"));
    assert_eq!(verdict.opens_at, Some(ts("2026-06-01T14:00:00Z")), "12:00 → 13:00 → 14:00, one freeze");
    assert_eq!(verdict.closes_at, Some(ts("2026-06-02T11:00:00Z")), "the class's window the next day");
    let message = verdict.message("the next batch");
    assert!(message.contains("the next batch waits until 2026-06-01T14:00:00Z"), "{message}");

    // A batch of other classes is held only by the rollout's and the cluster's windows.
    let staging = calendar.for_batch(&rollout, ["staging"]).check(ts("2026-06-01T12:15:00Z"));
    assert!(!staging.frozen(), "{:?}", staging.covering);
    assert_eq!(staging.closes_at, Some(ts("2026-06-01T12:30:00Z")), "the cluster's freeze");
    // A class re-render is held by the class's and the cluster's windows, not a rollout's.
    let rerender = calendar.for_class("production").check(ts("2026-06-01T10:30:00Z"));
    assert!(!rerender.frozen());
    assert!(calendar.for_class("production").check(ts("2026-06-01T13:30:00Z")).frozen(), "the cluster's freeze");
    assert!(!calendar.for_class("staging").check(ts("2026-06-01T11:30:00Z")).frozen());
}

#[test]
fn touching_windows_are_one_freeze_and_a_window_ending_now_is_open() {
    let windows = [
        once("2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z", "first"),
        once("2026-06-01T11:00:00Z", "2026-06-01T12:00:00Z", "second"),
    ];
    let verdict = check(&windows, "2026-06-01T10:00:00Z");
    assert_eq!(verdict.covering.len(), 1);
    assert_eq!(verdict.opens_at, Some(ts("2026-06-01T12:00:00Z")));
    assert_eq!(verdict.closes_at, None, "nothing after that");
    assert!(!check(&windows, "2026-06-01T12:00:00Z").frozen(), "the end is exclusive");
    assert_eq!(check(&windows, "2026-06-01T09:00:00Z").closes_at, Some(ts("2026-06-01T10:00:00Z")));
}

#[test]
fn a_recurring_freeze_longer_than_its_period_never_opens_and_says_so() {
    let windows = [every("* * * * *", "2m", "UTC", "always")];
    let verdict = check(&windows, "2026-06-01T10:00:30Z");
    assert!(verdict.frozen());
    assert_eq!(verdict.opens_at, None);
    assert!(verdict.message("the next batch").contains("no end is known"), "{}", verdict.message("x"));
}

#[test]
fn an_unreadable_window_holds_with_no_end_and_names_its_field() {
    let mut bad_zone = every("0 17 * * 5", "64h", "Europe/Berlln", "typo");
    let calendar = Calendar::new([], [("eoy".to_owned(), vec![bad_zone.clone()])]);
    let verdict = calendar.for_batch(&[], []).check(ts("2026-06-03T10:00:00Z"));
    assert!(verdict.frozen(), "fails safe: a Wednesday counts as frozen");
    assert_eq!(verdict.opens_at, None);
    assert!(
        verdict.covering[0]
            .starts_with("Freeze eoy spec.windows[0].timeZone \"Europe/Berlln\" is not an IANA time zone"),
        "{:?}",
        verdict.covering
    );
    bad_zone.time_zone = Some("Europe/Berlin".to_owned());
    bad_zone.schedule = Some("0 17 * * FRYDAY".to_owned());
    let verdict = check(std::slice::from_ref(&bad_zone), "2026-06-03T10:00:00Z");
    assert!(verdict.covering[0].starts_with("Rollout spec.freezeWindows[0].schedule"), "{:?}", verdict.covering);
}

#[test]
fn problems_name_the_field_of_each_unreadable_window() {
    let mut windows = vec![
        weekend("Europe/Berlin"),
        once("2026-12-20T00:00:00Z", "2027-01-04T00:00:00Z", "end of year"),
        every("0 17 * * 5 2026", "64h", "UTC", "with a year"),
        every("0 17 * * 5", "0s", "UTC", "empty"),
        every("0 17 * * 5", "8785h", "UTC", "too long"),
        every("0 25 * * *", "1h", "UTC", "no such hour"),
        every("0 17 * * 5", "1h", "Mars/Olympus", "nowhere"),
    ];
    windows[0].time_zone = None; // UTC
    let found = problems("spec.freezeWindows", &windows);
    let fields: Vec<&str> = found.iter().map(|p| p.split(' ').next().unwrap_or_default()).collect();
    assert_eq!(
        fields,
        [
            "spec.freezeWindows[2].schedule",
            "spec.freezeWindows[3].duration",
            "spec.freezeWindows[4].duration",
            "spec.freezeWindows[5].schedule",
            "spec.freezeWindows[6].timeZone",
        ],
        "{found:#?}"
    );
    assert!(found[1].contains("more than 0s"), "{found:#?}");
}

#[test]
fn a_verdict_keeps_its_status_bounded() {
    let windows: Vec<FreezeWindow> =
        (0..12).map(|i| once("2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z", &format!("w{i}"))).collect();
    let verdict = check(&windows, "2026-06-01T10:30:00Z");
    assert_eq!(verdict.covering.len(), 12);
    let status = verdict.status();
    assert_eq!(status.windows.len(), 8);
    assert_eq!(status.opens_at, Some(Time(ts("2026-06-01T11:00:00Z"))));
}
