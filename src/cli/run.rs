//! `berth run`: the operator, with tracing set up from the environment. The wiring
//! and its flags are in [`crate::operator`].

use crate::{
    operator::{self, RunArgs},
    telemetry::{TracingConfig, init_tracing},
};

/// Runs the operator until SIGTERM/SIGINT.
pub fn run(args: RunArgs) -> Result<(), String> {
    // SAFETY: the first thing `berth run` does, before the runtime (or anything else
    // that starts a thread) exists: no other thread can be using libgit2.
    #[allow(unsafe_code)]
    unsafe { args.network_timeouts().apply() }.map_err(|e| e.to_string())?;
    // libgit2's globals, like the timeouts: set before any other thread exists.
    crate::gitops::configure_libgit2();
    super::runtime()?.block_on(async {
        let config = TracingConfig::from_env().map_err(|e| e.to_string())?;
        let _guard = init_tracing(config).map_err(|e| e.to_string())?;
        operator::run(args).await.map_err(|e| e.to_string())
    })
}
