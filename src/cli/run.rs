//! `berth run`: the operator, with tracing set up from the environment. The wiring
//! and its flags are in [`crate::operator`].

use crate::{
    operator::{self, RunArgs},
    telemetry::{TracingConfig, init_tracing},
};

/// Runs the operator until SIGTERM/SIGINT.
pub fn run(args: RunArgs) -> Result<(), String> {
    // Process-wide libgit2 settings: before the runtime's threads exist.
    args.network_timeouts().apply().map_err(|e| e.to_string())?;
    super::runtime()?.block_on(async {
        let config = TracingConfig::from_env().map_err(|e| e.to_string())?;
        let _guard = init_tracing(config).map_err(|e| e.to_string())?;
        operator::run(args).await.map_err(|e| e.to_string())
    })
}
