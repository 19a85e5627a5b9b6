use kube::runtime::watcher;

use super::*;

fn request(namespace: &str, name: &str, tenant: &str, class: &str) -> EnvironmentRequest {
    serde_yaml::from_str(&format!(
        "metadata: {{name: {name}, namespace: {namespace}}}
spec: {{tenant: {tenant}, class: {class}, app: {{name: web, repoURL: 'https://example.com/web.git'}}}}"
    ))
    .expect("request")
}

fn names(requests: Vec<Arc<EnvironmentRequest>>) -> Vec<String> {
    let mut names: Vec<String> = requests.iter().map(|r| r.metadata.name.clone().unwrap_or_default()).collect();
    names.sort();
    names
}

#[test]
fn requests_are_found_by_namespace_class_and_tenant_as_the_watch_changes_them() {
    let index = Index::with_objects(
        [],
        [],
        [request("payments", "a", "payments", "preview"), request("payments", "b", "payments", "production")],
    );
    index.requests.apply(watcher::Event::Apply(request("search", "c", "search", "preview")));
    assert_eq!(names(index.requests_in("payments")), ["a", "b"]);
    assert_eq!(names(index.requests_of_class("preview")), ["a", "c"]);
    assert_eq!(names(index.requests_of_tenant("search")), ["c"]);

    // An edit moves a request between groups; a deletion takes it out of all.
    index.requests.apply(watcher::Event::Apply(request("payments", "a", "payments", "production")));
    index.requests.apply(watcher::Event::Delete(request("payments", "b", "payments", "production")));
    assert_eq!(names(index.requests_of_class("production")), ["a"]);
    assert_eq!(names(index.requests_of_class("preview")), ["c"]);
    assert_eq!(names(index.requests_in("payments")), ["a"]);
    // The groups hold the store's own objects.
    let stored = index.request("payments", "a").expect("in the store");
    assert!(Arc::ptr_eq(&stored, &index.requests_in("payments")[0]));

    // A re-list replaces everything, groups included.
    index.requests.fill([request("other", "d", "other", "preview")]);
    assert!(index.requests_in("payments").is_empty());
    assert_eq!(names(index.requests_of_class("preview")), ["d"]);
}

#[tokio::test]
async fn a_controller_told_about_a_change_finds_it_in_the_store_and_its_group() {
    let index = Index::with_objects([], [], []);
    let mut feed = index.requests.subscribe();
    index.requests.apply(watcher::Event::Apply(request("payments", "a", "payments", "preview")));
    let told = futures::StreamExt::next(&mut feed).await.expect("told");
    assert_eq!(told.metadata.name.as_deref(), Some("a"));
    let stored = index.request("payments", "a").expect("stored");
    assert!(Arc::ptr_eq(&told, &stored), "the feed shares the store's copy instead of cloning the request");
    assert_eq!(names(index.requests_in("payments")), ["a"]);

    // A re-list is told at its end, each object as the store then holds it.
    index.requests.apply(watcher::Event::Init);
    index.requests.apply(watcher::Event::InitApply(request("payments", "b", "payments", "preview")));
    assert!(futures::FutureExt::now_or_never(futures::StreamExt::next(&mut feed)).is_none(), "not during the list");
    index.requests.apply(watcher::Event::InitDone);
    let told = futures::StreamExt::next(&mut feed).await.expect("told");
    assert!(Arc::ptr_eq(&told, &index.request("payments", "b").expect("stored")));
    // "a" is not in that list: gone while the watch was away, and told so.
    let told = futures::StreamExt::next(&mut feed).await.expect("told");
    assert!(Arc::ptr_eq(&told, &stored), "the last copy the store held");
    assert!(index.request("payments", "a").is_none());
    // A deletion tells the deleted object.
    index.requests.apply(watcher::Event::Delete(request("payments", "b", "payments", "preview")));
    let told = futures::StreamExt::next(&mut feed).await.expect("told");
    assert_eq!(told.metadata.name.as_deref(), Some("b"));
    assert!(index.request("payments", "b").is_none());

    // A re-list without an object (deleted while the watch was away) tells it too.
    let c = request("payments", "c", "payments", "preview");
    index.requests.apply(watcher::Event::Apply(c.clone()));
    let _ = futures::StreamExt::next(&mut feed).await.expect("told c");
    index.requests.fill([request("payments", "a", "payments", "preview")]);
    let mut told = Vec::new();
    for _ in 0..2 {
        told.push(futures::StreamExt::next(&mut feed).await.expect("told").metadata.name.clone().unwrap_or_default());
    }
    told.sort();
    assert_eq!(told, ["a", "c"], "the listed one, and the one the list no longer has");
    assert!(index.request("payments", "c").is_none());
    assert!(futures::FutureExt::now_or_never(futures::StreamExt::next(&mut feed)).is_none(), "nothing else");
}

#[test]
fn the_index_is_ready_once_every_kind_is_listed_and_live_reads_rendered_kinds_only() {
    let index = Index::new(ArgoCd::absent());
    assert!(!index.all_listed());
    index.requests.fill([]);
    index.classes.fill([]);
    index.tenants.fill([]);
    assert!(!index.all_listed(), "the rendered kinds are not listed yet");
    // What readiness reports while it waits: a kind whose CRD an upgrade forgot.
    assert!(index.unlisted().contains(&"freezes"), "{:?}", index.unlisted());
    assert!(!index.unlisted().contains(&"environmentrequests"), "{:?}", index.unlisted());
    let index = Index::with_objects([], [], []);
    assert_eq!(index.unlisted(), Vec::<&str>::new());
    assert!(index.all_listed(), "Argo CD absent at start is not waited for");
    assert_eq!(index.live("ResourceQuota", Some("env"), "quota"), Ok(None));
    assert!(index.live("Secret", Some("env"), "x").is_err());
    assert!(index.live("EnvironmentRequest", Some("env"), "x").is_err(), "only rendered kinds are live");
    assert_eq!(index.live("Application", Some("argocd"), "env"), Err("Argo CD is not installed".to_owned()));
}

#[test]
fn tenants_are_found_by_the_namespace_they_claim() {
    let tenant = |name: &str, namespace: Option<&str>| -> Tenant {
        let mut t: Tenant = serde_yaml::from_str(&format!(
            "metadata: {{name: {name}}}\nspec: {{owners: [{{kind: User, name: alice}}]}}"
        ))
        .expect("tenant");
        t.spec.request_namespace = namespace.map(str::to_owned);
        t
    };
    let index = Index::with_objects(
        [tenant("payments", None), tenant("search", Some("team-search")), tenant("copycat", Some("payments"))],
        [],
        [],
    );
    assert_eq!(index.claimants("payments"), ["copycat", "payments"], "sorted");
    assert_eq!(index.claimants("team-search"), ["search"]);
    assert!(index.claimants("search").is_empty(), "search's requests live in team-search");
}

use crate::testing::provisioned;

#[test]
fn a_budget_view_counts_the_provisioned_and_holds_the_rest_leaving_out_the_request_decided() {
    use crate::api::environment_request::{EnvironmentRequestStatus, Phase};
    let mut expired = request("payments", "old", "payments", "preview");
    expired.status = Some(EnvironmentRequestStatus { phase: Some(Phase::Expired), ..Default::default() });
    let index = Index::with_objects(
        [],
        [],
        [
            provisioned(request("payments", "a", "payments", "preview")),
            provisioned(request("payments", "b", "payments", "preview")),
            provisioned(request("payments", "c", "payments", "production")),
            request("payments", "pending", "payments", "preview"),
            expired,
            provisioned(request("search", "s", "search", "preview")),
        ],
    );
    let counts = |view: &crate::policy::budget::NamespaceRequests| {
        let mut counts = view.provisioned.clone();
        counts.sort();
        counts
    };
    let of = |class: &str, n| (("payments".to_owned(), class.to_owned()), n);
    let view = index.budget_view("payments", "new");
    assert_eq!(counts(&view), [of("preview", 2), of("production", 1)]);
    // The expired request can never claim: left out. Another namespace: not there.
    assert_eq!(names(view.others), ["pending"]);

    // The request being decided is left out whether the index counts it (its copy in
    // the store is newer than the caller's) or holds it.
    assert_eq!(counts(&index.budget_view("payments", "a")), [of("preview", 1), of("production", 1)]);
    assert!(index.budget_view("payments", "pending").others.is_empty());

    // The watch moves a request from held to counted as its status changes.
    index.requests.apply(watcher::Event::Apply(provisioned(request("payments", "pending", "payments", "preview"))));
    let view = index.budget_view("payments", "new");
    assert_eq!(counts(&view), [of("preview", 3), of("production", 1)]);
    assert!(view.others.is_empty());
    index.requests.apply(watcher::Event::Delete(provisioned(request("payments", "a", "payments", "preview"))));
    assert_eq!(counts(&index.budget_view("payments", "new")), [of("preview", 2), of("production", 1)]);
}

#[test]
fn admission_does_not_count_a_request_twice_when_the_store_already_shows_it_provisioned() {
    // The index holds `a` provisioned; deciding a pending copy of `a` (an older copy)
    // against a budget of exactly two must count it once.
    let tenant: Tenant = serde_yaml::from_str(
        "metadata: {name: payments}
spec: {owners: [{kind: User, name: alice}], requestNamespace: payments, budget: {maxEnvironments: 2}}",
    )
    .expect("tenant");
    let class: EnvironmentClass = serde_yaml::from_str("metadata: {name: preview}\nspec: {}").expect("class");
    let index = Index::with_objects(
        [tenant.clone()],
        [class],
        [
            provisioned(request("payments", "a", "payments", "preview")),
            provisioned(request("payments", "b", "payments", "preview")),
        ],
    );
    let stale = request("payments", "a", "payments", "preview");
    assert_eq!(crate::webhook::admission::check_budget(&stale, &tenant, &index), Ok(()));
    let third = request("payments", "c", "payments", "preview");
    assert!(crate::webhook::admission::check_budget(&third, &tenant, &index).is_err(), "two of two are used");
}
