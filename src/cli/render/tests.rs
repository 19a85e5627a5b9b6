use std::path::{Path, PathBuf};

use super::*;
use crate::testing::{example_text, examples_dir as examples};

fn example_tree() -> BTreeMap<String, String> {
    let inputs = Inputs::read(&[examples()]).expect("examples read");
    rendered_tree(&inputs, &RenderOptions::default()).expect("examples render")
}

#[test]
fn renders_every_example_request_into_its_layout_folder() {
    let tree = example_tree();
    let folders: std::collections::BTreeSet<&str> =
        tree.keys().filter_map(|p| p.rsplit_once('/').map(|(folder, _)| folder)).collect();
    assert_eq!(
        folders.into_iter().collect::<Vec<_>>(),
        [
            "clusters/in-cluster/tenants/payments/checkout-pr-1234",
            "clusters/prod-eu-west-1/tenants/payments/checkout-prod",
            "clusters/staging-eu-west-1/tenants/payments/checkout-staging",
        ]
    );
    assert!(tree.contains_key("clusters/in-cluster/tenants/payments/checkout-pr-1234/application.yaml"));
    let printed = print_tree(&tree);
    assert!(printed.starts_with("# clusters/in-cluster/tenants/payments/checkout-pr-1234/application.yaml\n"));
    assert_eq!(
        printed.matches("\n---\n").count() + 1,
        tree.len() + 2 * 3,
        "each env's rolebindings.yaml holds three documents (owners, members, viewers)"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write input");
    path
}

#[test]
fn a_request_naming_a_class_not_given_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let request = example_text("environmentrequest-preview.yaml");
    let tenant = example_text("tenant-payments.yaml");
    let file = write(dir.path(), "in.yaml", &format!("{request}---\n{tenant}"));
    let inputs = Inputs::read(&[file]).expect("reads");
    let err = rendered_tree(&inputs, &RenderOptions::default()).expect_err("class missing");
    assert_eq!(
        err.to_string(),
        "request payments/checkout-pr-1234 names EnvironmentClass \"preview\", which is not in the given files"
    );
}

#[test]
fn malformed_yaml_names_the_file_and_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "bad.yaml", "apiVersion: v1\nkind: ConfigMap\n---\nkind: [unclosed\n");
    let err = Inputs::read(std::slice::from_ref(&file)).expect_err("bad yaml");
    let message = err.to_string();
    assert!(message.contains("bad.yaml") && message.contains("document 2 is not valid YAML"), "{message}");
}

#[test]
fn an_invalid_berth_object_is_reported_with_its_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "req.yaml",
        "apiVersion: berth.dev/v1alpha1\nkind: EnvironmentRequest\nmetadata: {name: x, namespace: y}\nspec: {tenant: t, class: c}\n",
    );
    let err = Inputs::read(&[file]).expect_err("missing app");
    let message = err.to_string();
    assert!(message.contains("document 1 is not a valid EnvironmentRequest") && message.contains("app"), "{message}");
}

#[test]
fn other_kinds_are_skipped_and_no_request_means_nothing_to_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    let inputs = Inputs::read(&[file]).expect("reads");
    assert!(matches!(rendered_tree(&inputs, &RenderOptions::default()), Err(CliError::NothingToRender)));
}

#[test]
fn a_missing_file_is_a_read_error_with_its_path() {
    let err = Inputs::read(&[PathBuf::from("/nonexistent/berth.yaml")]).expect_err("missing");
    assert!(err.to_string().starts_with("cannot read /nonexistent/berth.yaml:"), "{err}");
}

#[test]
fn diff_is_empty_for_a_matching_checkout_and_shows_every_kind_of_change() {
    let tree = example_tree();
    let checkout = tempfile::tempdir().expect("tempdir");
    assert!(diff_tree(&tree, checkout.path()).expect("diff").contains("+apiVersion: v1"), "empty checkout: all added");

    write_tree(&tree, checkout.path()).expect("write tree");
    assert_eq!(diff_tree(&tree, checkout.path()).expect("diff"), "", "a matching checkout has no diff");

    let folder = checkout.path().join("clusters/in-cluster/tenants/payments/checkout-pr-1234");
    let quota = folder.join("resourcequota.yaml");
    let edited = std::fs::read_to_string(&quota).expect("quota").replace("pods: '20'", "pods: '99'");
    std::fs::write(&quota, edited).expect("edit");
    std::fs::write(folder.join("stray.yaml"), "kind: Stray\n").expect("stray");
    // A folder Berth does not render is none of its business.
    std::fs::create_dir_all(checkout.path().join("clusters/other")).expect("dir");
    std::fs::write(checkout.path().join("clusters/other/keep.yaml"), "x: 1\n").expect("other");

    let diff = diff_tree(&tree, checkout.path()).expect("diff");
    assert!(diff.contains("-    pods: '99'\n+    pods: '20'\n"), "{diff}");
    assert!(diff.contains("--- a/clusters/in-cluster/tenants/payments/checkout-pr-1234/stray.yaml"), "{diff}");
    assert!(diff.contains("-kind: Stray"), "{diff}");
    assert!(!diff.contains("keep.yaml"), "{diff}");
}
