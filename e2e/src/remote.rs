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
