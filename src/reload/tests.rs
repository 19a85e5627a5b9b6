use std::{fs, os::unix::fs::symlink, path::Path, time::Duration};

use super::*;

/// Builds from `path`: its text, refused when it does not start with `ok`.
fn text(path: &Path) -> Arc<Reloading<String>> {
    let file = path.to_owned();
    Reloading::from_files("test value", vec![path.to_owned()], move || {
        let text = fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        if text.starts_with("ok") { Ok(text) } else { Err(format!("{} is not ok", file.display())) }
    })
    .expect("builds")
}

#[test]
fn a_changed_file_is_swapped_in_and_the_same_content_does_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("value");
    fs::write(&path, "ok one").expect("write");
    let value = text(&path);
    assert!(!value.refresh(), "unchanged files rebuild nothing");
    let held = value.current();
    fs::write(&path, "ok two").expect("write");
    assert!(value.refresh());
    assert_eq!(*value.current(), "ok two");
    assert_eq!(*held, "ok one", "a value already taken stays as it was");
    fs::write(&path, "ok two").expect("rewrite");
    assert!(!value.refresh());
}

#[test]
fn a_use_asks_for_a_check_at_most_once_per_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("value");
    fs::write(&path, "ok one").expect("write");
    let value = text(&path);
    fs::write(&path, "ok two").expect("write");
    assert!(value.refresh_at_most_every(Duration::from_secs(3600)), "the first ask reads the files");
    assert_eq!(*value.current(), "ok two");
    fs::write(&path, "ok three").expect("write");
    assert!(!value.refresh_at_most_every(Duration::from_secs(3600)), "too soon: the files are not read");
    assert_eq!(*value.current(), "ok two");
    assert!(value.refresh(), "the watcher's own check is not limited");
    assert_eq!(*value.current(), "ok three");
}

#[test]
fn a_broken_or_missing_file_keeps_the_last_good_value_until_it_is_fixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("value");
    fs::write(&path, "ok one").expect("write");
    let value = text(&path);
    fs::write(&path, "half writ").expect("write");
    assert!(!value.refresh());
    assert_eq!(*value.current(), "ok one");
    fs::remove_file(&path).expect("remove");
    assert!(!value.refresh());
    assert_eq!(*value.current(), "ok one");
    fs::write(&path, "ok three").expect("write");
    assert!(value.refresh());
    assert_eq!(*value.current(), "ok three");
}

#[test]
fn the_first_build_fails_as_its_builder_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("value");
    fs::write(&path, "bad").expect("write");
    let file = path.clone();
    let error =
        Reloading::<String>::from_files("test value", vec![path], move || Err(format!("{} bad", file.display())))
            .expect_err("refused");
    assert!(error.ends_with("value bad"), "{error}");
}

/// The layout the kubelet writes for a Secret volume: `<key> -> ..data/<key>`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped folder and swaps `..data`.
fn secret_volume_update(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let target = dir.join(format!("..{version}"));
    fs::create_dir(&target).expect("version folder");
    for (name, content) in files {
        fs::write(target.join(name), content).expect("write");
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).expect("key link");
        }
    }
    let staged = dir.join("..data_tmp");
    symlink(format!("..{version}"), &staged).expect("staged link");
    fs::rename(&staged, dir.join("..data")).expect("swap ..data");
}

#[test]
fn a_secret_volume_update_swapping_the_data_symlink_is_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    secret_volume_update(dir.path(), "v1", &[("token", "ok one")]);
    let value = text(&dir.path().join("token"));
    assert_eq!(*value.current(), "ok one");
    secret_volume_update(dir.path(), "v2", &[("token", "ok two")]);
    assert!(value.refresh());
    assert_eq!(*value.current(), "ok two");
}

#[test]
fn a_watched_folder_counts_its_files_but_not_the_volumes_bookkeeping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().to_owned();
    fs::write(folder.join("a.pem"), "a").expect("write");
    let count = Reloading::from_files("files", vec![folder.clone()], move || {
        fs::read_dir(&folder).map(|d| d.count()).map_err(|e| e.to_string())
    })
    .expect("builds");
    fs::write(dir.path().join(".hidden"), "x").expect("write");
    assert!(!count.refresh(), "dotfiles do not count");
    fs::write(dir.path().join("b.pem"), "b").expect("write");
    assert!(count.refresh());
    assert_eq!(*count.current(), 3);
}

#[tokio::test]
async fn the_watcher_swaps_a_changed_file_in_and_ends_with_its_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("value");
    fs::write(&path, "ok one").expect("write");
    let value = text(&path);
    value.watch(Duration::from_millis(20));
    fs::write(&path, "ok two").expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *value.current() != "ok two" {
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let weak = Arc::downgrade(&value);
    drop(value);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(weak.upgrade().is_none(), "the watcher holds no strong reference");
}

#[test]
fn a_fixed_value_never_reads_files() {
    let value = Reloading::fixed(7);
    assert!(!value.refresh());
    assert_eq!(*value.current(), 7);
    assert_eq!(format!("{value:?}"), "Reloading { paths: [], current: 7 }");
}
