//! Labels and annotations Berth puts on what it renders, so it can find those
//! objects again (drift, cleanup) and people can see where they came from.

/// The tenant an object belongs to.
pub const TENANT: &str = "berth.dev/tenant";
/// The environment (its namespace name) an object belongs to.
pub const ENVIRONMENT: &str = "berth.dev/environment";
/// The EnvironmentClass the environment was rendered from.
pub const CLASS: &str = "berth.dev/class";
/// Standard marker of the tool that manages an object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`] on everything Berth renders.
pub const MANAGER: &str = "berth";

/// The EnvironmentRequest (`namespace/name`) an object was rendered for.
pub const REQUEST_ANNOTATION: &str = "berth.dev/request";

/// Who created an EnvironmentRequest, recorded by Berth's mutating webhook from the
/// apiserver's authenticated user (never from the object), for the four-eyes rule.
pub const CREATED_BY_ANNOTATION: &str = "berth.dev/created-by";

/// Who last changed an EnvironmentRequest's spec (its approval aside), recorded the
/// same way: the person who wrote what is approved may not approve it either.
pub const SPEC_AUTHOR_ANNOTATION: &str = "berth.dev/spec-author";

/// Finalizer that keeps an EnvironmentRequest until its folder is gone from git.
/// The mutating webhook puts it on at creation (saving the controller a write per
/// request); the controller adds it when the webhook did not.
pub const FINALIZER: &str = "berth.dev/gitops-cleanup";

/// Pod Security Admission's enforced level.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
