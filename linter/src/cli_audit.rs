//! `fluxfence audit`: the command's flags and wiring. The audit itself is
//! `fluxfence::audit` (reading the cluster, judging, the PolicyReports).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use fluxfence::audit::cluster::{self, Scope};
use fluxfence::audit::{self, policy_report};
use fluxfence::output::{self, Format};
use kube::{Client, Config};

use crate::{ColorChoice, Selection};

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Kubeconfig file. Default: `KUBECONFIG`, else `~/.kube/config`, else the cluster the
    /// process runs in.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use. Default: its current context.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Audit this namespace. Default: the context's namespace.
    #[arg(
        long,
        short = 'n',
        value_name = "NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    namespace: Option<String>,
    /// Audit every namespace.
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// Policy file. Default: the built-in Azure `multiTenancy.enforce=true` policy (the
    /// webhook's default).
    #[arg(long, env = "FLUXFENCE_POLICY")]
    policy: Option<PathBuf>,
    /// Output format: text, json, sarif, junit, github or policyreport (one
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport per namespace, as YAML). Repeat it for several,
    /// and give a file to each but one: `--format text --format policyreport=reports.yaml`.
    #[arg(long, value_name = "FORMAT[=FILE]", value_parser = parse_audit_format)]
    format: Vec<AuditOutput>,
    /// Write the report to FILE instead of stdout (a `--format` without `=FILE`).
    #[arg(long, short = 'o', value_name = "FILE")]
    output_file: Option<PathBuf>,
    /// Report only these rules: codes, code prefixes (`FF1`) or names, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "RULES")]
    select: Vec<String>,
    /// Do not report these rules (codes, code prefixes or names); wins over --select.
    #[arg(long, value_delimiter = ',', value_name = "RULES")]
    ignore: Vec<String>,
    /// Exit 0 even when a `deny` finding is reported (a cluster that cannot be read still
    /// exits 2).
    #[arg(long)]
    exit_zero: bool,
    /// Text: a count per rule instead of a code frame per finding.
    #[arg(long)]
    statistics: bool,
    /// The findings only, without the summary.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Colour the text report: `auto` on a terminal unless `NO_COLOR` is set.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuditFormat {
    Lint(Format),
    PolicyReport,
}

#[derive(Debug, Clone)]
struct AuditOutput {
    format: AuditFormat,
    file: Option<PathBuf>,
}

fn parse_audit_format(text: &str) -> Result<AuditOutput, String> {
    let (name, file) = match text.split_once('=') {
        Some((name, file)) if !file.is_empty() => (name, Some(PathBuf::from(file))),
        Some((name, _)) => return Err(format!("`{name}=` needs a file after `=`")),
        None => (text, None),
    };
    let format = if name.eq_ignore_ascii_case("policyreport") {
        AuditFormat::PolicyReport
    } else {
        let format = <Format as clap::ValueEnum>::from_str(name, true).map_err(|_| {
            "possible values: text, json, sarif, junit, github, policyreport (each optionally \
             `=FILE`)"
                .to_owned()
        })?;
        AuditFormat::Lint(format)
    };
    Ok(AuditOutput { format, file })
}

/// Where each report goes: at most one to stdout (or `--output-file`), each file once.
fn outputs(args: &AuditArgs) -> anyhow::Result<Vec<AuditOutput>> {
    let mut outputs = if args.format.is_empty() {
        vec![AuditOutput {
            format: AuditFormat::Lint(Format::Text),
            file: None,
        }]
    } else {
        args.format.clone()
    };
    crate::route_to_files(
        outputs.iter_mut().map(|o| &mut o.file).collect(),
        args.output_file.as_deref(),
    )?;
    Ok(outputs)
}

pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be wrong with the flags is said before the cluster is asked.
    let selection = Selection::new(&args.select, &args.ignore)?;
    let outputs = outputs(&args)?;
    let policy = crate::load_policy(args.policy.as_deref())?;
    // The only command that talks to a cluster is the only one that starts a runtime; one
    // thread is enough for requests that wait on the network.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime for the API requests")?;
    let snapshot = runtime.block_on(async {
        let (client, cluster) =
            connect(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let scope = if args.all_namespaces {
            Scope::AllNamespaces
        } else {
            Scope::Namespace(
                args.namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_owned()),
            )
        };
        anyhow::Ok(cluster::read(&client, &cluster, &scope).await?)
    })?;
    let audit = audit::judge(snapshot, &policy, &|code| selection.reports(code));
    let summary = audit::summary(&audit);
    let mut summary_shown = args.quiet;
    for destination in &outputs {
        let text = match destination.format {
            AuditFormat::PolicyReport => policy_report::render(&audit),
            AuditFormat::Lint(format) => {
                let options = output::Options {
                    color: crate::use_color(args.color) && destination.file.is_none(),
                    statistics: args.statistics,
                    // The lint summary counts files; the audit's own summary follows.
                    quiet: true,
                    ..output::Options::default()
                };
                let mut text = output::render(&audit.report, format, &options);
                if format == Format::Text && destination.file.is_none() && !summary_shown {
                    text.push_str(&summary);
                    summary_shown = true;
                }
                text
            }
        };
        match &destination.file {
            None => crate::print(&text)?,
            Some(file) => std::fs::write(file, text)
                .with_context(|| format!("writing the report to {}", file.display()))?,
        }
    }
    if !summary_shown {
        // Stdout holds a machine format (`--format policyreport | kubectl apply -f -`).
        let _ = std::io::stderr().write_all(summary.as_bytes());
    }
    let code = match audit.report.exit_code() {
        1 if args.exit_zero => 0,
        code => code,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(2)))
}

/// A client for the kubeconfig's context (`--kubeconfig`, else `KUBECONFIG` or
/// `~/.kube/config`; `--context`, else the current one), or for the cluster the process runs
/// in when there is no kubeconfig; and how to name the cluster.
async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<(Client, String)> {
    let file = match kubeconfig {
        Some(path) => Some(
            kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("--kubeconfig {}: {e}", path.display()))?,
        ),
        None => kube::config::Kubeconfig::read().ok(),
    };
    let (config, name) = match file {
        Some(file) => {
            let name = context
                .map(str::to_owned)
                .or_else(|| file.current_context.clone())
                .unwrap_or_default();
            let options = kube::config::KubeConfigOptions {
                context: context.map(str::to_owned),
                cluster: None,
                user: None,
            };
            let config = Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("the kubeconfig's context `{name}` cannot be used"))?;
            (config, format!("context {name}"))
        }
        None => {
            anyhow::ensure!(
                context.is_none(),
                "--context needs a kubeconfig: none at KUBECONFIG or ~/.kube/config; give --kubeconfig"
            );
            let config = Config::incluster().context(
                "no kubeconfig (KUBECONFIG, ~/.kube/config) and not running in a cluster; \
                 give --kubeconfig",
            )?;
            (config, "the cluster this pod runs in".to_owned())
        }
    };
    let described = format!("{name} ({})", config.cluster_url);
    let client = Client::try_from(config).context("cannot make a client for the cluster")?;
    Ok((client, described))
}
