//! Commit messages that make the repository history an audit trail.
//!
//! Each commit lists every folder it changed and carries git trailers
//! (`Berth-Request: ns/name`, `Berth-Generation: N`), one pair per request, so
//! `git log --format=%(trailers)` answers "which request caused this, at which spec".

use super::change::Change;

/// Longest summary kept in a commit message line.
const MAX_SUMMARY: usize = 200;
/// Longest request key kept in a trailer.
const MAX_REQUEST: usize = 320;

/// Formats the message for a commit that applies `changes`.
pub(crate) fn commit_message(changes: &[Change]) -> String {
    let mut message = subject(changes);
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
    let trailers = trailers(changes);
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
fn trailers(changes: &[Change]) -> String {
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
}
