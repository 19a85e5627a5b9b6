//! Rendered environments are accepted by a real kube-apiserver that has Argo
//! CD's own CRDs installed: first as a server-side dry run, then for real with
//! server-side apply under Berth's field manager.

use berth::{
    api::{EnvironmentClass, EnvironmentRequest, Tenant},
    render::{RenderOptions, render},
    testing::example,
};
use berth_e2e::fixture::Cluster;

fn cluster() -> &'static Cluster {
    Cluster::shared(env!("CARGO_BIN_EXE_berth-controlplane"))
}

#[tokio::test]
async fn the_apiserver_accepts_every_rendered_object_of_every_example_class() {
    let cluster = cluster();
    cluster.install_argocd_crds().await;
    let tenant: Tenant = example("tenant-payments.yaml");
    for class_name in ["preview", "staging", "production"] {
        let class: EnvironmentClass = example(&format!("environmentclass-{class_name}.yaml"));
        let request: EnvironmentRequest = example(&format!("environmentrequest-{class_name}.yaml"));
        let env = render(&class, &tenant, &request, &RenderOptions::default())
            .unwrap_or_else(|e| panic!("{class_name}: {e}"));

        // Namespaced objects need their namespace to exist, even for a dry run.
        let namespace = &env.files["namespace.yaml"];
        let dry =
            cluster.kubectl("admin", &["apply", "--server-side", "--dry-run=server", "-f", "-"], Some(namespace)).await;
        assert!(dry.success, "{class_name}: namespace.yaml refused: {}", dry.stderr);
        let created = cluster
            .kubectl("admin", &["apply", "--server-side", "--field-manager=berth", "-f", "-"], Some(namespace))
            .await;
        assert!(created.success, "{class_name}: {}", created.stderr);

        for (file, yaml) in &env.files {
            let dry = cluster
                .kubectl(
                    "admin",
                    &["apply", "--server-side", "--dry-run=server", "--field-manager=berth", "-f", "-"],
                    Some(yaml),
                )
                .await;
            assert!(dry.success, "{class_name}/{file} refused by server-side dry run: {}\n{yaml}", dry.stderr);
        }
        let all: Vec<&str> = env.files.values().map(String::as_str).collect();
        let applied = cluster
            .kubectl("admin", &["apply", "--server-side", "--field-manager=berth", "-f", "-"], Some(&all.join("---\n")))
            .await;
        assert!(applied.success, "{class_name}: {}", applied.stderr);
        let expected_objects: usize = all.iter().map(|yaml| yaml.split("---\n").count()).sum();
        let applied_lines = applied.stdout.lines().filter(|l| l.contains("serverside-applied")).count();
        assert_eq!(applied_lines, expected_objects, "{class_name}: every object applied:\n{}", applied.stdout);

        // What the apiserver stored is what was rendered, as a person would check.
        let quota = cluster
            .kubectl(
                "admin",
                &[
                    "get",
                    "resourcequota",
                    "berth-quota",
                    "-n",
                    &env.namespace,
                    "-o",
                    "jsonpath={.spec.hard.requests\\.cpu}",
                ],
                None,
            )
            .await;
        assert_eq!(quota.stdout, class.spec.quota["requests.cpu"].0, "{class_name}: {}", quota.stderr);
        let app = cluster
            .kubectl(
                "admin",
                &[
                    "get",
                    "applications.argoproj.io",
                    &env.namespace,
                    "-n",
                    "argocd",
                    "-o",
                    "jsonpath={.spec.destination.namespace}",
                ],
                None,
            )
            .await;
        assert_eq!(app.stdout, env.namespace, "{class_name}: {}", app.stderr);
    }
}
