//! The `berth` command as a platform engineer runs it: render, write, diff.

use std::{path::Path, process::Command};

fn berth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("berth runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn render_prints_every_file_with_its_repository_path() {
    let out = berth(&["render", "-f", "examples"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("# clusters/prod-eu-west-1/tenants/payments/checkout-prod/application.yaml\n"), "{stdout}");
    assert!(stdout.contains("kind: NetworkPolicy"));
}

#[test]
fn render_out_then_diff_round_trips_and_diff_exits_1_on_change() {
    let checkout = tempfile::tempdir().expect("tempdir");
    let dir = checkout.path().to_string_lossy().into_owned();
    let out = berth(&["render", "-f", "examples", "--out", &dir]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(Path::new(&dir).join("clusters/in-cluster/tenants/payments/checkout-pr-1234/namespace.yaml").is_file());

    let same = berth(&["diff", "-f", "examples", "--gitops", &dir]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));
    assert!(same.stdout.is_empty());

    let file = Path::new(&dir).join("clusters/in-cluster/tenants/payments/checkout-pr-1234/namespace.yaml");
    let edited = std::fs::read_to_string(&file).expect("read").replace("enforce: baseline", "enforce: privileged");
    std::fs::write(&file, edited).expect("write");
    let changed = berth(&["diff", "-f", "examples", "--gitops", &dir]);
    assert_eq!(changed.status.code(), Some(1));
    let diff = text(&changed.stdout);
    assert!(diff.contains("-    pod-security.kubernetes.io/enforce: privileged"), "{diff}");
    assert!(diff.contains("+    pod-security.kubernetes.io/enforce: baseline"), "{diff}");
}

#[test]
fn bad_input_exits_2_with_a_message_naming_the_problem() {
    let out = berth(&["render", "-f", "examples/environmentrequest-preview.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "berth: request payments/checkout-pr-1234 names EnvironmentClass \"preview\", which is not in the given files"
    );
    assert!(out.stdout.is_empty(), "nothing half-rendered is printed");
}

#[test]
fn run_strict_refuses_a_development_configuration_before_touching_git_or_the_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workdir = dir.path().join("clone");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .env_clear()
        .env("BERTH_STRICT", "true")
        .env("KUBECONFIG", dir.path().join("nowhere"))
        .args(["run", "--gitops-remote", "file:///nowhere.git", "--gitops-workdir"])
        .arg(&workdir)
        .args(["--auth-hs256-secret-file", "auth-hs256.secret"])
        .output()
        .expect("berth runs");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("strict mode (--strict, BERTH_STRICT) refuses to start:"), "{stderr}");
    for reason in ["an HS256 bearer secret", "no approval signing key", "webhook TLS is not configured"] {
        assert!(stderr.contains(reason), "{reason}: {stderr}");
    }
    assert!(!workdir.exists(), "it cloned before refusing");
}
