//! Another client pushing to a bare repository's `main` in a tight loop, as CI on a busy
//! monorepo does. Shared by the writer tests, the GitOps benchmark and the operator e2e.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running pusher; [`BusyPusher::stop`] ends it and returns its commits.
pub struct BusyPusher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<String>>,
}

impl BusyPusher {
    /// Starts pushing to `main` of the bare repository at `remote` (which must have a
    /// `main`). Each push adds `ci/<n>.txt` on the head it read and moves the branch
    /// with a compare-and-swap under git's ref lock, as `git receive-pack` does; a lost
    /// race is tried again at once, and after each push the pusher rests for `pause`.
    pub fn start(remote: PathBuf, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || push_until(&remote, pause, &flag));
        Self { stop, thread }
    }

    /// Stops pushing; returns the commits that landed, oldest first.
    pub fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("pusher thread")
    }
}

fn push_until(remote: &std::path::Path, pause: Duration, stop: &AtomicBool) -> Vec<String> {
    let repo = git2::Repository::open_bare(remote).expect("remote");
    let signature = git2::Signature::now("CI", "ci@example.com").expect("signature");
    let mut pushed = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let head = repo.refname_to_id("refs/heads/main").expect("main");
        let parent = repo.find_commit(head).expect("head");
        let tree = parent.tree().expect("tree");
        let ci = tree.get_name("ci").map(|entry| repo.find_tree(entry.id()).expect("ci tree"));
        let mut folder = repo.treebuilder(ci.as_ref()).expect("treebuilder");
        let blob = repo.blob(format!("{}\n", pushed.len()).as_bytes()).expect("blob");
        folder.insert(format!("{}.txt", pushed.len()), blob, 0o100644).expect("insert");
        let mut root = repo.treebuilder(Some(&tree)).expect("treebuilder");
        root.insert("ci", folder.write().expect("write"), 0o040000).expect("insert");
        let tree = repo.find_tree(root.write().expect("write")).expect("tree");
        let commit = repo.commit(None, &signature, &signature, "ci", &tree, &[&parent]).expect("commit");
        if repo.reference_matching("refs/heads/main", commit, true, head, "ci push").is_ok() {
            pushed.push(commit.to_string());
            std::thread::sleep(pause);
        }
    }
    pushed
}
