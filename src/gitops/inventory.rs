//! What environment folders a tree holds: the record of what is deployed, read back.
//!
//! The layout is `clusters/<cluster>/tenants/<tenant>/<request>/` (see [`super::layout`]).
//! Each folder is listed with the content of one marker file the caller names (Berth's
//! controllers read the owning request from it), so a caller can tell folders it owns
//! from folders someone else put there. Reading is O(folders): one tree lookup per level
//! and one blob per folder.

use git2::{ObjectType, Oid, Repository, Tree};

use super::layout::RepoPath;

/// One environment folder at the remote head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentFolder {
    pub path: RepoPath,
    /// The marker file's content, `None` when the folder has no such file.
    pub marker: Option<Vec<u8>>,
}

/// Every `clusters/*/tenants/*/*` folder of the tree `root`, with `marker`'s content.
/// Entries that are not folders, or whose names the layout would refuse, are skipped:
/// they are not Berth's.
pub(crate) fn environment_folders(
    repo: &Repository,
    root: Oid,
    marker: &str,
) -> Result<Vec<EnvironmentFolder>, git2::Error> {
    let root = repo.find_tree(root)?;
    let mut found = Vec::new();
    let Some(clusters) = subtree(repo, &root, "clusters")? else {
        return Ok(found);
    };
    for (cluster, cluster_tree) in subtrees(repo, &clusters)? {
        let Some(tenants) = subtree(repo, &cluster_tree, "tenants")? else {
            continue;
        };
        for (tenant, tenant_tree) in subtrees(repo, &tenants)? {
            for (request, folder) in subtrees(repo, &tenant_tree)? {
                let segments = ["clusters", cluster.as_str(), "tenants", tenant.as_str(), request.as_str()];
                let Ok(path) = RepoPath::from_segments(segments) else {
                    continue;
                };
                let marker = match folder.get_name(marker) {
                    Some(entry) if entry.kind() == Some(ObjectType::Blob) => {
                        Some(repo.find_blob(entry.id())?.content().to_vec())
                    }
                    _ => None,
                };
                found.push(EnvironmentFolder { path, marker });
            }
        }
    }
    Ok(found)
}

/// The folder `name` directly under `tree`, if there is one.
fn subtree<'r>(repo: &'r Repository, tree: &Tree<'_>, name: &str) -> Result<Option<Tree<'r>>, git2::Error> {
    match tree.get_name(name) {
        Some(entry) if entry.kind() == Some(ObjectType::Tree) => Ok(Some(repo.find_tree(entry.id())?)),
        _ => Ok(None),
    }
}

/// The folders directly under `tree`, by name (names that are not UTF-8 are skipped).
fn subtrees<'r>(repo: &'r Repository, tree: &Tree<'_>) -> Result<Vec<(String, Tree<'r>)>, git2::Error> {
    let mut folders = Vec::new();
    for entry in tree.iter() {
        if entry.kind() != Some(ObjectType::Tree) {
            continue;
        }
        let Ok(name) = entry.name() else { continue };
        folders.push((name.to_owned(), repo.find_tree(entry.id())?));
    }
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gitops::{
        ChangeReason,
        change::{Change, Operation},
        tree,
    };

    fn put(path: &str, files: &[(&str, &str)]) -> Change {
        let files: BTreeMap<String, Vec<u8>> =
            files.iter().map(|(name, content)| ((*name).to_owned(), content.as_bytes().to_vec())).collect();
        Change {
            path: RepoPath::parse(path).expect("valid path"),
            operation: Operation::Put(files),
            reason: ChangeReason::new("t/r".to_owned(), Some(1), "test".to_owned()),
        }
    }

    #[test]
    fn lists_every_environment_folder_with_its_marker_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let changes = [
            put("clusters/in-cluster/tenants/pay/web", &[("namespace.yaml", "owner: pay/web"), ("a.yaml", "x")]),
            put("clusters/in-cluster/tenants/pay/api", &[("other.yaml", "y")]),
            put("clusters/east/tenants/shop/cart", &[("namespace.yaml", "owner: shop/cart")]),
            // Not the layout: beside `tenants/`, files where folders belong, or outside `clusters/`.
            put("clusters/in-cluster/extra", &[("readme.yaml", "z")]),
            put("clusters/west/tenants/shop", &[("readme.yaml", "z")]),
            put("apps/in-cluster/tenants/pay/web", &[("namespace.yaml", "owner: pay/web")]),
        ];
        let root =
            tree::apply(&repo, None, &changes, &crate::gitops::change::WrittenFolders::default()).expect("tree").tree;
        let mut folders = environment_folders(&repo, root, "namespace.yaml").expect("list");
        folders.sort_by(|a, b| a.path.cmp(&b.path));
        let listed: Vec<(&str, Option<&[u8]>)> =
            folders.iter().map(|f| (f.path.as_str(), f.marker.as_deref())).collect();
        assert_eq!(
            listed,
            vec![
                ("clusters/east/tenants/shop/cart", Some(&b"owner: shop/cart"[..])),
                ("clusters/in-cluster/tenants/pay/api", None),
                ("clusters/in-cluster/tenants/pay/web", Some(&b"owner: pay/web"[..])),
            ]
        );
    }

    #[test]
    fn an_empty_tree_has_no_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let root = tree::apply(&repo, None, &[], &crate::gitops::change::WrittenFolders::default()).expect("tree").tree;
        assert_eq!(environment_folders(&repo, root, "namespace.yaml").expect("list"), Vec::new());
    }
}
