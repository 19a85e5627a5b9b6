//! Planning (pure): which environments a rollout touches, in which stage and batch.
//! Computed once when the rollout starts and frozen in its status, so requests
//! created or relabelled later do not reshuffle batches already committed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString};
use kube::core::{Selector, SelectorExt};

use crate::api::{
    EnvironmentRequest,
    rollout::{HOLD_LABEL, MAX_ENVIRONMENTS, MAX_SKIPPED_NAMES, PlanSummary, RolloutSpec, Skipped, StageStatus},
};
use crate::policy::budget::is_provisioned;

/// Why a selected environment is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Labelled `berth.dev/hold: "true"`.
    Held,
    /// Deploys another app than the rollout's.
    OtherApp,
    /// No stage matches it.
    NoStage,
    /// Not provisioned (awaiting approval, over budget, failed): a rollout only
    /// moves environments that run, and never around their own admission.
    NotProvisioned,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "Held",
            Self::OtherApp => "OtherApp",
            Self::NoStage => "NoStage",
            Self::NotProvisioned => "NotProvisioned",
        }
    }
}

/// A rollout's plan: each stage's environments in batch order, and what was skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub stages: Vec<StageStatus>,
    pub skipped: Vec<(String, SkipReason)>,
}

impl Plan {
    /// Environments planned across all stages.
    pub fn environments(&self) -> usize {
        self.stages.iter().map(|s| s.environments.len()).sum()
    }

    /// The summary status keeps (names of the first skipped only).
    pub fn summary(&self, planned_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> PlanSummary {
        PlanSummary {
            environments: u32::try_from(self.environments()).unwrap_or(u32::MAX),
            skipped: u32::try_from(self.skipped.len()).unwrap_or(u32::MAX),
            skipped_environments: self
                .skipped
                .iter()
                .take(MAX_SKIPPED_NAMES)
                .map(|(name, reason)| Skipped { name: name.clone(), reason: reason.as_str().to_owned() })
                .collect(),
            planned_at: Some(planned_at),
        }
    }
}

/// Why a rollout cannot be planned as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{what} is not a valid label selector: {message}")]
    Selector { what: String, message: String },
    #[error("stage {stage}: {field} {value:?} is neither a count nor a percentage such as \"10%\"")]
    Size { stage: String, field: &'static str, value: String },
    #[error("the selector matches {count} environments; a rollout plans at most {MAX_ENVIRONMENTS}")]
    TooMany { count: usize },
    #[error("the selector matches no environment that deploys app {app}")]
    Empty { app: String },
}

fn selector(what: impl Into<String>, selector: &LabelSelector) -> Result<Selector, PlanError> {
    Selector::try_from(selector.clone()).map_err(|e| PlanError::Selector { what: what.into(), message: e.to_string() })
}

/// Resolves a count or a percentage of `total`: a percentage rounds down; `minimum`
/// is the floor (1 for batch sizes, 0 for failures allowed).
pub fn resolve(value: &IntOrString, total: usize, minimum: u32) -> Option<u32> {
    let resolved = match value {
        IntOrString::Int(n) => u32::try_from(*n).ok()?,
        IntOrString::String(s) => {
            let percent: u64 = s.strip_suffix('%')?.parse().ok().filter(|p| *p <= 100)?;
            u32::try_from(total as u64 * percent / 100).ok()?
        }
    };
    Some(resolved.max(minimum))
}

/// Whether the request is held back from every rollout (`berth.dev/hold: "true"`).
pub fn is_held(request: &EnvironmentRequest) -> bool {
    request.metadata.labels.as_ref().and_then(|l| l.get(HOLD_LABEL)).is_some_and(|v| v == "true")
}

/// The rollout's and its stages' selectors, parsed once.
struct Selectors {
    rollout: Selector,
    stages: Vec<Option<Selector>>,
}

impl Selectors {
    fn new(spec: &RolloutSpec) -> Result<Self, PlanError> {
        let rollout = selector("spec.selector", &spec.selector)?;
        let stages = spec
            .stages
            .iter()
            .map(|stage| {
                stage.selector.as_ref().map(|s| selector(format!("stage {} selector", stage.name), s)).transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selectors { rollout, stages })
    }

    fn selects(&self, request: &EnvironmentRequest) -> bool {
        self.rollout.matches(request.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
    }

    /// The first stage that matches `request` (its class and the stage's selector).
    fn stage_of(&self, spec: &RolloutSpec, request: &EnvironmentRequest) -> Option<usize> {
        let empty = BTreeMap::new();
        let labels = request.metadata.labels.as_ref().unwrap_or(&empty);
        spec.stages.iter().zip(&self.stages).position(|(stage, stage_selector)| {
            (stage.classes.is_empty() || stage.classes.contains(&request.spec.class))
                && stage_selector.as_ref().is_none_or(|s| s.matches(labels))
        })
    }
}

/// Each stage's classes as best known before the plan is made (at admission): the
/// classes it names, and those of the requests it would take now (held, other
/// apps' and deleted ones aside). Who approves a stage depends on them.
pub fn stage_classes<'a>(
    spec: &RolloutSpec,
    requests: impl IntoIterator<Item = &'a EnvironmentRequest>,
) -> Result<Vec<std::collections::BTreeSet<String>>, PlanError> {
    let selectors = Selectors::new(spec)?;
    let mut classes: Vec<std::collections::BTreeSet<String>> =
        spec.stages.iter().map(|s| s.classes.iter().cloned().collect()).collect();
    for request in requests {
        if request.metadata.deletion_timestamp.is_some()
            || !selectors.selects(request)
            || is_held(request)
            || request.spec.app.name != spec.app
        {
            continue;
        }
        if let Some(index) = selectors.stage_of(spec, request) {
            classes[index].insert(request.spec.class.clone());
        }
    }
    Ok(classes)
}

/// Plans `spec` over `requests` (the rollout namespace's requests, any order).
/// Environments are ordered by name within each stage: stable, and the order a
/// person reading `kubectl get envreq` expects. Environments of classes whose
/// approval is required are planned too: their stage waits for an approval.
pub fn plan<'a>(
    spec: &RolloutSpec,
    requests: impl IntoIterator<Item = &'a EnvironmentRequest>,
) -> Result<Plan, PlanError> {
    let selectors = Selectors::new(spec)?;
    let mut members: Vec<Vec<String>> = vec![Vec::new(); spec.stages.len()];
    let mut skipped = Vec::new();
    let mut selected: Vec<&EnvironmentRequest> = requests
        .into_iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .filter(|r| selectors.selects(r))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for request in selected {
        let name = request.metadata.name.clone().unwrap_or_default();
        if is_held(request) {
            skipped.push((name, SkipReason::Held));
            continue;
        }
        if request.spec.app.name != spec.app {
            skipped.push((name, SkipReason::OtherApp));
            continue;
        }
        if !is_provisioned(request) {
            skipped.push((name, SkipReason::NotProvisioned));
            continue;
        }
        match selectors.stage_of(spec, request) {
            Some(index) => members[index].push(name),
            None => skipped.push((name, SkipReason::NoStage)),
        }
    }
    let count: usize = members.iter().map(Vec::len).sum();
    if count > MAX_ENVIRONMENTS {
        return Err(PlanError::TooMany { count });
    }
    if count == 0 {
        return Err(PlanError::Empty { app: spec.app.clone() });
    }
    let stages = spec
        .stages
        .iter()
        .zip(members)
        .map(|(stage, environments)| {
            let size = |field, value: &IntOrString, minimum| {
                resolve(value, environments.len(), minimum).ok_or_else(|| PlanError::Size {
                    stage: stage.name.clone(),
                    field,
                    value: match value {
                        IntOrString::Int(n) => n.to_string(),
                        IntOrString::String(s) => s.clone(),
                    },
                })
            };
            Ok(StageStatus {
                name: stage.name.clone(),
                batch_size: size("batchSize", &stage.batch_size, 1)?,
                max_failures: size("maxFailures", &stage.max_failures, 0)?,
                environments,
                ..StageStatus::default()
            })
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    Ok(Plan { stages, skipped })
}

/// Batches in a stage.
pub fn batches(stage: &StageStatus) -> u32 {
    let size = stage.batch_size.max(1) as usize;
    u32::try_from(stage.environments.len().div_ceil(size)).unwrap_or(u32::MAX)
}

/// The environments of 1-based batch `number` of `stage`.
pub fn batch(stage: &StageStatus, number: u32) -> &[String] {
    let size = stage.batch_size.max(1) as usize;
    let start = (number.saturating_sub(1) as usize).saturating_mul(size).min(stage.environments.len());
    let end = start.saturating_add(size).min(stage.environments.len());
    &stage.environments[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::Stage;

    fn request(name: &str, class: &str, app: &str, labels: &[(&str, &str)]) -> EnvironmentRequest {
        let mut r = crate::testing::request(class);
        r.metadata.name = Some(name.to_owned());
        r.spec.app.name = app.to_owned();
        r.metadata.labels = Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
        crate::testing::rollout::provision(&mut r);
        r
    }

    fn stage(name: &str, classes: &[&str], batch_size: IntOrString) -> Stage {
        serde_json::from_value(serde_json::json!({ "name": name, "classes": classes, "batchSize": batch_size }))
            .expect("a stage")
    }

    fn spec(stages: Vec<Stage>) -> RolloutSpec {
        serde_json::from_value(serde_json::json!({
            "app": "checkout",
            "revision": "v2",
            "selector": { "matchLabels": { "team": "payments" } },
            "stages": stages,
        }))
        .expect("a spec")
    }

    const TEAM: (&str, &str) = ("team", "payments");

    #[test]
    fn environments_go_to_the_first_matching_stage_in_name_order_and_the_rest_are_skipped_with_a_reason() {
        let requests = [
            request("prod-b", "production", "checkout", &[TEAM]),
            request("prod-a", "production", "checkout", &[TEAM]),
            request("stage-1", "staging", "checkout", &[TEAM]),
            request("held", "production", "checkout", &[TEAM, (HOLD_LABEL, "true")]),
            request("web", "production", "web", &[TEAM]),
            request("preview", "preview", "checkout", &[TEAM]),
            request("unlabelled", "production", "checkout", &[]),
            {
                let mut waiting = request("awaiting", "production", "checkout", &[TEAM]);
                waiting.status = None;
                waiting
            },
        ];
        let spec = spec(vec![
            stage("staging", &["staging"], IntOrString::Int(1)),
            stage("production", &["production"], IntOrString::Int(1)),
        ]);
        let plan = plan(&spec, &requests).expect("a plan");
        assert_eq!(plan.stages[0].environments, ["stage-1"]);
        assert_eq!(plan.stages[1].environments, ["prod-a", "prod-b"]);
        assert_eq!(
            plan.skipped,
            [
                ("awaiting".to_owned(), SkipReason::NotProvisioned),
                ("held".to_owned(), SkipReason::Held),
                ("preview".to_owned(), SkipReason::NoStage),
                ("web".to_owned(), SkipReason::OtherApp),
            ]
        );
        assert_eq!(plan.environments(), 3);
        // The same requests in another order plan the same.
        let mut reversed = requests.clone();
        reversed.reverse();
        assert_eq!(super::plan(&spec, &reversed).expect("a plan"), plan);
    }

    #[test]
    fn batch_sizes_are_counts_or_percentages_rounded_down_and_at_least_one() {
        assert_eq!(resolve(&IntOrString::Int(10), 1000, 1), Some(10));
        assert_eq!(resolve(&IntOrString::String("10%".into()), 1000, 1), Some(100));
        assert_eq!(resolve(&IntOrString::String("10%".into()), 15, 1), Some(1));
        assert_eq!(resolve(&IntOrString::String("10%".into()), 5, 1), Some(1));
        assert_eq!(resolve(&IntOrString::String("5%".into()), 10, 0), Some(0));
        assert_eq!(resolve(&IntOrString::String("100%".into()), 7, 1), Some(7));
        for bad in ["ten", "10", "101%", "-5%"] {
            assert_eq!(resolve(&IntOrString::String(bad.into()), 10, 1), None, "{bad}");
        }
        assert_eq!(resolve(&IntOrString::Int(-1), 10, 0), None);
    }

    #[test]
    fn a_stage_is_cut_into_batches_and_the_last_one_takes_the_rest() {
        let requests: Vec<_> =
            (0..7).map(|i| request(&format!("prod-{i}"), "production", "checkout", &[TEAM])).collect();
        let spec = spec(vec![stage("production", &["production"], IntOrString::String("30%".into()))]);
        let plan = plan(&spec, &requests).expect("a plan");
        let production = &plan.stages[0];
        assert_eq!(production.batch_size, 2);
        assert_eq!(batches(production), 4);
        assert_eq!(batch(production, 1), ["prod-0", "prod-1"]);
        assert_eq!(batch(production, 4), ["prod-6"]);
        assert!(batch(production, 5).is_empty());
    }

    #[test]
    fn nothing_to_promote_and_bad_selectors_are_errors_a_person_can_act_on() {
        let spec = spec(vec![stage("production", &["production"], IntOrString::Int(1))]);
        let other = [request("web", "production", "web", &[TEAM])];
        let error = plan(&spec, &other).expect_err("nothing to promote");
        assert_eq!(error.to_string(), "the selector matches no environment that deploys app checkout");
        let mut bad = spec.clone();
        bad.selector.match_expressions = Some(vec![
            serde_json::from_value(serde_json::json!({ "key": "team", "operator": "Near", "values": ["x"] }))
                .expect("an expression"),
        ]);
        assert!(matches!(plan(&bad, &other), Err(PlanError::Selector { .. })));
    }
}
