//! Reading the watched branch's history back: which commit carries given trailers, and
//! whether a commit is on the branch. This is how a new leader proves that a batch it
//! cannot remember committing did land, and how pull-request mode learns of a merge.

use git2::{Oid, Repository, Sort};

/// The newest commit among the first `depth` reachable from `head` (newest first, all
/// parents, so commits merged from promotion branches count) whose trailers include
/// every `(key, value)` of `wanted`. Keys compare without regard to case, as git's do.
pub(crate) fn find_with_trailers(
    repo: &Repository,
    head: Oid,
    wanted: &[(String, String)],
    depth: usize,
) -> Result<Option<Oid>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
    walk.push(head)?;
    for id in walk.take(depth) {
        let id = id?;
        let commit = repo.find_commit(id)?;
        if has_trailers(&String::from_utf8_lossy(commit.message_bytes()), wanted) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Whether `commit` is `head` or one of its ancestors. A commit the clone does not
/// have is not reachable: everything reachable from the fetched head is in the clone.
pub(crate) fn reachable(repo: &Repository, head: Oid, commit: Oid) -> Result<bool, git2::Error> {
    if head == commit {
        return Ok(true);
    }
    if repo.find_commit(commit).is_err() {
        return Ok(false);
    }
    repo.graph_descendant_of(head, commit)
}

/// Whether the trailer block of `message` holds every pair of `wanted`.
fn has_trailers(message: &str, wanted: &[(String, String)]) -> bool {
    let Ok(trailers) = git2::message_trailers_strs(message) else {
        return false;
    };
    let found: Vec<(&str, &str)> = trailers.iter().collect();
    wanted.iter().all(|(key, value)| found.iter().any(|(k, v)| k.eq_ignore_ascii_case(key) && v == value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn trailers_match_only_in_the_trailer_block_and_all_of_them() {
        let message = "berth: promote\n\n- update c/a [ns/a]\nBerth-Rollout-Step: production/9\n\n\
                       Berth-Rollout: ns/r\nBerth-Rollout-Step: production/3\nBerth-Request: ns/a\n";
        assert!(has_trailers(message, &pairs(&[("Berth-Rollout", "ns/r"), ("berth-rollout-step", "production/3")])));
        assert!(!has_trailers(message, &pairs(&[("Berth-Rollout", "ns/r"), ("Berth-Rollout-Step", "production/9")])));
        assert!(!has_trailers(message, &pairs(&[("Berth-Rollout", "ns/r2")])));
        assert!(!has_trailers("berth: no trailers\n\njust text\n", &pairs(&[("Berth-Rollout", "ns/r")])));
    }
}
