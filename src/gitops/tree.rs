//! Applying declarative changes to a tree with `git2::TreeBuilder`.
//!
//! Trees are built from the previous commit's tree, touching only the folders on the
//! way to a changed path: a commit costs O(changed paths × depth), not O(repository).
//! `index.add_all` would hash every file and writing a tree from the index reads the
//! whole tree on every commit (a lesson from peers). No working tree is checked out.

use std::collections::{BTreeMap, HashSet};

use git2::{FileMode, ObjectType, Oid, Repository};

use super::change::{Change, Operation, WrittenFolders};
use super::layout::RepoPath;

/// What a folder becomes before the changes below it are applied.
enum Replacement<'a> {
    Files(&'a BTreeMap<String, Vec<u8>>, &'a RepoPath),
    Remove(&'a RepoPath),
}

impl Replacement<'_> {
    fn path(&self) -> &RepoPath {
        match self {
            Self::Files(_, path) | Self::Remove(path) => path,
        }
    }
}

/// The changes as a trie over path segments; each modified folder is written once.
#[derive(Default)]
struct Node<'a> {
    replace: Option<Replacement<'a>>,
    children: BTreeMap<&'a str, Node<'a>>,
}

impl<'a> Node<'a> {
    fn insert(&mut self, change: &'a Change) {
        let mut node = self;
        for segment in change.path.segments() {
            node = node.children.entry(segment).or_default();
        }
        node.replace = Some(match &change.operation {
            Operation::Put(files) => Replacement::Files(files, &change.path),
            Operation::Remove => Replacement::Remove(&change.path),
        });
        // A later change to a folder overrides earlier changes below it.
        node.children.clear();
    }
}

/// The result of [`apply`]: the new root tree, and the changed folders whose content
/// really differs from the base (a change may put what is already there).
pub(crate) struct Applied {
    pub(crate) tree: Oid,
    pub(crate) changed: HashSet<RepoPath>,
}

/// Applies `changes` in order on top of the tree `base` (`None`: empty repository)
/// and returns the new root tree id. Folders that end up empty are pruned.
pub(crate) fn apply(
    repo: &Repository,
    base: Option<Oid>,
    changes: &[Change],
    written: &WrittenFolders,
) -> Result<Applied, git2::Error> {
    let mut root = Node::default();
    for change in changes {
        root.insert(change);
    }
    let mut changed = HashSet::new();
    let tree = match build(repo, &root, base, written, &mut Vec::new(), &mut changed)? {
        Some(id) => id,
        None => repo.treebuilder(None)?.write()?,
    };
    Ok(Applied { tree, changed })
}

/// The file a cluster's folder keeps once its last environment is gone: Argo CD's root
/// app points at `clusters/<cluster>`, and a path that disappears is reported missing,
/// so the last environment's objects would never be pruned.
pub const CLUSTER_KEEP_FILE: &str = "README.md";

fn keep_note(cluster: &str) -> String {
    format!(
        "Berth's environments for cluster {cluster} live under tenants/. This file keeps the folder when \
         the last one goes, so Argo CD prunes it instead of reporting the path missing.\n"
    )
}

/// Builds the folder for `node` (at `path`) starting from `base`; `None` means "no
/// folder" (empty). Adds to `changed` each changed folder below whose content differs.
fn build<'a>(
    repo: &Repository,
    node: &'a Node<'a>,
    base: Option<Oid>,
    written: &WrittenFolders,
    path: &mut Vec<&'a str>,
    changed: &mut HashSet<RepoPath>,
) -> Result<Option<Oid>, git2::Error> {
    let start = match &node.replace {
        None => base,
        Some(Replacement::Remove(_)) => None,
        Some(Replacement::Files(files, path)) => {
            let cached = written.borrow().get(*path).copied();
            match cached {
                Some(folder) => folder,
                None => {
                    let folder = write_files(repo, files)?;
                    written.borrow_mut().insert((*path).clone(), folder);
                    folder
                }
            }
        }
    };
    if node.children.is_empty() {
        return Ok(start);
    }
    let start_tree = start.map(|id| repo.find_tree(id)).transpose()?;
    let mut builder = repo.treebuilder(start_tree.as_ref())?;
    for (name, child) in &node.children {
        let child_base =
            builder.get(name)?.filter(|entry| entry.kind() == Some(ObjectType::Tree)).map(|entry| entry.id());
        path.push(name);
        let built = build(repo, child, child_base, written, path, changed);
        path.pop();
        if let (Some(replace), Ok(id)) = (&child.replace, &built)
            && *id != child_base
        {
            changed.insert(replace.path().clone());
        }
        match built? {
            Some(id) => {
                builder.insert(name, id, FileMode::Tree.into())?;
            }
            None => {
                if builder.get(name)?.is_some() {
                    builder.remove(name)?;
                }
            }
        }
    }
    if builder.is_empty()
        && let ["clusters", cluster] = path.as_slice()
    {
        let note = repo.blob(keep_note(cluster).as_bytes())?;
        builder.insert(CLUSTER_KEEP_FILE, note, FileMode::Blob.into())?;
    }
    if builder.is_empty() { Ok(None) } else { builder.write().map(Some) }
}

/// Writes a flat folder of regular files; `None` when there are no files (git has no
/// empty folders).
fn write_files(repo: &Repository, files: &BTreeMap<String, Vec<u8>>) -> Result<Option<Oid>, git2::Error> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut builder = repo.treebuilder(None)?;
    for (name, content) in files {
        let blob = repo.blob(content)?;
        builder.insert(name, blob, FileMode::Blob.into())?;
    }
    builder.write().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::change::ChangeReason;
    use crate::gitops::layout::RepoPath;

    fn put(path: &str, files: &[(&str, &str)]) -> Change {
        Change {
            path: RepoPath::parse(path).expect("valid"),
            operation: Operation::Put(files.iter().map(|(n, c)| ((*n).to_owned(), c.as_bytes().to_vec())).collect()),
            reason: ChangeReason::new("ns/r", None, ""),
        }
    }

    fn remove(path: &str) -> Change {
        Change {
            path: RepoPath::parse(path).expect("valid"),
            operation: Operation::Remove,
            reason: ChangeReason::new("ns/r", None, ""),
        }
    }

    fn apply_fresh(repo: &Repository, base: Option<Oid>, changes: &[Change]) -> Result<Oid, git2::Error> {
        apply(repo, base, changes, &WrittenFolders::default()).map(|applied| applied.tree)
    }

    #[test]
    fn only_folders_whose_content_differs_count_as_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let written = WrittenFolders::default();
        let first =
            apply(&repo, None, &[put("c/x/t/a", &[("a.yaml", "1")]), put("c/x/t/b", &[("b.yaml", "1")])], &written)
                .expect("apply");
        let paths = |applied: &Applied| {
            let mut paths: Vec<String> = applied.changed.iter().map(|p| p.as_str().to_owned()).collect();
            paths.sort();
            paths
        };
        assert_eq!(paths(&first), ["c/x/t/a", "c/x/t/b"]);
        // "a" again as it is, "b" changed, "z" removed though it never existed.
        let changes = [put("c/x/t/a", &[("a.yaml", "1")]), put("c/x/t/b", &[("b.yaml", "2")]), remove("c/x/t/z")];
        let second = apply(&repo, Some(first.tree), &changes, &WrittenFolders::default()).expect("apply");
        assert_eq!(paths(&second), ["c/x/t/b"]);
        let third = apply(&repo, Some(second.tree), &[remove("c/x/t/a")], &written).expect("apply");
        assert_eq!(paths(&third), ["c/x/t/a"]);
    }

    fn files(repo: &Repository, tree: Oid) -> Vec<String> {
        let tree = repo.find_tree(tree).expect("tree");
        let mut out = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                out.push(format!("{dir}{}", entry.name().unwrap_or("?")));
            }
            git2::TreeWalkResult::Ok
        })
        .expect("walk");
        out
    }

    #[test]
    fn put_replaces_the_folder_and_remove_prunes_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let t1 = apply_fresh(
            &repo,
            None,
            &[
                put("c/x/t/a", &[("one.yaml", "1"), ("two.yaml", "2")]),
                put("c/x/t/b", &[("one.yaml", "1")]),
                put("c/y/t/c", &[("one.yaml", "1")]),
            ],
        )
        .expect("apply");
        assert_eq!(files(&repo, t1), ["c/x/t/a/one.yaml", "c/x/t/a/two.yaml", "c/x/t/b/one.yaml", "c/y/t/c/one.yaml"]);
        let t2 = apply_fresh(&repo, Some(t1), &[put("c/x/t/a", &[("three.yaml", "3")])]).expect("apply");
        assert_eq!(files(&repo, t2), ["c/x/t/a/three.yaml", "c/x/t/b/one.yaml", "c/y/t/c/one.yaml"]);
        let t3 = apply_fresh(&repo, Some(t2), &[remove("c/y/t/c")]).expect("apply");
        assert_eq!(files(&repo, t3), ["c/x/t/a/three.yaml", "c/x/t/b/one.yaml"]);
        let root = repo.find_tree(t3).expect("tree");
        let c = repo.find_tree(root.get_name("c").expect("c").id()).expect("tree");
        assert!(c.get_name("y").is_none(), "empty parents are pruned");
    }

    #[test]
    fn same_content_gives_the_same_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let change = put("a/b", &[("f.yaml", "x")]);
        let t1 = apply_fresh(&repo, None, std::slice::from_ref(&change)).expect("apply");
        let t2 = apply_fresh(&repo, Some(t1), &[change]).expect("apply");
        assert_eq!(t1, t2);
        let t3 = apply_fresh(&repo, Some(t1), &[remove("not/there")]).expect("apply");
        assert_eq!(t1, t3);
    }

    #[test]
    fn folders_written_in_an_earlier_try_give_the_same_tree_on_a_new_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let ours = [put("c/t/a", &[("f.yaml", "ours")]), put("c/t/b", &[]), remove("c/t/gone")];
        let written = WrittenFolders::default();
        let first_base = apply_fresh(&repo, None, &[put("c/t/gone", &[("f.yaml", "x")])]).expect("apply");
        apply(&repo, Some(first_base), &ours, &written).expect("first try");
        assert_eq!(written.borrow().len(), 2, "one entry per put, none for the remove");
        // Someone else pushed first: the retry builds on their tree, reusing our folders.
        let theirs = apply_fresh(&repo, Some(first_base), &[put("c/t/z", &[("f.yaml", "theirs")])]).expect("apply");
        let retried = apply(&repo, Some(theirs), &ours, &written).expect("retry").tree;
        assert_eq!(retried, apply_fresh(&repo, Some(theirs), &ours).expect("fresh"));
        assert_eq!(files(&repo, retried), ["c/t/a/f.yaml", "c/t/z/f.yaml"]);
    }

    #[test]
    fn a_cluster_folder_keeps_a_note_when_its_last_environment_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let env = |name: &str| format!("clusters/in-cluster/tenants/team/{name}");
        let t1 = apply_fresh(&repo, None, &[put(&env("a"), &[("f.yaml", "x")]), put(&env("b"), &[("f.yaml", "y")])])
            .expect("apply");
        let t2 = apply_fresh(&repo, Some(t1), &[remove(&env("a"))]).expect("apply");
        assert_eq!(files(&repo, t2), [format!("{}/f.yaml", env("b"))], "no note while environments remain");
        let t3 = apply_fresh(&repo, Some(t2), &[remove(&env("b"))]).expect("apply");
        assert_eq!(files(&repo, t3), ["clusters/in-cluster/README.md"], "Argo CD's root app path stays");
        // The next environment of the cluster lands next to the note.
        let t4 = apply_fresh(&repo, Some(t3), &[put(&env("c"), &[("f.yaml", "z")])]).expect("apply");
        assert_eq!(files(&repo, t4), ["clusters/in-cluster/README.md".to_owned(), format!("{}/f.yaml", env("c"))]);
    }

    #[test]
    fn removing_everything_gives_the_empty_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let t1 = apply_fresh(&repo, None, &[put("a/b", &[("f.yaml", "x")])]).expect("apply");
        let t2 = apply_fresh(&repo, Some(t1), &[remove("a/b")]).expect("apply");
        assert_eq!(repo.find_tree(t2).expect("tree").len(), 0);
        let t3 = apply_fresh(&repo, Some(t1), &[put("a/b", &[])]).expect("apply");
        assert_eq!(t2, t3, "a put without files removes the folder");
    }
}
