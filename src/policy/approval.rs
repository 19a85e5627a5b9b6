//! Who may be handed an approval: the rules the auth API (`POST /v1/approvals`)
//! applies before it signs one. The class must need an approval, the caller must be in
//! one of its approver groups, and (four eyes) the caller must not be the recorded
//! creator of the request when it already exists; for a request not yet applied,
//! admission makes the same check ([`super::request::check_approval`]). A signed
//! approval's claims are checked against the same groups and creator when it is
//! verified (`approval::token`).

use kube::ResourceExt;

use super::request::creator;
use crate::api::{EnvironmentClass, EnvironmentRequest};

/// Why a caller may not be handed an approval. Each names what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApproverRefusal {
    /// The class does not need one.
    #[error("class {class:?} does not need an approval; apply the request as it is")]
    NotRequired { class: String },
    /// The caller is in none of the class's approver groups.
    #[error(
        "{subject} is in groups {groups:?}, none of which approves class {class:?} (approver groups: {approver_groups:?})"
    )]
    NotInApproverGroups { subject: String, groups: Vec<String>, class: String, approver_groups: Vec<String> },
    /// The caller created the request or wrote its spec (four eyes).
    #[error(
        "{subject} created {request} or wrote its current spec and cannot approve it; someone else in {approver_groups:?} must"
    )]
    SelfApproval { subject: String, request: String, approver_groups: Vec<String> },
}

impl ApproverRefusal {
    /// The stable reason code the auth API answers with.
    pub fn reason(&self) -> &'static str {
        match self {
            ApproverRefusal::NotRequired { .. } => "ApprovalNotRequired",
            ApproverRefusal::NotInApproverGroups { .. } => "NotInApproverGroups",
            ApproverRefusal::SelfApproval { .. } => "SelfApproval",
        }
    }
}

/// Whether someone in `groups` is an approver of `class`.
pub fn in_approver_groups(groups: &[String], class: &EnvironmentClass) -> bool {
    groups.iter().any(|group| class.spec.approval.approver_groups.contains(group))
}

/// Whether `subject` is the recorded creator of `request` (who may not approve it).
pub fn is_creator(subject: &str, request: &EnvironmentRequest) -> bool {
    creator(request) == Some(subject)
}

/// Whether `subject` created `request` or wrote its current spec: admission refuses
/// either's approval (four eyes), so the auth API does not sign one.
pub fn is_author(subject: &str, request: &EnvironmentRequest) -> bool {
    is_creator(subject, request) || super::request::spec_author(request) == Some(subject)
}

/// Whether `subject`, in `groups`, may be handed an approval for the request `target`
/// (`namespace/name`) of `class`. `existing` is that request as the cluster holds it,
/// if it exists.
pub fn may_approve(
    subject: &str,
    groups: &[String],
    class: &EnvironmentClass,
    target: &str,
    existing: Option<&EnvironmentRequest>,
) -> Result<(), ApproverRefusal> {
    let policy = &class.spec.approval;
    if !policy.required {
        return Err(ApproverRefusal::NotRequired { class: class.name_any() });
    }
    if !in_approver_groups(groups, class) {
        return Err(ApproverRefusal::NotInApproverGroups {
            subject: subject.to_owned(),
            groups: groups.to_vec(),
            class: class.name_any(),
            approver_groups: policy.approver_groups.clone(),
        });
    }
    if existing.is_some_and(|request| is_author(subject, request)) {
        return Err(ApproverRefusal::SelfApproval {
            subject: subject.to_owned(),
            request: target.to_owned(),
            approver_groups: policy.approver_groups.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::labels,
        testing::{class, request},
    };

    const TARGET: &str = "payments/checkout-prod";

    fn approvers() -> Vec<String> {
        vec!["developers".to_owned(), "platform-approvers".to_owned()]
    }

    fn created_by(who: &str) -> EnvironmentRequest {
        let mut existing = request("production");
        existing.annotations_mut().insert(labels::CREATED_BY_ANNOTATION.to_owned(), who.to_owned());
        existing
    }

    #[test]
    fn an_approver_of_the_class_may_approve_a_request_not_yet_applied_or_created_by_someone_else() {
        let production = class("production");
        assert_eq!(may_approve("alice", &approvers(), &production, TARGET, None), Ok(()));
        assert_eq!(may_approve("alice", &approvers(), &production, TARGET, Some(&created_by("bob"))), Ok(()));
    }

    #[test]
    fn a_class_without_required_approval_is_refused_by_name() {
        let refusal = may_approve("alice", &approvers(), &class("preview"), TARGET, None).expect_err("no approval");
        assert_eq!(refusal.reason(), "ApprovalNotRequired");
        assert_eq!(refusal.to_string(), "class \"preview\" does not need an approval; apply the request as it is");
    }

    #[test]
    fn a_caller_outside_the_approver_groups_is_told_which_groups_approve() {
        let groups = vec!["developers".to_owned()];
        let refusal = may_approve("mallory", &groups, &class("production"), TARGET, None).expect_err("not an approver");
        assert_eq!(refusal.reason(), "NotInApproverGroups");
        assert_eq!(
            refusal.to_string(),
            "mallory is in groups [\"developers\"], none of which approves class \"production\" \
             (approver groups: [\"platform-approvers\"])"
        );
        assert!(!in_approver_groups(&[], &class("production")));
    }

    #[test]
    fn the_recorded_creator_may_not_approve_their_own_request() {
        let existing = created_by("alice");
        let refusal =
            may_approve("alice", &approvers(), &class("production"), TARGET, Some(&existing)).expect_err("four eyes");
        assert_eq!(refusal.reason(), "SelfApproval");
        assert_eq!(
            refusal.to_string(),
            "alice created payments/checkout-prod or wrote its current spec and cannot approve it; someone else in [\"platform-approvers\"] must"
        );
    }

    #[test]
    fn whoever_wrote_the_current_spec_may_not_approve_it_either() {
        let mut existing = created_by("alice");
        existing.annotations_mut().insert(labels::SPEC_AUTHOR_ANNOTATION.to_owned(), "carol".to_owned());
        let refusal =
            may_approve("carol", &approvers(), &class("production"), TARGET, Some(&existing)).expect_err("four eyes");
        assert_eq!(refusal.reason(), "SelfApproval");
        assert!(is_author("alice", &existing) && !is_author("bob", &existing));
    }

    #[test]
    fn a_request_without_a_recorded_creator_has_no_creator_to_refuse() {
        let mut existing = request("production");
        existing.annotations_mut().remove(labels::CREATED_BY_ANNOTATION);
        assert!(!is_creator("alice", &existing));
        assert_eq!(may_approve("alice", &approvers(), &class("production"), TARGET, Some(&existing)), Ok(()));
    }
}
