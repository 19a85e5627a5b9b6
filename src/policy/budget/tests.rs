use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;

fn claim(name: &str, second: i64, provisioned: bool, cost: u32) -> Claim<'_> {
    Claim {
        name,
        created: Some(Timestamp::from_second(second).expect("valid")),
        provisioned,
        monthly_cost_usd: cost,
        quota: &NO_QUOTA,
    }
}

fn hard(cpu: &str, memory: &str) -> Amounts {
    amounts(&BTreeMap::from([
        ("requests.cpu".to_owned(), Quantity(cpu.to_owned())),
        ("requests.memory".to_owned(), Quantity(memory.to_owned())),
    ]))
}

fn budget(max: Option<u32>, cost: Option<u32>) -> Budget {
    Budget { max_environments: max, monthly_cost_usd: cost, ..Budget::default() }
}

#[test]
fn no_budget_admits_everything() {
    let claims = [claim("a", 1, false, 500), claim("b", 2, false, 500)];
    let (decisions, usage) = decide("t", &Budget::default(), &claims);
    assert!(decisions.iter().all(|(_, d)| d.is_ok()));
    assert_eq!((usage.environments, usage.monthly_cost_usd), (2, 1000));
}

#[test]
fn concurrent_requests_overrunning_the_cost_budget_admit_the_oldest_that_fit() {
    // Three requests of $400 against $1000: the first two fit, the third does not.
    let claims = [claim("c", 3, false, 400), claim("a", 1, false, 400), claim("b", 2, false, 400)];
    let (decisions, usage) = decide("payments", &budget(None, Some(1000)), &claims);
    let admitted: Vec<&str> = decisions.iter().filter(|(_, d)| d.is_ok()).map(|(n, _)| n.as_str()).collect();
    assert_eq!(admitted, ["a", "b"]);
    assert_eq!(usage.monthly_cost_usd, 800);
    let refused = decide_for("payments", &budget(None, Some(1000)), &claims, "c").expect("c decided");
    assert_eq!(
        refused,
        Err(BudgetExceeded::Cost { tenant: "payments".into(), total: 1200, adding: 400, budget: 1000 })
    );
}

#[test]
fn every_order_of_the_same_set_reaches_the_same_decisions() {
    let claims = vec![claim("a", 1, false, 300), claim("b", 1, false, 300), claim("c", 2, false, 300)];
    let expected = decide("t", &budget(Some(2), None), &claims).0;
    let mut reversed = claims.clone();
    reversed.reverse();
    assert_eq!(decide("t", &budget(Some(2), None), &reversed).0, expected);
    // Same creation second: the name breaks the tie.
    assert!(expected[0].1.is_ok() && expected[0].0 == "a");
    assert!(matches!(expected[2].1, Err(BudgetExceeded::Count { current: 2, max: 2, .. })));
}

#[test]
fn provisioned_environments_hold_their_budget_before_older_pending_ones() {
    let claims = [claim("old-pending", 1, false, 600), claim("new-provisioned", 5, true, 600)];
    let decisions = decide("t", &budget(None, Some(1000)), &claims).0;
    assert_eq!(decisions[0], ("new-provisioned".to_owned(), Ok(())));
    assert!(decisions[1].1.is_err(), "the pending one no longer fits");
}

#[test]
fn a_lowered_budget_keeps_provisioned_environments_and_blocks_new_ones() {
    let claims = [claim("a", 1, true, 700), claim("b", 2, true, 700), claim("new", 3, false, 10)];
    let (decisions, usage) = decide("t", &budget(None, Some(1000)), &claims);
    assert!(decisions[0].1.is_ok() && decisions[1].1.is_ok());
    assert!(decisions[2].1.is_err());
    assert_eq!(usage.monthly_cost_usd, 1400);
}

#[test]
fn messages_say_what_to_change() {
    let count = BudgetExceeded::Count { tenant: "payments".into(), current: 3, max: 3 };
    assert_eq!(
        count.to_string(),
        "tenant \"payments\" already has 3 of its 3 environments; delete one or raise spec.budget.maxEnvironments"
    );
}

#[test]
fn quota_budgets_add_up_exact_quantities() {
    let (quota_a, quota_b, quota_c) = (hard("1500m", "4Gi"), hard("1.5", "4096Mi"), hard("500m", "1Gi"));
    let mut a = claim("a", 1, false, 0);
    a.quota = &quota_a;
    let mut b = claim("b", 2, false, 0);
    b.quota = &quota_b;
    let mut c = claim("c", 3, false, 0);
    c.quota = &quota_c;
    let budget = Budget {
        quota: BTreeMap::from([
            ("requests.cpu".to_owned(), Quantity("3".to_owned())),
            ("requests.memory".to_owned(), Quantity("8Gi".to_owned())),
        ]),
        ..Budget::default()
    };
    let (decisions, usage) = decide("t", &budget, &[a, b, c]);
    assert!(decisions[0].1.is_ok() && decisions[1].1.is_ok(), "1.5 + 1.5 cpu and 4Gi + 4Gi fit exactly");
    assert_eq!(
        decisions[2].1,
        Err(BudgetExceeded::Quota {
            tenant: "t".into(),
            resource: "requests.cpu".into(),
            total: "3500m".into(),
            adding: "500m".into(),
            budget: "3".into(),
        })
    );
    assert_eq!(usage.quota.get("requests.memory").copied().map(display), Some("8Gi".to_owned()));
}

#[test]
fn deciding_one_claim_agrees_with_deciding_them_all() {
    // Mixed: provisioned and pending, ties in time broken by name, a cost budget
    // that admits some and refuses others.
    let claims = [
        claim("e", 5, false, 300),
        claim("p", 9, true, 400),
        claim("a", 5, false, 300),
        claim("c", 3, false, 200),
        claim("z", 1, false, 500),
    ];
    let budget = budget(Some(4), Some(1400));
    let (all, _) = decide("t", &budget, &claims);
    for (name, decision) in &all {
        assert_eq!(decide_for("t", &budget, &claims, name).as_ref(), Some(decision), "{name}");
    }
    assert_eq!(decide_for("t", &budget, &claims, "missing"), None);
    // The order itself: provisioned p, then z(1), c(3), a(5), e(5).
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["p", "z", "c", "a", "e"]);
    assert!(all[3].1.is_ok() && all[4].1.is_err(), "{all:?}");
}

#[test]
fn deciding_one_claim_agrees_with_deciding_them_all_over_many_mixed_sets() {
    // Sets of provisioned and pending claims of three classes (two sharing a cost but
    // not a quota), in shuffled orders, against count, cost and quota budgets: what
    // `decide_for` reaches from the provisioned totals and the pending claims ahead is
    // what `decide` reaches in full order.
    let quotas = [hard("1", "1Gi"), hard("1", "2Gi"), hard("250m", "512Mi")];
    let costs = [100, 100, 40];
    let names: Vec<String> = (0..40).map(|i| format!("r{i:02}")).collect();
    let mut seed = 0x2545_f491_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut refused, mut admitted) = (0, 0);
    for round in 0..200 {
        let claims: Vec<Claim> = names
            .iter()
            .take(5 + (next() % 35) as usize)
            .map(|name| {
                let class = (next() % 3) as usize;
                Claim {
                    name,
                    created: Some(Timestamp::from_second((next() % 8) as i64).expect("valid")),
                    provisioned: next() % 3 == 0,
                    monthly_cost_usd: costs[class],
                    quota: &quotas[class],
                }
            })
            .collect();
        let budget = Budget {
            max_environments: (round % 3 == 0).then_some((next() % 30) as u32),
            monthly_cost_usd: (round % 3 == 1).then_some((next() % 2500) as u32),
            quota: if round % 3 == 2 {
                BTreeMap::from([("requests.memory".to_owned(), Quantity(format!("{}Gi", next() % 30)))])
            } else {
                BTreeMap::new()
            },
        };
        let (all, _) = decide("t", &budget, &claims);
        refused += all.iter().filter(|(_, d)| d.is_err()).count();
        admitted += all.iter().filter(|(_, d)| d.is_ok()).count();
        for (name, decision) in &all {
            assert_eq!(decide_for("t", &budget, &claims, name).as_ref(), Some(decision), "round {round}: {name}");
        }
    }
    // The sets exercise both outcomes, many times over.
    assert!(refused > 500 && admitted > 500, "{refused} refused, {admitted} admitted");
}

#[test]
fn provisioned_usage_counted_per_class_equals_the_sum_of_its_claims() {
    let (small, large) = (hard("500m", "1Gi"), hard("2", "4Gi"));
    let mut claims = vec![claim("a", 1, true, 40), claim("b", 2, true, 40), claim("c", 3, true, 300)];
    claims[0].quota = &small;
    claims[1].quota = &small;
    claims[2].quota = &large;
    claims.push(claim("pending", 4, false, 1000));
    let usage = Usage::of_provisioned(&claims);
    assert_eq!((usage.environments, usage.monthly_cost_usd), (3, 380));
    assert_eq!(usage.quota, hard("3", "6Gi"));
}

#[test]
fn usage_counts_only_provisioned_environments_at_their_class_terms() {
    let classes: BTreeMap<String, ClassTerms> = [(
        "preview".to_owned(),
        ClassTerms { monthly_cost_usd: 40, quota: Arc::new(hard("500m", "1Gi")), approval_required: false },
    )]
    .into();
    let request = |name: &str, tenant: &str, provisioned: bool| {
        let mut r: EnvironmentRequest = serde_yaml::from_str(&format!(
            "metadata: {{name: {name}, namespace: team}}
spec: {{tenant: {tenant}, class: preview, app: {{name: web, repoURL: 'https://example.com/web.git'}}}}"
        ))
        .expect("request");
        if provisioned {
            r.status = Some(crate::api::environment_request::EnvironmentRequestStatus {
                phase: Some(Phase::Ready),
                gitops: Some(crate::api::environment_request::GitOpsStatus {
                    commit: Some("abc".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        r
    };
    let requests = [
        request("a", "team", true),
        request("b", "team", true),
        request("c", "team", false),
        request("d", "other", true),
    ];
    let usage = usage("team", &requests, &classes);
    assert_eq!((usage.environments, usage.monthly_cost_usd), (2, 80));
    assert_eq!(usage.quota, hard("1", "2Gi"));
}
