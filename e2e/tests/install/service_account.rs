//! `berth run` as the ServiceAccount config/ creates, with only the RBAC config/
//! grants: the whole flow works, and what Berth never does is refused.

use std::{path::Path, process::Command, time::Duration};

use berth::api::{
    EnvironmentClass, EnvironmentRequest, Tenant,
    conditions::{find, is_true, types},
    environment_request::Phase,
};
use berth_e2e::{
    install,
    operator::{Operator, berth_binary},
    remote::files_at_head,
    webhook::{WebhookSetup, wait_until_answering},
};
use kube::Api;

use crate::{can, cluster, config_default, installed, wait_for};

const SERVICE_ACCOUNT: &str = "system:serviceaccount:berth-system:berth";
/// A tenant viewer, and the group the Tenant names in `viewers`.
const VIEWER: &str = "vera";
const VIEWERS: &str = "payments-auditors";

/// What `kubectl auth can-i <args> --as=<Berth's ServiceAccount>` answers.
async fn can_i(args: &[&str]) -> bool {
    crate::can(SERVICE_ACCOUNT, &[], args).await
}

/// Berth's ServiceAccount may do what Berth does, and none of what it never does.
/// (Run once Argo CD's CRDs are in, so that kubectl knows `applications.argoproj.io`.)
async fn assert_least_privilege() {
    let allowed: &[&[&str]] = &[
        &["watch", "environmentrequests.berth.dev", "-A"],
        &["patch", "environmentrequests.berth.dev", "--subresource=status", "-A"],
        &["watch", "rollouts.berth.dev", "-A"],
        &["patch", "rollouts.berth.dev", "--subresource=status", "-A"],
        &["watch", "freezes.berth.dev"],
        &["patch", "tenants.berth.dev", "--subresource=status"],
        &["create", "namespaces"],
        &["patch", "namespaces"],
        &["create", "roles.rbac.authorization.k8s.io", "-n", "any-tenant"],
        &["create", "events.events.k8s.io", "-n", "any-tenant"],
        &["list", "applications.argoproj.io", "-n", "argocd"],
        &["watch", "applications.argoproj.io", "-n", "argocd"],
        // The refresh annotation on root apps after a push; the sync operation of drift remediation.
        &["patch", "applications.argoproj.io", "-n", "argocd"],
        &["get", "customresourcedefinitions.apiextensions.k8s.io/applications.argoproj.io"],
        &["update", "leases.coordination.k8s.io", "-n", "berth-system"],
        // The auth API: who a bearer token is (TokenReview), whether they may approve.
        &["create", "tokenreviews.authentication.k8s.io"],
        &["create", "subjectaccessreviews.authorization.k8s.io"],
    ];
    for args in allowed {
        assert!(can_i(args).await, "Berth needs: can-i {args:?}");
    }
    let refused: &[&[&str]] = &[
        // Secrets: credentials and keys are files in the pod, never read from the API.
        &["get", "secrets", "-A"],
        &["list", "secrets", "-n", "berth-system"],
        // Berth never deletes a namespace, a Role or a RoleBinding (garbage collection
        // does, through the Tenant's ownerReferences), nor gives out arbitrary RBAC.
        &["delete", "namespaces"],
        &["delete", "roles.rbac.authorization.k8s.io", "-A"],
        &["delete", "rolebindings.rbac.authorization.k8s.io", "-A"],
        &["escalate", "roles.rbac.authorization.k8s.io", "-A"],
        &["bind", "roles.rbac.authorization.k8s.io", "-A"],
        &["create", "clusterroles.rbac.authorization.k8s.io"],
        &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
        &["impersonate", "users"],
        // Rendered environments are Argo CD's to apply; Berth only watches them.
        &["patch", "resourcequotas", "-A"],
        &["create", "limitranges", "-A"],
        &["patch", "networkpolicies.networking.k8s.io", "-A"],
        &["get", "applications.argoproj.io", "-n", "argocd"],
        &["create", "applications.argoproj.io", "-n", "argocd"],
        &["update", "applications.argoproj.io", "-n", "argocd"],
        &["delete", "applications.argoproj.io", "-n", "argocd"],
        &["patch", "applications.argoproj.io", "-n", "berth-system"],
        // Applications only in BERTH_ARGOCD_NAMESPACE, where Berth renders them.
        &["watch", "applications.argoproj.io", "-A"],
        &["list", "applications.argoproj.io", "-A"],
        &["watch", "applications.argoproj.io", "-n", "berth-system"],
        &["watch", "applications.argoproj.io", "-n", "any-tenant"],
        // Its own kinds: status only, except what it must hold to grant (requests).
        &["patch", "tenants.berth.dev"],
        &["delete", "tenants.berth.dev"],
        &["patch", "environmentclasses.berth.dev"],
        // A freeze is a platform admin's to set: Berth only reads it.
        &["patch", "freezes.berth.dev"],
        &["delete", "freezes.berth.dev"],
        &["update", "rollouts.berth.dev", "--subresource=status", "-A"],
        // A request's status only by patch (server-side apply); the tenant Roles never
        // grant status, so Berth need not hold more of it.
        &["update", "environmentrequests.berth.dev", "--subresource=status", "-A"],
        // One CRD, by name; no other, and never a write.
        &["list", "customresourcedefinitions.apiextensions.k8s.io"],
        &["get", "customresourcedefinitions.apiextensions.k8s.io/tenants.berth.dev"],
        &["delete", "customresourcedefinitions.apiextensions.k8s.io/applications.argoproj.io"],
        // Leases only in its own namespace; events only created; no workloads.
        &["create", "leases.coordination.k8s.io", "-n", "kube-system"],
        &["patch", "events.events.k8s.io", "-A"],
        &["create", "events", "-A"],
        &["create", "pods", "-A"],
        &["create", "serviceaccounts/token", "-n", "berth-system"],
        // Reviews ask about a caller; never a local one about a namespace's objects.
        &["create", "localsubjectaccessreviews.authorization.k8s.io", "-n", "any-tenant"],
    ];
    for args in refused {
        assert!(!can_i(args).await, "Berth's ServiceAccount may {args:?}, which Berth never does");
    }
}

/// kubectl as Berth's ServiceAccount (its own kubeconfig); stdout, or stderr on failure.
fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out =
        Command::new(crate::kubectl()).env("KUBECONFIG", kubeconfig).args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn admin_apply(yaml: &str) {
    let out = cluster().kubectl("admin", &["apply", "-f", "-"], Some(yaml)).await;
    assert!(out.success, "kubectl apply refused:\n{}\n{yaml}", out.stderr);
}

/// Starts `berth run` as the ServiceAccount, with its webhook, and points the shipped
/// webhook configurations at it.
async fn start_as_service_account(dir: &Path) -> (Operator, WebhookSetup) {
    let cluster = cluster();
    let kubeconfig =
        install::service_account_kubeconfig(cluster, "berth-system", "berth", &dir.join("berth.kubeconfig"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    let who = kubectl_as(&kubeconfig, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(who.as_deref(), Ok(SERVICE_ACCOUNT), "the kubeconfig is not Berth's ServiceAccount");

    let credentials = dir.join("credentials");
    let made = Command::new(berth_binary().unwrap_or_else(|e| panic!("{e:#}")))
        .args(["dev-credentials", "--out", &credentials.display().to_string(), "--host", "127.0.0.1"])
        .output()
        .expect("berth dev-credentials");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let setup = WebhookSetup::on_free_ports(credentials).unwrap_or_else(|e| panic!("{e:#}"));
    let mut env = setup.env();
    // As the Deployment sets them: leader election in Berth's namespace, the pod's name.
    env.push(("BERTH_LEADER_ELECTION_NAMESPACE".into(), "berth-system".into()));
    env.push(("POD_NAME".into(), "berth-install-e2e".into()));
    let identity = install::as_identity(&cluster.info, &kubeconfig);
    let operator = Operator::start_with_env(&identity, dir, &dir.join("remote.git"), 200, env)
        .unwrap_or_else(|e| panic!("berth run did not start: {e:#}"));

    // No Service network here: the shipped configurations, with their paths and
    // rules as they are, call Berth on loopback instead of berth.berth-system.svc.
    let ca = std::fs::read_to_string(setup.ca()).expect("CA");
    let yaml = install::webhooks_at(&config_default(), &setup.url, &ca).unwrap_or_else(|e| panic!("{e:#}"));
    let out = cluster.kubectl("admin", &["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&yaml)).await;
    assert!(out.success, "{}", out.stderr);
    wait_until_answering(cluster, &operator).await.unwrap_or_else(|e| panic!("{e:#}"));
    (operator, setup)
}

#[tokio::test]
async fn berth_does_its_whole_job_as_the_shipped_service_account_and_no_more() {
    installed().await;
    let cluster = cluster();
    let dir = std::env::temp_dir().join(format!("berth-install-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test folder");
    let (operator, _setup) = start_as_service_account(&dir).await;
    let log = || {
        let log = operator.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        format!("operator log (newest first):\n{}", tail.join("\n"))
    };
    let admin = cluster.client("admin").await;
    let suffix = &format!("{:x}", std::process::id())[..];
    let (tenant, class) = (format!("inst-{suffix}"), format!("inst-preview-{suffix}"));

    // A class and a tenant: Berth creates the tenant's namespace, its Roles and the
    // bindings for its people (escalation prevention passes: Berth holds what the
    // Roles grant), and writes both statuses.
    let class_yaml = berth_e2e::suite::class_yaml(&class, 40, "ttl: {default: 72h, max: 168h}");
    admin_apply(&format!(
        "{class_yaml}---
apiVersion: berth.dev/v1alpha1
kind: Tenant
metadata: {{name: {tenant}}}
spec:
  owners: [{{kind: User, name: alice}}]
  members: [{{kind: Group, name: team-payments}}]
  viewers: [{{kind: Group, name: {VIEWERS}}}]
  allowedClasses: [{class}]
  requestNamespace: {tenant}
"
    ))
    .await;
    wait_for(Duration::from_secs(60), "alice's RoleBinding in the tenant namespace", log, || async {
        let out = cluster
            .kubectl("alice", &["auth", "can-i", "delete", "environmentrequests.berth.dev", "-n", &tenant], None)
            .await;
        (out.stdout.trim() == "yes").then_some(())
    })
    .await;
    // The tenant's viewers follow its requests there and cannot ask for one (the
    // Role berth-viewer, which Berth could write because it holds what it grants).
    wait_for(Duration::from_secs(60), "the viewers' RoleBinding in the tenant namespace", log, || async {
        can(VIEWER, &[VIEWERS], &["list", "environmentrequests.berth.dev", "-n", &tenant]).await.then_some(())
    })
    .await;
    for allowed in
        [&["get", "environmentrequests.berth.dev", "-n", &tenant][..], &["watch", "rollouts.berth.dev", "-n", &tenant]]
    {
        assert!(can(VIEWER, &[VIEWERS], allowed).await, "a tenant viewer may {allowed:?}");
    }
    for refused in [
        &["create", "environmentrequests.berth.dev", "-n", &tenant][..],
        &["delete", "environmentrequests.berth.dev", "-n", &tenant],
        &["patch", "environmentrequests.berth.dev", "--subresource=status", "-n", &tenant],
        &["create", "rollouts.berth.dev", "-n", &tenant],
        &["list", "environmentrequests.berth.dev", "-n", "default"],
    ] {
        assert!(!can(VIEWER, &[VIEWERS], refused).await, "a tenant viewer may {refused:?}");
    }
    let tenants: Api<Tenant> = Api::all(admin.clone());
    wait_for(Duration::from_secs(30), "the tenant's status", log, || async {
        let status = tenants.get(&tenant).await.ok()?.status?;
        is_true(&status.conditions, types::READY).then_some(())
    })
    .await;
    let classes: Api<EnvironmentClass> = Api::all(admin.clone());
    wait_for(Duration::from_secs(30), "the class's status", log, || async {
        let status = classes.get(&class).await.ok()?.status?;
        is_true(&status.conditions, types::VALID).then_some(())
    })
    .await;

    // Alice asks for an environment, through the shipped webhook configurations: it is
    // committed to git and Ready, with its finalizer, creator and events.
    let request = format!(
        "apiVersion: berth.dev/v1alpha1
kind: EnvironmentRequest
metadata: {{name: web, namespace: {tenant}}}
spec:
  tenant: {tenant}
  class: {class}
  app: {{name: web, repoURL: https://git.example.com/web.git, path: deploy, revision: v1}}
"
    );
    let out = cluster.kubectl("alice", &["apply", "-f", "-"], Some(&request)).await;
    assert!(out.success, "alice's request was refused: {}", out.stderr);
    let requests: Api<EnvironmentRequest> = Api::namespaced(admin.clone(), &tenant);
    let phase = |wanted: Phase| {
        let requests = requests.clone();
        move || {
            let requests = requests.clone();
            async move {
                let request = requests.get_opt("web").await.ok().flatten()?;
                (request.status.as_ref()?.phase == Some(wanted)).then_some(request)
            }
        }
    };
    let ready = wait_for(Duration::from_secs(60), "the request to be Ready", log, phase(Phase::Ready)).await;
    let annotations = ready.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get(berth::api::labels::CREATED_BY_ANNOTATION).map(String::as_str), Some("alice"));
    assert!(ready.metadata.finalizers.iter().flatten().any(|f| f == berth::api::labels::FINALIZER));
    let status = ready.status.clone().unwrap_or_default();
    let path = status.gitops.and_then(|g| g.path).unwrap_or_default();
    assert_eq!(path, format!("clusters/in-cluster/tenants/{tenant}/web"));
    let remote = operator.remote.clone();
    let files = files_at_head(&remote, &path).unwrap_or_else(|| panic!("{path} is not in the remote"));
    assert!(files.contains_key("namespace.yaml") && files.contains_key("application.yaml"), "{files:?}");
    assert!(files["rolebindings.yaml"].contains("berth-viewers"), "{}", files["rolebindings.yaml"]);

    // What Argo CD would apply: the environment's namespace and bindings. Viewers
    // view it (Kubernetes' view), nothing more; members edit it.
    admin_apply(&files["namespace.yaml"]).await;
    admin_apply(&files["rolebindings.yaml"]).await;
    let environment_ns = ready.status.as_ref().and_then(|s| s.namespace.clone()).unwrap_or_default();
    assert!(!environment_ns.is_empty(), "the Ready request names its environment namespace");
    assert!(can(VIEWER, &[VIEWERS], &["list", "pods", "-n", &environment_ns]).await, "viewers view the environment");
    assert!(!can(VIEWER, &[VIEWERS], &["create", "deployments.apps", "-n", &environment_ns]).await);
    assert!(!can(VIEWER, &[VIEWERS], &["get", "secrets", "-n", &environment_ns]).await, "view reads no Secrets");
    assert!(can("someone", &["team-payments"], &["create", "deployments.apps", "-n", &environment_ns]).await);
    // And as Argo CD would prune them: a deleted request waits for its environment to go.
    let out = cluster.kubectl("admin", &["delete", "namespace", &environment_ns, "--timeout=60s"], None).await;
    assert!(out.success, "{}", out.stderr);

    let events = cluster.kubectl("admin", &["events", "-n", &tenant, "--for", "environmentrequest/web"], None).await;
    assert!(events.stdout.contains("Ready"), "no Ready event: {}{}", events.stdout, events.stderr);

    // Argo CD is installed later: Berth (watching that one CRD by name) notices, and
    // mirrors the Application it then watches into status.
    cluster.install_argocd_crds().await;
    let waiting =
        wait_for(Duration::from_secs(60), "the request to wait for Argo CD", log, phase(Phase::Provisioning)).await;
    let status = waiting.status.unwrap_or_default();
    assert_eq!(status.sync.as_ref().and_then(|s| s.health.as_deref()), Some("Missing"));
    admin_apply(&files["application.yaml"]).await;
    let environment = status.namespace.unwrap_or_default();
    // As Argo CD reports it: compared with the source Berth rendered, Synced and Healthy.
    let synced = r#"{"status":{"sync":{"status":"Synced","revision":"0123abcd",
        "comparedTo":{"source":{"repoURL":"https://git.example.com/web.git","path":"deploy","targetRevision":"v1"},"destination":{"name":"in-cluster"}}},
        "health":{"status":"Healthy"}}}"#;
    let args = ["patch", "applications.argoproj.io", &environment, "-n", "argocd", "--type", "merge", "-p", synced];
    let out = cluster.kubectl("admin", &args, None).await;
    assert!(out.success, "{}", out.stderr);
    let ready = wait_for(Duration::from_secs(60), "the request to be Ready and Synced", log, phase(Phase::Ready)).await;
    let conditions = ready.status.unwrap_or_default().conditions;
    assert!(find(&conditions, types::SYNCED).is_some_and(|c| c.status == "True"), "{conditions:?}");

    // Alice deletes it: the folder leaves git, and the request waits for Argo CD to
    // prune the environment (played here: the Application goes) before it goes.
    let out =
        cluster.kubectl("alice", &["delete", "environmentrequest", "web", "-n", &tenant, "--wait=false"], None).await;
    assert!(out.success, "{}", out.stderr);
    wait_for(Duration::from_secs(60), "the request to wait for Argo CD's prune", log, || async {
        let status = requests.get_opt("web").await.ok().flatten()?.status?;
        find(&status.conditions, types::READY).is_some_and(|c| c.reason == "AwaitingPrune").then_some(())
    })
    .await;
    assert_eq!(files_at_head(&remote, &path), None, "{path} is still in git");
    let unfinalize = r#"{"metadata":{"finalizers":null}}"#;
    let args = ["patch", "applications.argoproj.io", &environment, "-n", "argocd", "--type", "merge", "-p", unfinalize];
    let out = cluster.kubectl("admin", &args, None).await;
    assert!(out.success, "{}", out.stderr);
    let out =
        cluster.kubectl("admin", &["delete", "applications.argoproj.io", &environment, "-n", "argocd"], None).await;
    assert!(out.success, "{}", out.stderr);
    wait_for(Duration::from_secs(60), "the request to be gone", log, || async {
        requests.get_opt("web").await.ok().flatten().is_none().then_some(())
    })
    .await;
    assert_eq!(files_at_head(&remote, &path), None, "{path} is still in git");

    // Nothing Berth tried along the way was refused, and it could not have done more.
    let text = operator.log_text();
    let refused: Vec<&str> = text.lines().filter(|l| l.to_lowercase().contains("forbidden")).collect();
    assert!(refused.is_empty(), "Berth was refused calls its RBAC should allow:\n{}", refused.join("\n"));
    assert_least_privilege().await;
    drop(operator);
    let _ = std::fs::remove_dir_all(&dir);
}
