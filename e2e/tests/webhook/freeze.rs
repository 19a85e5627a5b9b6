//! A cluster-wide Freeze Berth cannot read would hold every rollout: the webhook
//! refuses it at `kubectl apply`, naming the field.

use super::*;

#[tokio::test]
async fn a_cluster_freeze_with_an_unknown_time_zone_is_refused_naming_the_field() {
    berth().await;
    let name = format!("fz-{}", suffix());
    let freeze = |zone: &str| {
        format!(
            "apiVersion: berth.dev/v1alpha1
kind: Freeze
metadata: {{name: {name}}}
spec:
  windows: [{{schedule: '0 0 1 1 *', duration: 1m, timeZone: {zone}, reason: e2e}}]
"
        )
    };
    let refused = apply_as("admin", &freeze("Europe/Berlln")).await.expect_err("an unreadable Freeze was admitted");
    assert!(refused.contains("spec.windows[0].timeZone \"Europe/Berlln\" is not an IANA time zone"), "{refused}");
    // Readable, it is admitted (a minute on New Year's Day: it holds nothing today).
    apply_as("admin", &freeze("Europe/Berlin")).await.unwrap_or_else(|e| panic!("{e}"));
    let deleted = cluster().kubectl("admin", &["delete", "freeze", &name], None).await;
    assert!(deleted.success, "{}", deleted.stderr);
}
