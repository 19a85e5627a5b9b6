//! Errors of the auth module.
//!
//! None of them holds the token, the secret or the contents of a key file: a rejected
//! request's error goes to the client and the audit log, a configuration error to the
//! operator's terminal.

use std::path::PathBuf;

use axum::http::StatusCode;

/// Why a request's bearer token was refused. Every variant is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, another scheme than `Bearer`, or an empty token.
    #[error("no bearer token: send Authorization: Bearer <token>")]
    MissingBearer,
    /// The token is not a well-formed signed JWT; says what is wrong with it.
    #[error("malformed bearer token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is `none` or no configured key verifies it.
    #[error("{}", algorithm_message(alg))]
    AlgorithmNotAllowed {
        /// The header's `alg`, cut short and with odd characters replaced.
        alg: String,
    },
    /// No configured key matches the token: its `kid` is unknown, or it names none and
    /// only JWKS keys (which must be named) verify its algorithm.
    #[error("the bearer token was not signed by a key this server trusts (unknown or missing kid)")]
    UnknownKey,
    /// The signature does not verify with the key(s) the token was matched to.
    #[error("the bearer token's signature is not valid")]
    BadSignature,
    /// `exp` has passed (beyond the clock leeway).
    #[error("the bearer token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the clock leeway).
    #[error("the bearer token is not valid yet")]
    NotYetValid,
    /// `iss` is missing or not the configured issuer.
    #[error("the bearer token comes from another issuer")]
    WrongIssuer,
    /// `aud` is missing or does not contain this server's audience.
    #[error("the bearer token is meant for another audience")]
    WrongAudience,
    /// The username claim (`sub` by default) is missing or empty.
    #[error("the bearer token names no user (its username claim, sub unless configured otherwise)")]
    MissingSubject,
    /// The username claim is `email`, and `email_verified` is present but not `true`.
    #[error("the bearer token's email is not verified (email_verified is not true)")]
    EmailNotVerified,
}

fn algorithm_message(alg: &str) -> String {
    if alg == "none" {
        "unsigned bearer tokens (alg none) are never accepted".to_owned()
    } else {
        format!("bearer tokens signed with {alg} are not accepted by this server")
    }
}

impl AuthError {
    /// Stable code for the audit log and metrics, such as `"expired"`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingBearer => "missing_bearer",
            Self::Malformed(_) => "malformed",
            Self::AlgorithmNotAllowed { .. } => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingSubject => "missing_subject",
            Self::EmailNotVerified => "email_not_verified",
        }
    }

    /// The HTTP status to answer with: always 401 Unauthorized.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// Value for the 401's `WWW-Authenticate` header (RFC 6750): a bare challenge when no
    /// token was sent, `error="invalid_token"` otherwise.
    pub fn www_authenticate(&self) -> &'static str {
        match self {
            Self::MissingBearer => r#"Bearer realm="berth""#,
            _ => r#"Bearer realm="berth", error="invalid_token""#,
        }
    }
}

/// Why a [`BearerVerifier`](super::BearerVerifier) cannot be built from its configuration.
/// Messages name the setting or file, never a file's contents.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// Neither a secret, nor public key files, nor a JWKS file, nor an OIDC issuer is configured.
    #[error(
        "no bearer token keys configured: set an HS256 secret file, public key files, a JWKS file or an OIDC issuer"
    )]
    NoKeySource,
    /// A setting has an unusable value.
    #[error("invalid bearer auth setting {setting}: {reason}")]
    InvalidSetting {
        /// The setting, such as `audience`.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A configured file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which kind of file (`HS256 secret file`, `public key file`, `JWKS file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HS256 secret is too short to be safe.
    #[error("HS256 secret file {path} holds {len} bytes; at least {min} are required (try `openssl rand -hex 32`)")]
    ShortSecret {
        /// The file.
        path: PathBuf,
        /// How many bytes it holds (after dropping one trailing newline).
        len: usize,
        /// The minimum, [`HS256_MIN_SECRET_LEN`](super::HS256_MIN_SECRET_LEN).
        min: usize,
    },
    /// The HS256 secret file holds a PEM key, not a shared secret.
    #[error("HS256 secret file {path} holds a PEM key, not a shared secret; public keys go in the public key files")]
    SecretIsPem {
        /// The file.
        path: PathBuf,
    },
    /// A public key file is not an RSA or P-256 SPKI PEM public key.
    #[error("public key file {path} is not usable: {reason}")]
    BadPublicKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The OIDC issuer's discovery document or key set cannot be used.
    #[error("OIDC issuer {issuer}: {reason}")]
    Oidc {
        /// The configured issuer.
        issuer: String,
        /// What went wrong.
        reason: String,
    },
    /// The JWKS file is not a key set Berth can use.
    #[error("JWKS file {path} is not usable: {reason}")]
    BadJwks {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why [`dev_token`](super::dev_token) cannot mint a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevTokenError {
    /// The secret is shorter than [`HS256_MIN_SECRET_LEN`](super::HS256_MIN_SECRET_LEN),
    /// so no verifier would accept the token.
    #[error("the HS256 secret holds {len} bytes; at least {min} are required")]
    ShortSecret {
        /// How many bytes it holds.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The subject is empty.
    #[error("a development token needs a subject")]
    EmptySubject,
    /// The audience is empty.
    #[error("a development token needs an audience")]
    EmptyAudience,
    /// The lifetime is under a second or too long to add to `now`.
    #[error("a development token's lifetime must be at least one second and end before the year 9999")]
    BadLifetime,
    /// Signing failed.
    #[error("cannot sign the development token: {reason}")]
    Sign {
        /// The signer's message (never the secret).
        reason: String,
    },
}
