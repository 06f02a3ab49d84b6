//! Command line and environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "fluxfence-controller",
    version,
    about = "Onboards Flux tenants from FluxConfig objects",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunConfig,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the FluxConfig CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller (the default; the flags are the same with or without `run`).
    Run(RunConfig),
}

#[derive(Parser, Debug, Clone)]
pub struct RunConfig {
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "FLUXFENCE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Policy file (the webhook's); its defaultServiceAccount is created and impersonated, and
    /// what it denies is refused. Default: the built-in policy (`flux-applier`).
    #[arg(long, env = "FLUXFENCE_POLICY")]
    pub policy: Option<PathBuf>,
    /// The service account created in each FluxConfig's namespace and impersonated by its
    /// Kustomizations; overrides the policy's defaultServiceAccount.
    #[arg(long, env = "FLUXFENCE_DEFAULT_SERVICE_ACCOUNT")]
    pub default_service_account: Option<String>,
    /// Take a coordination.k8s.io Lease before reconciling, so one replica of several acts.
    #[arg(
        long,
        env = "FLUXFENCE_LEADER_ELECT",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub leader_elect: bool,
    #[arg(
        long,
        env = "FLUXFENCE_LEASE_NAME",
        default_value = "fluxfence-controller"
    )]
    pub lease_name: String,
    /// Namespace of the Lease: the controller's own (the chart passes the pod's).
    #[arg(long, env = "POD_NAMESPACE", default_value = "flux-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease and on its events (the chart passes the pod name).
    #[arg(long, env = "POD_NAME", default_value = "fluxfence-controller")]
    pub identity: String,
    /// How long a Lease holds without renewal, in seconds.
    #[arg(long, env = "FLUXFENCE_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration_seconds: u16,
    #[arg(long, env = "FLUXFENCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub reports: crate::reports::ReportConfig,
}

impl RunConfig {
    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.lease_duration_seconds.max(2)))
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_work_with_and_without_run() {
        let cli =
            Cli::try_parse_from(["c", "run", "--http-addr=127.0.0.1:9", "--leader-elect=true"])
                .unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.http_addr.port(), 9);
        assert!(run.leader_elect);
        let cli =
            Cli::try_parse_from(["c", "--leader-elect", "--lease-duration-seconds=30"]).unwrap();
        assert!(cli.command.is_none());
        assert!(cli.run.leader_elect);
        assert_eq!(cli.run.lease_duration(), Duration::from_secs(30));
        let cli = Cli::try_parse_from(["c", "--leader-elect=false"]).unwrap();
        assert!(!cli.run.leader_elect);
        assert!(matches!(
            Cli::try_parse_from(["c", "crd"]).unwrap().command,
            Some(Command::Crd)
        ));
    }
}
