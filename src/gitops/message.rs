//! Commit messages that make the repository history an audit trail.
//!
//! Each commit lists every folder it changed and carries git trailers
//! (`Berth-Request: ns/name`, `Berth-Generation: N`), one pair per request, so
//! `git log --format=%(trailers)` answers "which request caused this, at which spec".
//! An exclusive batch ([`super::BatchCommit`]) brings its own subject and trailers
//! (`Berth-Rollout`, …), which come before the request pairs.

use super::change::Change;

/// Longest summary kept in a commit message line.
const MAX_SUMMARY: usize = 200;
/// Longest request key kept in a trailer.
const MAX_REQUEST: usize = 320;
/// Longest subject a batch may give; longer ones are cut.
const MAX_SUBJECT: usize = 200;
/// Longest value of a trailer a batch gives; longer ones are cut.
const MAX_TRAILER: usize = 320;
/// Trailers the writer adds per change; a batch may not give them itself.
const PER_CHANGE_TRAILERS: [&str; 2] = ["Berth-Request", "Berth-Generation"];

/// Formats the message for a commit that applies `changes`.
pub(crate) fn commit_message(changes: &[Change]) -> String {
    compose(&subject(changes), changes, &[])
}

/// Formats the message of an exclusive batch: its subject, the change list, its own
/// `trailers` in order, then the request trailers of its changes.
pub(crate) fn batch_message(subject: &str, changes: &[Change], trailers: &[(String, String)]) -> String {
    let own: Vec<(String, String)> = trailers.iter().map(|(k, v)| (k.clone(), trailer_value(v))).collect();
    compose(&batch_subject(subject), changes, &own)
}

/// A batch subject as written: one line, cut to length; empty when there is nothing to say.
pub(crate) fn batch_subject(subject: &str) -> String {
    one_line(subject, MAX_SUBJECT)
}

/// A trailer value as written (one line, cut to length), so a search for the value a
/// caller gave finds what the writer wrote.
pub(crate) fn trailer_value(value: &str) -> String {
    one_line(value, MAX_TRAILER)
}

/// Why a trailer a batch gives cannot be written: keys are `Berth-` followed by letters
/// and dashes (so they cannot collide with git's own or forge another tool's), the
/// per-change keys are the writer's, and a value must say something.
pub(crate) fn check_trailer(key: &str, value: &str) -> Result<(), String> {
    let name = key.strip_prefix("Berth-").unwrap_or_default();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic() || c == '-') {
        return Err(format!("trailer key {key:?} must be \"Berth-\" followed by letters and dashes"));
    }
    if PER_CHANGE_TRAILERS.iter().any(|own| own.eq_ignore_ascii_case(key)) {
        return Err(format!("trailer {key} is written by the writer, one per change"));
    }
    if trailer_value(value).is_empty() {
        return Err(format!("trailer {key} has an empty value"));
    }
    Ok(())
}

fn compose(subject: &str, changes: &[Change], own_trailers: &[(String, String)]) -> String {
    let mut message = subject.to_owned();
    message.push_str("\n\n");
    for change in changes {
        message.push_str("- ");
        message.push_str(change.operation.verb());
        message.push(' ');
        message.push_str(change.path.as_str());
        let summary = one_line(&change.reason.summary, MAX_SUMMARY);
        if !summary.is_empty() {
            message.push_str(": ");
            message.push_str(&summary);
        }
        let request = one_line(&change.reason.request, MAX_REQUEST);
        if !request.is_empty() {
            message.push_str(" [");
            message.push_str(&request);
            if let Some(generation) = change.reason.generation {
                message.push_str(&format!(", generation {generation}"));
            }
            message.push(']');
        }
        message.push('\n');
    }
    let mut trailers: String = own_trailers.iter().map(|(key, value)| format!("{key}: {value}\n")).collect();
    trailers.push_str(&request_trailers(changes));
    if !trailers.is_empty() {
        message.push('\n');
        message.push_str(&trailers);
    }
    message
}

fn subject(changes: &[Change]) -> String {
    match changes {
        [] => "berth: no changes".to_owned(),
        [only] => format!("berth: {} {}", only.operation.verb(), only.path),
        many => {
            let updated = many.iter().filter(|c| c.operation.verb() == "update").count();
            let removed = many.len() - updated;
            let mut parts = Vec::new();
            if updated > 0 {
                parts.push(format!("update {updated}"));
            }
            if removed > 0 {
                parts.push(format!("remove {removed}"));
            }
            format!("berth: {} environment folders", parts.join(", "))
        }
    }
}

/// One `Berth-Request` (and `Berth-Generation` when known) per distinct request and
/// generation, in the order the changes arrived.
fn request_trailers(changes: &[Change]) -> String {
    let mut seen: Vec<(String, Option<i64>)> = Vec::new();
    let mut out = String::new();
    for change in changes {
        let request = one_line(&change.reason.request, MAX_REQUEST);
        if request.is_empty() {
            continue;
        }
        let key = (request, change.reason.generation);
        if seen.contains(&key) {
            continue;
        }
        out.push_str(&format!("Berth-Request: {}\n", key.0));
        if let Some(generation) = key.1 {
            out.push_str(&format!("Berth-Generation: {generation}\n"));
        }
        seen.push(key);
    }
    out
}

/// Collapses whitespace and control characters so user text cannot add lines (and
/// thus forge trailers) to the message, and bounds its length.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gitops::change::{ChangeReason, Operation};
    use crate::gitops::layout::RepoPath;

    fn change(path: &str, op: Operation, request: &str, generation: Option<i64>, summary: &str) -> Change {
        Change {
            path: RepoPath::parse(path).expect("valid"),
            operation: op,
            reason: ChangeReason::new(request, generation, summary),
        }
    }

    #[test]
    fn single_change() {
        let msg = commit_message(&[change(
            "clusters/dev/tenants/a/web",
            Operation::Put(BTreeMap::new()),
            "team-a/web",
            Some(3),
            "provision from class small",
        )]);
        assert_eq!(
            msg,
            "berth: update clusters/dev/tenants/a/web\n\n\
             - update clusters/dev/tenants/a/web: provision from class small [team-a/web, generation 3]\n\n\
             Berth-Request: team-a/web\nBerth-Generation: 3\n"
        );
    }

    #[test]
    fn batch_lists_every_change_and_one_trailer_pair_per_request() {
        let msg = commit_message(&[
            change("c/a", Operation::Put(BTreeMap::new()), "ns/a", Some(1), "x"),
            change("c/b", Operation::Remove, "ns/b", None, ""),
            change("c/c", Operation::Put(BTreeMap::new()), "ns/a", Some(1), "y"),
        ]);
        assert!(msg.starts_with("berth: update 2, remove 1 environment folders\n\n"), "{msg}");
        assert!(msg.contains("- remove c/b [ns/b]\n"), "{msg}");
        assert!(msg.ends_with("\n\nBerth-Request: ns/a\nBerth-Generation: 1\nBerth-Request: ns/b\n"), "{msg}");
        assert_eq!(msg.matches("Berth-Request: ns/a").count(), 1);
    }

    #[test]
    fn user_text_cannot_forge_trailers() {
        let msg = commit_message(&[change(
            "c/a",
            Operation::Remove,
            "ns/a\nBerth-Request: evil/x",
            None,
            "line one\n\nSigned-off-by: mallory",
        )]);
        assert!(!msg.contains("\nBerth-Request: evil"), "{msg}");
        assert!(!msg.contains("\nSigned-off-by"), "{msg}");
        assert_eq!(msg.lines().filter(|l| l.starts_with("Berth-Request:")).count(), 1);
    }

    #[test]
    fn long_summaries_are_cut() {
        let long = "x".repeat(1000);
        let line = one_line(&long, MAX_SUMMARY);
        assert_eq!(line.chars().count(), MAX_SUMMARY + 1);
    }

    #[test]
    fn a_batch_has_its_subject_then_its_trailers_then_one_request_pair_per_change() {
        let trailers = [
            ("Berth-Rollout".to_owned(), "payments/checkout-v1-9-0".to_owned()),
            ("Berth-Rollout-Step".to_owned(), "production/3".to_owned()),
            ("Berth-Revision".to_owned(), "v1.9.0\nBerth-Request: evil/x".to_owned()),
        ];
        let msg = batch_message(
            "berth: promote checkout v1.9.0 to 2 environments\n(production 3/10)",
            &[
                change("c/a", Operation::Put(BTreeMap::new()), "ns/a", Some(4), "promote to v1.9.0"),
                change("c/b", Operation::Remove, "ns/b", None, "retire"),
            ],
            &trailers,
        );
        assert_eq!(
            msg,
            "berth: promote checkout v1.9.0 to 2 environments (production 3/10)\n\n\
             - update c/a: promote to v1.9.0 [ns/a, generation 4]\n\
             - remove c/b: retire [ns/b]\n\n\
             Berth-Rollout: payments/checkout-v1-9-0\n\
             Berth-Rollout-Step: production/3\n\
             Berth-Revision: v1.9.0 Berth-Request: evil/x\n\
             Berth-Request: ns/a\nBerth-Generation: 4\nBerth-Request: ns/b\n"
        );
        let parsed = git2::message_trailers_strs(&msg).expect("trailers");
        let keys: Vec<&str> = parsed.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "Berth-Rollout",
                "Berth-Rollout-Step",
                "Berth-Revision",
                "Berth-Request",
                "Berth-Generation",
                "Berth-Request"
            ]
        );
    }

    #[test]
    fn a_batch_may_only_give_berth_trailers_with_a_value() {
        assert_eq!(check_trailer("Berth-Rollback-Of", "0123abc"), Ok(()));
        for (key, value, why) in [
            ("Signed-off-by", "x", "must be \"Berth-\""),
            ("Berth-", "x", "must be \"Berth-\""),
            ("Berth-Step 2", "x", "must be \"Berth-\""),
            ("Berth-Step:", "x", "must be \"Berth-\""),
            ("Berth-Step\nEvil", "x", "must be \"Berth-\""),
            ("berth-rollout", "x", "must be \"Berth-\""),
            ("Berth-Request", "ns/a", "one per change"),
            ("berth-generation", "1", "must be \"Berth-\""),
            ("Berth-generation", "1", "one per change"),
            ("Berth-Revision", " \n ", "empty value"),
        ] {
            let refusal = check_trailer(key, value).expect_err(key);
            assert!(refusal.contains(why), "{key}: {refusal}");
        }
        assert_eq!(trailer_value(&"v".repeat(1000)).chars().count(), MAX_TRAILER + 1);
    }
}
