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
