//! `berth webhook-config`: the Validating- and MutatingWebhookConfiguration that
//! register Berth's webhook, for `kubectl apply -f -`. They are rendered in
//! [`crate::render::webhook_configuration`]; this only reads the flags.

use std::path::PathBuf;

use clap::Args;

use super::read_file;
use crate::render::webhook_configuration::{Endpoint, Registration, to_yaml};

/// Flags of `berth webhook-config`.
#[derive(Args)]
pub struct WebhookConfigArgs {
    /// URL the apiserver calls (a webhook outside the cluster), e.g. https://127.0.0.1:8443.
    #[arg(long, conflicts_with = "service", required_unless_present = "service")]
    url: Option<String>,
    /// A Service in the cluster, as namespace/name:port.
    #[arg(long)]
    service: Option<String>,
    /// CA certificate (PEM) that signed the webhook's serving certificate.
    #[arg(long)]
    ca_file: PathBuf,
    /// Seconds the apiserver waits for a decision.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    timeout_seconds: i32,
}

/// Prints both configurations as YAML.
pub fn webhook_config(args: &WebhookConfigArgs) -> Result<(), String> {
    let endpoint = match (&args.url, &args.service) {
        (Some(url), _) => Endpoint::Url(url.clone()),
        (None, Some(service)) => {
            let parse = || -> Option<Endpoint> {
                let (namespace, rest) = service.split_once('/')?;
                let (name, port) = rest.split_once(':').unwrap_or((rest, "443"));
                Some(Endpoint::Service {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    port: port.parse().ok()?,
                })
            };
            parse().ok_or_else(|| format!("--service {service:?} is not namespace/name[:port]"))?
        }
        (None, None) => return Err("give --url or --service".to_owned()),
    };
    let registration =
        Registration { endpoint, ca_bundle: read_file(&args.ca_file)?, timeout_seconds: args.timeout_seconds };
    print!("{}", to_yaml(&registration).map_err(|e| e.to_string())?);
    Ok(())
}
