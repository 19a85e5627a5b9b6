//! HTTPS for the admission webhook and the auth API.
//!
//! - [`reload`]: the serving certificate, read from files and reloaded when they change
//! - [`serve`](mod@serve): the TLS server configuration and the accept loop
//!
//! Certificates for local and end-to-end setups come from `berth dev-credentials`
//! ([`crate::cli::dev::self_signed`]).

pub mod reload;
pub mod serve;

pub use reload::{ReloadingCertificate, TlsError, TlsFiles, cert_fingerprint};
pub use serve::{
    HANDSHAKE_TIMEOUT, HEADER_READ_TIMEOUT, SHUTDOWN_GRACE, serve, server_config, server_config_verifying_clients,
};
