//! `config/default` and the chart's output, accepted by the apiserver as shipped.

use std::time::Duration;

use berth_e2e::install::{self, key};

use crate::{cluster, config_default, installed, wait_for};

#[tokio::test]
async fn config_default_applies_as_the_readme_says_and_every_object_is_there() {
    let out = installed().await;
    // No deprecation, unknown-field or PodSecurity warning either.
    assert!(!out.stderr.contains("Warning"), "kubectl apply warned:\n{}", out.stderr);
    let shipped = config_default();
    let root = berth_e2e::repo_root().join("config/default");
    let listed = cluster().kubectl("admin", &["get", "-k", &root.display().to_string(), "-o", "json"], None).await;
    assert!(listed.success, "{}", listed.stderr);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("kubectl get -o json");
    let live: Vec<String> = listed["items"].as_array().into_iter().flatten().map(key).collect();
    for object in &shipped {
        assert!(live.contains(&key(object)), "{} is not in the cluster; it holds {live:?}", key(object));
    }
    // Berth's own pods are fenced in (ingress to admission, the auth API and metrics).
    assert!(
        live.iter().any(|k| k == "NetworkPolicy berth-system/berth"),
        "no NetworkPolicy; the cluster holds {live:?}"
    );

    // The Deployment's pod passes Pod Security "restricted", enforced on berth-system:
    // the ReplicaSet could create it (no kubelet runs it here, so it stays Pending).
    wait_for(Duration::from_secs(60), "the operator's pod to be admitted", String::new, || async {
        let pods = cluster()
            .kubectl(
                "admin",
                &["get", "pods", "-n", "berth-system", "-l", "app.kubernetes.io/name=berth", "-o", "name"],
                None,
            )
            .await;
        (pods.success && pods.stdout.trim().starts_with("pod/")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_charts_output_is_accepted_by_the_apiserver_for_each_way_to_install() {
    // cert-manager's CRDs (and Berth's) are in, and the namespace argocd; the chart
    // goes to a namespace of its own, under another release name, so nothing collides
    // with config/default (its Role for Applications goes to argocd, or with
    // argocd.namespace set, to the chart's own namespace).
    installed().await;
    let namespace = "berth-helm";
    let created = cluster().kubectl("admin", &["create", "namespace", namespace], None).await;
    assert!(created.success || created.stderr.contains("AlreadyExists"), "{}", created.stderr);
    let labelled = cluster()
        .kubectl(
            "admin",
            &["label", "--overwrite", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"],
            None,
        )
        .await;
    assert!(labelled.success, "{}", labelled.stderr);

    let remote = "gitops.remote=https://git.example.com/platform/gitops.git";
    let ca = berth::cli::dev::self_signed(&["berth-helm.berth-helm.svc"]).expect("certificate").ca_pem;
    let manual_ca = format!("webhook.caBundle={ca}");
    let own_argocd = format!("argocd.namespace={namespace}");
    let variants: [&[&str]; 3] = [
        &[],
        &[
            "--set",
            "webhook.certManager.enabled=false",
            "--set",
            &manual_ca,
            "--set",
            "replicas=2",
            // The NetworkPolicy with its values filled in.
            "--set",
            "prometheus.url=http://prometheus.monitoring:9090",
            "--set-json",
            r#"networkPolicy.authApi.from=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"ingress"}}}]"#,
            "--set-json",
            r#"networkPolicy.egress.apiserver.to=[{"ipBlock":{"cidr":"10.0.0.1/32"}}]"#,
        ],
        &[
            "--set",
            "webhook.enabled=false",
            "--set",
            "strict=false",
            "--set",
            "networkPolicy.enabled=false",
            "--set",
            "gitops.credentials.type=ssh",
            "--set",
            "approvals.secretName=keys",
            "--set",
            &own_argocd,
        ],
    ];
    for variant in variants {
        let mut args = vec!["--set", remote];
        args.extend_from_slice(variant);
        let yaml = install::helm_template("berth-helm", namespace, &args).unwrap_or_else(|e| panic!("{e:#}"));
        let out =
            cluster().kubectl("admin", &["apply", "--server-side", "--dry-run=server", "-f", "-"], Some(&yaml)).await;
        assert!(out.success, "the apiserver refused the chart's output for {variant:?}:\n{}", out.stderr);
        assert!(!out.stderr.contains("Warning"), "kubectl apply warned for {variant:?}:\n{}", out.stderr);
        let objects = install::documents(&yaml).expect("documents");
        assert_eq!(out.stdout.lines().count(), objects.len(), "{variant:?}: {}", out.stdout);
    }
}
