//! The harness behind Berth's fuzz targets: the admission webhook's review parsing and
//! decisions, approval tokens and bearer tokens, fed to the functions the webhook runs.
//!
//! Each `fuzz_targets/*.rs` is one line calling [`admission_review`], [`approval_token`]
//! or [`bearer_token`]; `tests/fuzz_smoke.rs` includes this file with `#[path]`, so the
//! same code (and its assertions) runs on stable Rust in `cargo test`.
//!
//! The property is that nothing panics. On top of that the harness asserts what must
//! hold for any input:
//! - admission answers the request it was given, fails closed on an object it cannot
//!   read, and the mutating webhook's patch applies and records the creator;
//! - no approval or bearer token is accepted unless it is exactly one issued here, except
//!   for claims the harness signed itself, which are accepted exactly when they say what
//!   the verifier documents it requires;
//! - no rejection message quotes the token.
//!
//! Some inputs are relative to keys made at startup (the Ed25519 approval key is
//! generated, so no fixed token can be valid): in reviews, `@APPROVAL@` becomes the
//! token approving `examples/environmentrequest-production.yaml`, and in an approval
//! token's header `@KID@` becomes the key's id.

use std::sync::OnceLock;
use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use berth::{
    api::{EnvironmentClass, EnvironmentRequest, Rollout, Tenant, labels::CREATED_BY_ANNOTATION},
    approval::{
        ApprovalClaims, ApprovalKind, DEFAULT_LEEWAY, Issuer, Rejection, Target, VerificationKeys, Verifier,
        spec_digest,
    },
    auth::{AuthError, BearerConfig, BearerVerifier, CLOCK_LEEWAY_SECONDS, Caller, dev_token},
    index::Index,
    testing::{self, approval_keys, class, payments, request},
    webhook::{
        Kind,
        admission::{self, Checks},
        parse_review,
    },
};
use k8s_openapi::jiff::Timestamp;
use kube::core::admission::Operation;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Every plural the webhook serves under `/validate/`.
pub const KINDS: [&str; 4] = ["environmentrequests", "tenants", "environmentclasses", "rollouts"];
/// The approval tokens' issuer.
pub const ISSUER: &str = testing::ISSUER;
/// The approval tokens' audience.
pub const AUDIENCE: &str = testing::AUDIENCE;
/// Who created the production request (its `berth.dev/created-by`).
pub const CREATOR: &str = "alice";
/// Who approved it.
pub const APPROVER: &str = "bob";
/// The production class's approver group.
pub const APPROVER_GROUP: &str = testing::APPROVER_GROUP;
/// The bearer tokens' audience.
pub const BEARER_AUDIENCE: &str = "berth";
/// HS256 secret of the bearer verifier (what `berth token` signs with in development).
pub const BEARER_SECRET: &[u8] = b"berth-fuzz-hs256-secret-0123456789abcdef";
/// Replaced with the valid approval token in reviews.
pub const APPROVAL_PLACEHOLDER: &str = "@APPROVAL@";
/// Replaced with the approval key's id in approval token headers.
pub const KID_PLACEHOLDER: &str = "@KID@";

/// How far past `exp` and before `nbf` an approval is still accepted, in seconds.
const APPROVAL_LEEWAY: i64 = DEFAULT_LEEWAY.as_secs() as i64;

/// The clock every decision is made at.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("a representable time")
}

/// Everything made once per process.
pub struct Fixtures {
    /// The cluster admission sees: the examples' tenant and classes, and the staging request.
    pub cluster: Index,
    /// `examples/environmentclass-production.yaml`.
    pub production_class: EnvironmentClass,
    /// `examples/environmentrequest-production.yaml`, created by [`CREATOR`], without approval.
    pub production: EnvironmentRequest,
    pub issuer: Issuer,
    pub verifier: Verifier,
    /// The key id approvals are signed with.
    pub kid: String,
    /// Its public key, SPKI PEM.
    pub public_pem: String,
    /// [`APPROVER`]'s approval of `production`, issued at [`now`].
    pub approval: String,
    pub bearer: BearerVerifier,
    /// A `berth token` for [`CREATOR`], issued at [`now`].
    pub bearer_token: String,
}

impl Fixtures {
    /// What an approval token is checked against: the production request.
    pub fn target(&self) -> Target<'_> {
        Target {
            namespace: "payments",
            name: "checkout-prod",
            uid: self.production.metadata.uid.as_deref(),
            accept_unbound: false,
            spec: &self.production.spec,
            approver_groups: &self.production_class.spec.approval.approver_groups,
            creator: Some(CREATOR),
        }
    }
}

/// The fixtures, made on first use.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let classes: Vec<EnvironmentClass> = ["preview", "staging", "production"].map(class).into();
        let production_class = classes[2].clone();
        assert_eq!(production_class.spec.approval.approver_groups, [APPROVER_GROUP], "the production class");
        let cluster = Index::with_objects([payments()], classes, [request("staging")]);
        let mut production = request("production");
        production.metadata.annotations.get_or_insert_default().insert(CREATED_BY_ANNOTATION.into(), CREATOR.into());

        let keys = approval_keys();
        let approval = keys.approve(&production, APPROVER, now());
        let (issuer, public) = (keys.issuer, keys.public_pem);
        let kid = issuer.kid().to_owned();
        // Verified from the public key's PEM, as Berth reads a configured key.
        let keys = VerificationKeys::from_pems(&[public.as_bytes()]).expect("the verification key");
        let verifier = Verifier::new(keys, ISSUER.into(), AUDIENCE.into());

        let secret_file = std::env::temp_dir().join(format!("berth-fuzz-hs256-{}", std::process::id()));
        std::fs::write(&secret_file, BEARER_SECRET).expect("write the HS256 secret");
        let config = BearerConfig {
            hs256_secret_file: Some(secret_file.clone()),
            audience: BEARER_AUDIENCE.into(),
            ..Default::default()
        };
        let bearer = BearerVerifier::from_config(&config).expect("the bearer verifier");
        let _ = std::fs::remove_file(&secret_file);
        let groups = ["team-payments".to_owned()];
        let bearer_token =
            dev_token(BEARER_SECRET, CREATOR, &groups, &[], BEARER_AUDIENCE, Duration::from_secs(3600), now())
                .expect("a bearer token");

        Fixtures {
            cluster,
            production_class,
            production,
            issuer,
            verifier,
            kid,
            public_pem: public,
            approval,
            bearer,
            bearer_token,
        }
    })
}

/// `bytes` with `placeholder` replaced by `with` everywhere.
fn replace(bytes: &[u8], placeholder: &str, with: &str) -> Vec<u8> {
    let placeholder = placeholder.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.starts_with(placeholder) {
            out.extend_from_slice(with.as_bytes());
            rest = &rest[placeholder.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Admission reviews
// ---------------------------------------------------------------------------------------

/// What the webhook answered one review.
#[derive(Debug)]
pub struct Admitted {
    /// `allowed` of `/validate/<plural>`, in the order of [`KINDS`].
    pub allowed: [bool; 4],
    /// The JSON patch of `/mutate/environmentrequests`, if it sent one.
    pub patch: Option<Vec<u8>>,
}

impl Admitted {
    /// `allowed` of `/validate/<plural>`.
    pub fn allowed(&self, plural: &str) -> bool {
        self.allowed[KINDS.iter().position(|k| *k == plural).expect("a Berth plural")]
    }
}

/// The `admission_review` target: `data` (placeholders filled) as a review body.
pub fn admission_review(data: &[u8]) -> Option<Admitted> {
    let body = replace(data, APPROVAL_PLACEHOLDER, &fixtures().approval);
    admit(&body).ok()
}

/// Whether `object` reads as a `K`, as admission reads it.
fn readable<K: DeserializeOwned>(object: &Value) -> bool {
    serde_json::from_value::<K>(object.clone()).is_ok()
}

/// Parses `body` as the webhook does, mutates it, validates the mutated object as each
/// kind (the apiserver's order), and checks the answers; `Err` is the 400 the webhook
/// answers a body it cannot read.
pub fn admit(body: &[u8]) -> Result<Admitted, String> {
    let fixtures = fixtures();
    let mut req = parse_review(body)?;
    let checks = Checks { verifier: Some(&fixtures.verifier), now: now() };
    let object = req.object.as_ref().and_then(|o| serde_json::to_value(o).ok());

    let response = admission::mutate(&req, admission::Kind::EnvironmentRequest);
    assert_eq!(response.uid, req.uid, "the response answers the review's request");
    // The mutating webhook refuses only what it cannot read as an EnvironmentRequest
    // (the validating webhook would refuse it too), and then says why.
    let readable_new = object.as_ref().is_none_or(readable::<EnvironmentRequest>);
    let old_value = req.old_object.as_ref().and_then(|o| serde_json::to_value(o).ok());
    let readable_old = old_value.as_ref().is_none_or(readable::<EnvironmentRequest>);
    if !response.allowed {
        assert!(!response.result.message.is_empty(), "a refusal says why");
        assert!(
            !(readable_new && readable_old),
            "the mutating webhook refused a readable request: {}",
            response.result.message
        );
    }
    let patch = response.patch.clone();
    let mutate_review = response;
    if let (Some(patch), Some(object)) = (&patch, &object) {
        let recorded = match req.operation {
            Operation::Create => req.user_info.username.clone(),
            Operation::Update => req
                .old_object
                .as_ref()
                .and_then(|old| old.metadata.annotations.as_ref()?.get(CREATED_BY_ANNOTATION).cloned()),
            _ => panic!("a patch for a {:?}", req.operation),
        };
        let operations: json_patch::Patch = serde_json::from_slice(patch).expect("the patch is a JSON patch");
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &operations).expect("the patch applies to the object it was made for");
        let creator = patched.pointer("/metadata/annotations/berth.dev~1created-by").and_then(Value::as_str);
        assert_eq!(creator, recorded.as_deref(), "the patch records the creator");
        // The apiserver validates the object as mutated.
        req.object = Some(serde_json::from_value(patched).expect("a patched object is still an object"));
    }
    serde_json::to_vec(&mutate_review.into_review()).expect("the response encodes");
    let mut allowed = [false; 4];
    for (i, plural) in KINDS.iter().enumerate() {
        let kind = Kind::from_plural(plural).expect("a Berth plural");
        assert_eq!(kind.plural(), *plural);
        let response = admission::validate(&req, kind, &fixtures.cluster, &checks);
        assert_eq!(response.uid, req.uid, "the response answers the review's request");
        if !response.allowed {
            assert!(!response.result.message.is_empty(), "a denial says why");
        }
        // Fail closed: an object admission cannot read as its kind is never admitted.
        let unreadable = match (kind, &object) {
            (Kind::EnvironmentRequest, Some(o)) => !readable::<EnvironmentRequest>(o),
            (Kind::Tenant, Some(o)) if req.operation != Operation::Delete => !readable::<Tenant>(o),
            (Kind::Rollout, Some(o)) => !readable::<Rollout>(o),
            _ => false,
        };
        assert!(!(unreadable && response.allowed), "{plural}: admitted an object it cannot read");
        allowed[i] = response.allowed;
        serde_json::to_vec(&response.into_review()).expect("the response encodes");
    }

    Ok(Admitted { allowed, patch })
}

// ---------------------------------------------------------------------------------------
// Reading fuzz input
// ---------------------------------------------------------------------------------------

/// Takes values off the front of fuzz input; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, rest)| (*b, rest));
        self.0 = rest;
        first
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }
    fn i16(&mut self) -> i16 {
        i16::from_le_bytes([self.byte(), self.byte()])
    }
    /// A string of up to 255 bytes (lossy UTF-8), length first.
    fn string(&mut self) -> String {
        let len = usize::from(self.byte()).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }
}

/// `data` as up to three byte strings separated by NUL.
fn three_parts(data: &[u8]) -> [&[u8]; 3] {
    let mut parts = data.splitn(3, |b| *b == 0);
    std::array::from_fn(|_| parts.next().unwrap_or_default())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `token` with byte edits `(u16 position, byte)` from `edits`; a last single byte
/// truncates it at that fraction of its length.
fn edit(token: &str, edits: &[u8]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let mut chunks = edits.chunks_exact(3);
    for chunk in &mut chunks {
        if bytes.is_empty() {
            break;
        }
        let at = usize::from(u16::from_le_bytes([chunk[0], chunk[1]])) % bytes.len();
        bytes[at] = chunk[2];
    }
    if let [cut] = chunks.remainder() {
        bytes.truncate(bytes.len() * usize::from(*cut) / 256);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------------------
// Approval tokens
// ---------------------------------------------------------------------------------------

/// The `approval_token` target. The first byte picks how the rest becomes a token:
/// 0 as is; 1 header, payload and signature (NUL-separated), base64url-encoded; 2 the
/// valid header and signature around the rest as payload; 3 byte edits of the valid
/// token; 4 approval claims the harness signs with the real key. Returns whether the
/// token was accepted.
pub fn approval_token(data: &[u8]) -> bool {
    let fixtures = fixtures();
    let Some((&mode, rest)) = data.split_first() else {
        return verify_approval("").is_ok();
    };
    match mode % 5 {
        0 => verify_approval(&String::from_utf8_lossy(rest)).is_ok(),
        1 => {
            let [header, payload, signature] = three_parts(rest);
            let header = replace(header, KID_PLACEHOLDER, &fixtures.kid);
            verify_approval(&format!("{}.{}.{}", b64(&header), b64(payload), b64(signature))).is_ok()
        }
        2 => {
            let mut parts = fixtures.approval.split('.');
            let (header, _, signature) = (parts.next(), parts.next(), parts.next());
            let token = format!("{}.{}.{}", header.unwrap_or_default(), b64(rest), signature.unwrap_or_default());
            verify_approval(&token).is_ok()
        }
        3 => verify_approval(&edit(&fixtures.approval, rest)).is_ok(),
        _ => signed_approval(rest),
    }
}

/// Verifies `token` against the production request; only the issued token may pass.
pub fn verify_approval(token: &str) -> Result<String, Rejection> {
    let fixtures = fixtures();
    let verdict = fixtures.verifier.verify(token, &fixtures.target(), now());
    match &verdict {
        Ok(approval) => {
            assert_eq!(token.trim(), fixtures.approval, "accepted a token Berth did not issue");
            assert_eq!(approval.approver, APPROVER);
        }
        Err(rejection) => quiet(&rejection.to_string(), rejection.reason(), token),
    }
    verdict.map(|approval| approval.approver)
}

/// A rejection's message and reason are there and do not quote the token.
fn quiet(message: &str, reason: &str, token: &str) {
    assert!(!message.is_empty() && !reason.is_empty());
    let token = token.trim();
    // Short tokens may appear by chance (a kid is quoted, up to 64 characters).
    if token.len() > 80 {
        assert!(!message.contains(token), "the rejection quotes the token: {message}");
    }
}

/// Claims read from `data`, signed with the approval key: each bit of the first two
/// bytes swaps a valid claim for one from the input. Accepted exactly when the claims
/// are what `Verifier::verify` documents.
fn signed_approval(data: &[u8]) -> bool {
    let fixtures = fixtures();
    let mut input = Input(data);
    let flags = u16::from_le_bytes([input.byte(), input.byte()]);
    let mut claim = |bit: u16, valid: &str| if flags & (1 << bit) == 0 { valid.to_owned() } else { input.string() };
    let iss = claim(0, ISSUER);
    let aud = claim(1, AUDIENCE);
    let sub = claim(2, APPROVER);
    let namespace = claim(3, "payments");
    let name = claim(4, "checkout-prod");
    let digest = claim(5, &spec_digest(&fixtures.production.spec));
    let production_uid = fixtures.production.metadata.uid.clone().unwrap_or_default();
    let uid = claim(12, &production_uid);
    let group = claim(6, APPROVER_GROUP);
    let groups = if flags & (1 << 7) == 0 { vec![group] } else { Vec::new() };
    let n = now().as_second();
    let mut time = |bit: u16, scale: i64| {
        if flags & (1 << bit) == 0 { n + i64::from(input.i16()) * scale } else { input.i64() }
    };
    let iat = time(8, 1);
    let nbf = time(9, 1);
    let exp = time(10, 16);
    // A rollout stage's approval is never a request's: the kind flips with a flag.
    let kind = if flags & (1 << 11) == 0 { ApprovalKind::Request } else { ApprovalKind::Rollout };
    let claims = ApprovalClaims {
        iss,
        aud,
        sub,
        groups,
        kind,
        namespace,
        name,
        digest,
        uid: Some(uid),
        jti: None,
        stage: None,
        revision: None,
        rbac_classes: None,
        freeze_override: false,
        iat,
        nbf,
        exp,
    };
    let Ok(token) = fixtures.issuer.sign(&claims) else {
        return false;
    };
    let expected = !claims.sub.is_empty()
        && claims.kind == ApprovalKind::Request
        && claims.iss == ISSUER
        && claims.aud == AUDIENCE
        && n < exp.saturating_add(APPROVAL_LEEWAY)
        && nbf <= n.saturating_add(APPROVAL_LEEWAY)
        && claims.namespace == "payments"
        && claims.name == "checkout-prod"
        && claims.uid.as_deref() == Some(production_uid.as_str())
        && claims.digest == spec_digest(&fixtures.production.spec)
        && claims.groups.iter().any(|g| g == APPROVER_GROUP)
        && claims.sub != CREATOR
        && Timestamp::from_second(exp).is_ok();
    let verdict = fixtures.verifier.verify(&token, &fixtures.target(), now());
    assert_eq!(verdict.is_ok(), expected, "{claims:?}: {verdict:?}");
    if let Ok(approval) = &verdict {
        assert_eq!(approval.approver, claims.sub);
        assert_eq!(approval.key_id, fixtures.kid);
    }
    verdict.is_ok()
}

// ---------------------------------------------------------------------------------------
// Bearer tokens
// ---------------------------------------------------------------------------------------

/// The `bearer_token` target. The first byte picks how the rest becomes an
/// `Authorization` value: 0 as is; 1 `Bearer ` and header, payload and signature
/// (NUL-separated), base64url-encoded; 2 the same with the real HS256 signature; 3 byte
/// edits of a valid token. Returns whether it was accepted.
pub fn bearer_token(data: &[u8]) -> bool {
    let fixtures = fixtures();
    let Some((&mode, rest)) = data.split_first() else {
        return authenticate(None).is_ok();
    };
    match mode % 4 {
        0 => authenticate(Some(&String::from_utf8_lossy(rest))).is_ok(),
        1 => {
            let [header, payload, signature] = three_parts(rest);
            authenticate(Some(&format!("Bearer {}.{}.{}", b64(header), b64(payload), b64(signature)))).is_ok()
        }
        2 => {
            let [header, payload, _] = three_parts(rest);
            signed_bearer(header, payload)
        }
        _ => authenticate(Some(&format!("Bearer {}", edit(&fixtures.bearer_token, rest)))).is_ok(),
    }
}

/// Authenticates an `Authorization` value nobody signed here: only the valid token may pass.
pub fn authenticate(authorization: Option<&str>) -> Result<Caller, AuthError> {
    let fixtures = fixtures();
    let verdict = fixtures.bearer.authenticate(authorization, now());
    let token = authorization.and_then(|value| value.trim().split_once(' ')).map(|(_, token)| token.trim());
    match &verdict {
        Ok(caller) => {
            assert_eq!(token, Some(fixtures.bearer_token.as_str()), "accepted a bearer token nobody signed");
            assert_eq!(caller.subject, CREATOR);
        }
        Err(error) => quiet(&error.to_string(), error.reason(), token.unwrap_or_default()),
    }
    verdict
}

/// `header` and `payload` signed with the HS256 secret: accepted exactly when they say
/// what `berth::auth` documents.
fn signed_bearer(header: &[u8], payload: &[u8]) -> bool {
    let fixtures = fixtures();
    let input = format!("{}.{}", b64(header), b64(payload));
    let key = jsonwebtoken::EncodingKey::from_secret(BEARER_SECRET);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
        .expect("HS256 signs anything");
    let token = format!("{input}.{signature}");
    let verdict = fixtures.bearer.authenticate(Some(&format!("Bearer {token}")), now());
    let expected = token.len() <= 16 * 1024 && header_ok(header) && claims_ok(payload);
    assert_eq!(verdict.is_ok(), expected, "{:?}: {verdict:?}", String::from_utf8_lossy(payload));
    if let Ok(caller) = &verdict {
        let claims: Map<String, Value> = serde_json::from_slice(payload).expect("accepted claims are JSON");
        assert_eq!(Some(caller.subject.as_str()), claims.get("sub").and_then(Value::as_str));
        assert!(!caller.subject.trim().is_empty());
    }
    verdict.is_ok()
}

/// A JOSE header the HS256 secret verifies: `alg: HS256`, a string `kid` if any, no `crit`.
fn header_ok(header: &[u8]) -> bool {
    let Ok(header) = serde_json::from_slice::<Map<String, Value>>(header) else {
        return false;
    };
    header.get("alg").and_then(Value::as_str) == Some("HS256")
        && matches!(header.get("kid"), None | Some(Value::Null | Value::String(_)))
        && !header.contains_key("crit")
}

/// Claims of a caller at [`now`]: `exp` (and `nbf`, `iat` when present) in range,
/// `aud` naming [`BEARER_AUDIENCE`], a non-blank `sub`, a string array for `roles` and
/// one for `groups` (or a single string, as the apiserver accepts).
fn claims_ok(payload: &[u8]) -> bool {
    let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(payload) else {
        return false;
    };
    let n = now().as_second();
    let date = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(x)) => x.as_i64().or_else(|| x.as_f64().map(|f| f.floor() as i64)).map(Some),
        Some(_) => None,
    };
    let strings = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.iter().all(Value::is_string),
        Some(_) => false,
    };
    let leeway = CLOCK_LEEWAY_SECONDS;
    let Some(Some(exp)) = date("exp") else {
        return false;
    };
    let started = |name: &str| date(name).is_some_and(|start| start.is_none_or(|s| s <= n.saturating_add(leeway)));
    let audience = match claims.get("aud") {
        Some(Value::String(aud)) => aud == BEARER_AUDIENCE,
        Some(Value::Array(auds)) => {
            auds.iter().all(Value::is_string) && auds.iter().any(|a| a.as_str() == Some(BEARER_AUDIENCE))
        }
        _ => false,
    };
    n < exp.saturating_add(leeway)
        && started("nbf")
        && started("iat")
        && audience
        && claims.get("sub").and_then(Value::as_str).is_some_and(|sub| !sub.trim().is_empty())
        && (strings("groups") || claims.get("groups").is_some_and(Value::is_string))
        && strings("roles")
}
