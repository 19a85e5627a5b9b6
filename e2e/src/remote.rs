//! Reading the bare GitOps remote the operator pushes to, as the e2e suites check it.

use std::{collections::BTreeMap, path::Path};

/// Files under `folder` at the head of `main` in the bare remote; `None` when absent.
pub fn files_at_head(remote: &Path, folder: &str) -> Option<BTreeMap<String, String>> {
    let repo = git2::Repository::open_bare(remote).ok()?;
    let head = repo.find_reference("refs/heads/main").ok()?.peel_to_commit().ok()?;
    let tree = head.tree().ok()?.get_path(Path::new(folder)).ok()?.to_object(&repo).ok()?.peel_to_tree().ok()?;
    let mut files = BTreeMap::new();
    for entry in tree.iter() {
        let blob = entry.to_object(&repo).ok()?.peel_to_blob().ok()?;
        files.insert(entry.name().ok()?.to_owned(), String::from_utf8_lossy(blob.content()).into_owned());
    }
    Some(files)
}

/// Names of the folders directly under `folder` at the head of `main`, sorted; empty
/// when `folder` is absent.
pub fn folders_at_head(remote: &Path, folder: &str) -> Vec<String> {
    let names = || -> Option<Vec<String>> {
        let repo = git2::Repository::open_bare(remote).ok()?;
        let head = repo.find_reference("refs/heads/main").ok()?.peel_to_commit().ok()?;
        let tree = head.tree().ok()?.get_path(Path::new(folder)).ok()?.to_object(&repo).ok()?.peel_to_tree().ok()?;
        let names = tree
            .iter()
            .filter(|entry| entry.kind() == Some(git2::ObjectType::Tree))
            .filter_map(|entry| entry.name().ok().map(str::to_owned))
            .collect();
        Some(names)
    };
    let mut names = names().unwrap_or_default();
    names.sort();
    names
}

/// Commits `content` at `path` on `main` of the bare remote, as another git user would
/// push it (a compare-and-swap on the branch, so a concurrent push is never lost);
/// creates `main` when the remote has none yet.
pub fn commit_file(remote: &Path, path: &str, content: &str) -> Result<(), git2::Error> {
    let repo = git2::Repository::open_bare(remote)?;
    let parent = match repo.find_reference("refs/heads/main") {
        Ok(reference) => Some(reference.peel_to_commit()?),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    let base = match &parent {
        Some(parent) => parent.tree()?,
        None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
    };
    let blob = repo.blob(content.as_bytes())?;
    let tree_id =
        git2::build::TreeUpdateBuilder::new().upsert(path, blob, git2::FileMode::Blob).create_updated(&repo, &base)?;
    let tree = repo.find_tree(tree_id)?;
    let person = git2::Signature::now("someone", "someone@example.com")?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let commit = repo.commit(None, &person, &person, &format!("add {path}"), &tree, &parents)?;
    match &parent {
        Some(parent) => repo.reference_matching("refs/heads/main", commit, true, parent.id(), "e2e: commit")?,
        // Not forced: fails if someone created the branch meanwhile.
        None => repo.reference("refs/heads/main", commit, false, "e2e: first commit")?,
    };
    Ok(())
}

/// Merges every branch named `prefix*` that `main` does not hold yet into `main` of
/// the bare remote, as a person merging Berth's pull requests would: a fast-forward
/// when possible, else a merge commit (a branch that conflicts is left open).
/// Returns the branches merged.
pub fn merge_branches(remote: &Path, prefix: &str) -> Result<Vec<String>, git2::Error> {
    let repo = git2::Repository::open_bare(remote)?;
    let mut merged = Vec::new();
    let branches: Vec<(String, git2::Oid)> = repo
        .references_glob(&format!("refs/heads/{prefix}*"))?
        .filter_map(Result::ok)
        .filter_map(|r| Some((r.name().ok()?.to_owned(), r.target()?)))
        .collect();
    for (name, theirs) in branches {
        let ours = match repo.find_reference("refs/heads/main") {
            Ok(main) => main.target().ok_or_else(|| git2::Error::from_str("main is symbolic"))?,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                // The first merge creates the watched branch (not forced: a push may have).
                if repo.reference("refs/heads/main", theirs, false, "e2e: first merge").is_ok() {
                    merged.push(name);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if ours == theirs || repo.graph_descendant_of(ours, theirs)? {
            continue;
        }
        let target = if repo.graph_descendant_of(theirs, ours)? {
            theirs
        } else {
            let (ours_commit, theirs_commit) = (repo.find_commit(ours)?, repo.find_commit(theirs)?);
            let mut index = repo.merge_commits(&ours_commit, &theirs_commit, None)?;
            if index.has_conflicts() {
                continue;
            }
            let tree = repo.find_tree(index.write_tree_to(&repo)?)?;
            let person = git2::Signature::now("reviewer", "reviewer@example.com")?;
            let message = format!("Merge branch '{}'", name.trim_start_matches("refs/heads/"));
            repo.commit(None, &person, &person, &message, &tree, &[&ours_commit, &theirs_commit])?
        };
        // A compare-and-swap: a push that landed meanwhile wins, the merge waits a turn.
        if repo.reference_matching("refs/heads/main", target, true, ours, "e2e: merge").is_ok() {
            merged.push(name);
        }
    }
    Ok(merged)
}

/// Commits on branches named `prefix*` of the bare remote, with their messages.
pub fn branch_heads(remote: &Path, prefix: &str) -> Vec<(String, String)> {
    let Ok(repo) = git2::Repository::open_bare(remote) else {
        return Vec::new();
    };
    let Ok(references) = repo.references_glob(&format!("refs/heads/{prefix}*")) else {
        return Vec::new();
    };
    references
        .filter_map(Result::ok)
        .filter_map(|r| {
            let commit = r.peel_to_commit().ok()?;
            Some((commit.id().to_string(), commit.message().unwrap_or_default().to_owned()))
        })
        .collect()
}

/// Whether `commit` is on `main` of the bare remote (a promotion branch merged).
pub fn merged_into_main(remote: &Path, commit: &str) -> bool {
    let check = || -> Option<bool> {
        let repo = git2::Repository::open_bare(remote).ok()?;
        let main = repo.refname_to_id("refs/heads/main").ok()?;
        let commit = git2::Oid::from_str(commit).ok()?;
        Some(main == commit || repo.graph_descendant_of(main, commit).ok()?)
    };
    check().unwrap_or(false)
}
