//! With the webhook down, Berth's kinds are refused (the configuration fails
//! closed) while kube-system and every other namespace carry on. Its own binary:
//! it takes the webhook away from the whole cluster.

use std::{sync::Mutex, time::Duration};

use berth_e2e::suite::*;
use berth_e2e::webhook;

#[tokio::test]
async fn berth_kinds_fail_closed_and_nothing_else_is_affected() {
    let cluster = cluster();
    cluster.install_crds().await;
    let dir = std::env::temp_dir().join(format!("berth-webhook-down-e2e-{}", std::process::id()));
    let (operator, _setup) = webhook::start_operator(cluster, &dir).await.expect("webhook starts");
    let operator = OPERATOR.get_or_init(|| Mutex::new(operator));
    let (tenant, class) = (format!("tn-{}", suffix()), format!("small-{}", suffix()));
    kubectl_apply(&class_yaml(&class, 1, "")).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_members(&tenant).await;

    operator.lock().unwrap_or_else(|e| e.into_inner()).kill();

    // Berth's own kinds: refused, because no one can check them.
    let request = request_yaml(&tenant, "web", &tenant, &class, "");
    let out = cluster.kubectl("alice", &["apply", "-f", "-"], Some(&request)).await;
    assert!(!out.success, "a request was admitted while the webhook was down");
    assert!(out.stderr.contains("failed calling webhook"), "{}", out.stderr);
    let out =
        cluster.kubectl("admin", &["apply", "-f", "-"], Some(&tenant_yaml(&format!("{tenant}-2"), &[], "{}"))).await;
    assert!(!out.success && out.stderr.contains("failed calling webhook"), "{}", out.stderr);

    // Everything else: untouched, in kube-system, default and the tenant's own namespace.
    for namespace in ["kube-system", "default", tenant.as_str()] {
        let name = format!("probe-{}", suffix());
        let out = cluster.kubectl("admin", &["create", "configmap", &name, "-n", namespace], None).await;
        assert!(out.success, "creating a ConfigMap in {namespace}: {}", out.stderr);
    }
    let out = cluster.kubectl("admin", &["create", "namespace", &format!("plain-{}", suffix())], None).await;
    assert!(out.success, "{}", out.stderr);

    // Back up: admitted again.
    operator.lock().unwrap_or_else(|e| e.into_inner()).restart().expect("restart");
    wait_for(Duration::from_secs(60), "the webhook to admit the request again", || {
        let request = request.clone();
        async move { cluster.kubectl("alice", &["apply", "-f", "-"], Some(&request)).await.success.then_some(()) }
    })
    .await;
}
