//! Step 2 of the pipeline (pure): the request against the rules — tenancy, class,
//! cluster, TTL, its GitOps folder and its approval — into one [`ValidatedRequest`],
//! the single input of the build. Budget is decided after this, by the guard.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{dereference::Dereferenced, folder};
use crate::{
    api::EnvironmentRequest,
    approval::{Rejection, VerifiedApproval, Verifier},
    gitops::RepoPath,
    policy::{budget::is_provisioned, request::Denial},
    render,
};

/// A request that may be provisioned, with everything the next steps need.
#[derive(Debug)]
pub struct ValidatedRequest<'a> {
    /// Tenant, class, namespace and effective TTL, checked once for rendering.
    pub environment: render::Validated<'a>,
    /// Where its files go in the GitOps repository.
    pub folder: RepoPath,
    /// When it expires (creation + effective TTL); `None` never.
    pub expires_at: Option<Timestamp>,
    /// Its verified approval, when its class needs one.
    pub approval: Option<VerifiedApproval>,
}

/// Validates `request` against what it refers to, as of `now`.
pub fn validate<'a>(
    request: &'a EnvironmentRequest,
    refs: &'a Dereferenced,
    verifier: Option<&Verifier>,
    now: Timestamp,
) -> Result<ValidatedRequest<'a>, Denial> {
    let environment =
        crate::policy::request::check(request, refs.tenant.as_deref(), refs.class.as_deref(), &refs.claimants)?;
    let folder = folder(request).map_err(Denial::Invalid)?;
    let class = environment.class;
    // Provisioned with a token from before approvals were bound to UIDs: that
    // approval was for creating it, and it keeps running (README "Approvals").
    let keep_unbound = is_provisioned(request);
    let approval = match crate::policy::request::check_approval(request, class, verifier, now, keep_unbound) {
        // A provisioned environment keeps running when its token later expires: the
        // approval was for creating it. Every other check still holds: the token is
        // judged again as of just before it expired (this request, this spec, …).
        Err(Denial::ApprovalRejected { rejection: Rejection::Expired { expired_at }, .. })
            if is_provisioned(request) =>
        {
            let before = expired_at - SignedDuration::from_secs(1);
            crate::policy::request::check_approval(request, class, verifier, before, keep_unbound)?
        }
        decided => decided?,
    };
    let expires_at = environment.expires_at();
    Ok(ValidatedRequest { environment, folder, expires_at, approval })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::testing::{class, payments, request};

    fn refs(class_name: &str) -> Dereferenced {
        Dereferenced {
            tenant: Some(Arc::new(payments())),
            class: Some(Arc::new(class(class_name))),
            claimants: vec!["payments".to_owned()],
        }
    }

    #[test]
    fn a_valid_request_carries_its_folder_and_expiry_computed_once() {
        let mut req = request("preview");
        req.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_000).expect("time")));
        req.spec.ttl = Some("2h".parse().expect("duration"));
        let refs = refs("preview");
        let validated = validate(&req, &refs, None, Timestamp::now()).expect("valid");
        assert_eq!(validated.expires_at, Some(Timestamp::from_second(1_000 + 7_200).expect("time")));
        assert!(validated.folder.as_str().ends_with(&format!("/{}", req.metadata.name.clone().unwrap_or_default())));
        assert!(validated.approval.is_none(), "preview needs no approval");
    }

    #[test]
    fn an_unparsable_ttl_is_refused_never_silently_ignored() {
        let mut req = request("preview");
        req.spec.ttl = Some(serde_json::from_value(serde_json::json!("soon")).expect("any string deserializes"));
        let denial = validate(&req, &refs("preview"), None, Timestamp::now()).expect_err("refused");
        assert!(matches!(&denial, Denial::Invalid(message) if message.contains("spec.ttl")), "{denial:?}");
    }

    #[test]
    fn missing_references_and_unapproved_production_are_denied_with_their_reason() {
        let req = request("preview");
        let missing = Dereferenced { class: None, ..refs("preview") };
        assert!(matches!(validate(&req, &missing, None, Timestamp::now()), Err(Denial::ClassMissing { .. })));
        let production = request("production");
        assert!(matches!(
            validate(&production, &refs("production"), None, Timestamp::now()),
            Err(Denial::ApprovalMissing { .. } | Denial::CreatorUnknown { .. })
        ));
    }
}
