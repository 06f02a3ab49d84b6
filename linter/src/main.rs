//! The `fluxfence` command line: lint Flux manifests for multi-tenancy before they land.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fluxfence::output::{self, Format};
use fluxfence::{Inventory, Policy, rules};

mod cli_audit;

/// The linter builds many small trees on several threads and frees them in bulk; glibc's
/// per-thread arenas grow one `mprotect` call at a time and spend measurable time there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fluxfence",
    version,
    about = "Enforce Flux v2 multi-tenancy before it reaches the cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lint manifests: files, directories (recursive, .gitignore-aware) or `-` for stdin.
    Lint(LintArgs),
    /// List every rule.
    Rules,
    /// Explain one rule (by code or name), e.g. `fluxfence rule FF101`.
    Rule { code: String },
    /// Print the Flux kinds and API versions fluxfence judges, as JSON.
    Kinds,
    /// Rewrite manifests into the multi-tenant layout (comments and formatting kept).
    Fix(FixArgs),
    /// Write the policy out for another enforcement point.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Judge the Flux objects of a live cluster as the webhook would: what breaks when
    /// multi-tenancy is enforced, before it is.
    Audit(cli_audit::AuditArgs),
}

#[derive(Subcommand)]
enum ExportCommand {
    /// ValidatingAdmissionPolicies (and a MutatingAdmissionPolicy) enforcing the policy in
    /// the API server, without the webhook; apply the output with `kubectl apply -f -`.
    AdmissionPolicy(AdmissionPolicyArgs),
}

#[derive(clap::Args)]
struct AdmissionPolicyArgs {
    /// Policy file. Default: the built-in Azure `multiTenancy.enforce=true` policy.
    #[arg(long, env = "FLUXFENCE_POLICY")]
    policy: Option<PathBuf>,
    /// Prefix of every exported object's name.
    #[arg(long, default_value = "fluxfence-", value_name = "P")]
    name_prefix: String,
    /// Namespace of the tenants ConfigMap the policies read as parameters.
    #[arg(long, default_value = "flux-system", value_name = "NAMESPACE")]
    params_namespace: String,
    /// API version of the MutatingAdmissionPolicy: v1 (Kubernetes 1.36+) or v1beta1
    /// (1.34-1.35, feature gate on).
    #[arg(long, value_enum, default_value = "v1", value_name = "VERSION")]
    mutating_api_version: fluxfence::export::admission_policy::MutatingApiVersion,
}

#[derive(clap::Args)]
struct FixArgs {
    /// Files or directories to fix. Default: the current directory.
    paths: Vec<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    fix: FixFlags,
}

#[derive(clap::Args)]
struct FixFlags {
    /// Print a unified diff instead of writing the files.
    #[arg(long)]
    diff: bool,
    /// Also apply fixes that change behaviour: moving objects to the config namespace.
    #[arg(long)]
    unsafe_fixes: bool,
    /// The namespace objects move to (default: the policy's `configNamespace`).
    #[arg(long, env = "FLUXFENCE_CONFIG_NAMESPACE")]
    config_namespace: Option<String>,
}

/// What `lint` and `fix` read, and with which policy.
#[derive(clap::Args)]
struct InputArgs {
    /// Policy file. Default: `.fluxfence.yaml` at the repository root, else the built-in
    /// Azure `multiTenancy.enforce=true` policy.
    #[arg(long, env = "FLUXFENCE_POLICY")]
    policy: Option<PathBuf>,
    /// The repository root: reports name files relative to it, its `.fluxfence.yaml` is the
    /// policy, and the rest of it is read as context. Default: the nearest directory above
    /// the first path that holds `.git`, else that path (a file's directory).
    #[arg(long, value_name = "DIR", env = "FLUXFENCE_ROOT")]
    root: Option<PathBuf>,
}

#[derive(clap::Args)]
struct LintArgs {
    /// Paths to lint; `-` reads manifests from stdin. Default: the current directory.
    paths: Vec<PathBuf>,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    report: ReportArgs,
    /// Apply safe fixes first, then report what is left (see `fluxfence fix`).
    #[arg(long)]
    fix: bool,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Output format: text, json, sarif, junit or github. Repeat it for several, and give a
    /// file to each but one: `--format text --format sarif=fluxfence.sarif`.
    #[arg(
        long,
        value_name = "FORMAT[=FILE]",
        value_parser = parse_format,
        env = "FLUXFENCE_FORMAT"
    )]
    format: Vec<Output>,
    /// Write the report to FILE instead of stdout (a `--format` without `=FILE`).
    #[arg(long, short = 'o', value_name = "FILE")]
    output_file: Option<PathBuf>,
    /// Directory of CustomResourceDefinition YAML files (recursive) to validate against (FF001).
    #[arg(long, env = "FLUXFENCE_CRDS")]
    crds: Option<PathBuf>,
    /// List the objects whose namespace cannot be known offline.
    #[arg(long)]
    show_unresolved: bool,
    /// Report only these rules: codes, code prefixes (`FF1`) or names, comma-separated
    /// (`--fix` still applies every safe fix).
    #[arg(long, value_delimiter = ',', value_name = "RULES")]
    select: Vec<String>,
    /// Do not report these rules (codes, code prefixes or names); wins over --select.
    #[arg(long, value_delimiter = ',', value_name = "RULES")]
    ignore: Vec<String>,
    /// Exit 0 even when a `deny` finding is reported (read and parse errors still exit 2).
    #[arg(long)]
    exit_zero: bool,
    /// Text: a count per rule instead of a code frame per finding.
    #[arg(long)]
    statistics: bool,
    /// Text: the findings only, without the summary lines.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Colour the text report: `auto` on a terminal unless `NO_COLOR` is set.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    color: ColorChoice,
    /// Print the settings this run would use (root, policy, rules, outputs) and exit.
    #[arg(long)]
    show_settings: bool,
    /// The file name stdin is reported under (a path relative to the working directory).
    #[arg(long, value_name = "PATH")]
    stdin_filename: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// One `--format`: a format, and the file it goes to (else stdout or `--output-file`).
#[derive(Debug, Clone)]
struct Output {
    format: Format,
    file: Option<PathBuf>,
}

fn parse_format(text: &str) -> Result<Output, String> {
    let (name, file) = match text.split_once('=') {
        Some((name, file)) if !file.is_empty() => (name, Some(PathBuf::from(file))),
        Some((name, _)) => return Err(format!("`{name}=` needs a file after `=`")),
        None => (text, None),
    };
    let format = <Format as clap::ValueEnum>::from_str(name, true).map_err(|_| {
        "possible values: text, json, sarif, junit, github (each optionally `=FILE`)".to_owned()
    })?;
    Ok(Output { format, file })
}

fn main() -> ExitCode {
    page_size::small();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Lint(args) => lint(args),
        Command::Fix(args) => fix(args),
        Command::Audit(args) => cli_audit::audit(args),
        Command::Rules => {
            let mut out = String::new();
            for rule in rules::ALL {
                let meta = rule.meta();
                out.push_str(&format!(
                    "{}  {:<34} {:<5} {:<6}  {}\n",
                    meta.code,
                    meta.name,
                    meta.default_severity.as_str(),
                    meta.fixable.column(),
                    meta.summary
                ));
            }
            print(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rule { code } => {
            let Some(rule) = rules::by_code(&code) else {
                anyhow::bail!("no rule `{code}`; `fluxfence rules` lists them");
            };
            print(&rule.meta().page())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(ExportCommand::AdmissionPolicy(args)) => export_admission_policy(args),
        Command::Kinds => {
            print(&format!(
                "{}\n",
                serde_json::to_string_pretty(fluxfence::kinds::FLUX_KINDS)?
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Everything a lint run decided before reading its input, as `--show-settings` prints it.
struct Settings {
    paths: Vec<PathBuf>,
    stdin: Option<String>,
    root: Option<PathBuf>,
    /// How the root was found, for `--show-settings`.
    root_from: &'static str,
    policy: Option<PathBuf>,
    selection: Selection,
    outputs: Vec<Output>,
    color: bool,
}

/// What [`find_root`] says of a root given with `--root`.
const EXPLICIT_ROOT: &str = "--root";

impl Settings {
    fn explicit_root(&self) -> Option<&Path> {
        self.root
            .as_deref()
            .filter(|_| self.root_from == EXPLICIT_ROOT)
    }
}

fn lint(args: LintArgs) -> anyhow::Result<ExitCode> {
    let settings = settings(&args)?;
    if args.report.show_settings {
        print(&show_settings(&settings, &args))?;
        return Ok(ExitCode::SUCCESS);
    }
    page_size::for_input(&args.paths);
    let policy = load_policy(settings.policy.as_deref())?;
    let crds = load_crds(args.report.crds.as_deref())?;
    let mut inventory = if args.fix {
        fix_files(&settings, &policy, &fix_flags_of_lint(), args.report.quiet)?.inventory
    } else {
        read_input(&settings)?
    };
    inventory.crds.extend(crds.crds);
    let mut report = fluxfence::lint(inventory, &policy);
    report
        .diagnostics
        .retain(|d| settings.selection.reports(d.finding.code));
    finish(report, &settings, &args.report)
}

/// `lint --fix` applies the safe fixes only, with the policy's config namespace.
fn fix_flags_of_lint() -> FixFlags {
    FixFlags {
        diff: false,
        unsafe_fixes: false,
        config_namespace: None,
    }
}

/// Reads the CRDs of `--crds` first, so that a wrong directory stops the run before any file
/// is written (`lint --fix`); a directory without any CRD is an error, not FF001 turned off.
fn load_crds(dir: Option<&Path>) -> anyhow::Result<Inventory> {
    let mut crds = Inventory::default();
    let Some(dir) = dir else { return Ok(crds) };
    crds.load_crds(dir);
    let errors: Vec<String> = crds.errors.iter().map(ToString::to_string).collect();
    anyhow::ensure!(
        errors.is_empty(),
        "--crds cannot be read:\n{}",
        errors.join("\n")
    );
    anyhow::ensure!(
        !crds.crds.is_empty(),
        "--crds {}: no CustomResourceDefinition in it; give the directory holding the Flux CRDs \
         (e.g. the `crds/` of a Flux release), or leave --crds out",
        dir.display()
    );
    Ok(crds)
}

fn settings(args: &LintArgs) -> anyhow::Result<Settings> {
    let report = &args.report;
    let reads_stdin = args.paths.iter().any(|p| p == Path::new("-"))
        || (args.paths.is_empty() && report.stdin_filename.is_some());
    if reads_stdin {
        anyhow::ensure!(
            args.paths.len() <= 1,
            "`-` (stdin) cannot be combined with other paths"
        );
        anyhow::ensure!(
            !args.fix,
            "--fix works on files; stdin (`-`) cannot be rewritten"
        );
    } else {
        anyhow::ensure!(
            report.stdin_filename.is_none(),
            "--stdin-filename names stdin: give `-` (or no path) to read it"
        );
    }
    let paths = or_current_dir(&args.paths);
    let (root, root_from) = find_root(args.input.root.as_deref(), &paths, reads_stdin)?;
    let stdin = reads_stdin.then(|| {
        report
            .stdin_filename
            .as_ref()
            .map_or_else(|| "<stdin>".to_owned(), |p| p.display().to_string())
    });
    Ok(Settings {
        policy: args
            .input
            .policy
            .clone()
            .or_else(|| discovered_policy(root.as_deref())),
        selection: Selection::new(&report.select, &report.ignore)?,
        outputs: outputs(&report.format, report.output_file.as_deref())?,
        color: use_color(report.color),
        paths,
        stdin,
        root,
        root_from,
    })
}

/// The root a run uses, and what chose it. Given paths must lie inside a `--root`.
fn find_root(
    explicit: Option<&Path>,
    paths: &[PathBuf],
    reads_stdin: bool,
) -> anyhow::Result<(Option<PathBuf>, &'static str)> {
    if let Some(root) = explicit {
        let canonical = root
            .canonicalize()
            .map_err(|_| anyhow::anyhow!("--root {}: no such directory", root.display()))?;
        anyhow::ensure!(
            canonical.is_dir(),
            "--root {} is not a directory",
            root.display()
        );
        for path in paths.iter().filter(|_| !reads_stdin) {
            let inside = path.canonicalize().is_ok_and(|p| p.starts_with(&canonical));
            anyhow::ensure!(
                inside || !path.exists(),
                "{} is outside --root {}: give paths inside the root, or another --root",
                path.display(),
                root.display()
            );
        }
        return Ok((Some(root.to_path_buf()), EXPLICIT_ROOT));
    }
    if reads_stdin {
        // Stdin has no place of its own: the repository around the working directory, if any.
        let found = fluxfence::input::repository_root(Path::new("."));
        let is_repository = found.join(".git").exists();
        return Ok(if is_repository {
            (
                Some(found),
                "the Git repository around the working directory",
            )
        } else {
            (None, "none (stdin, outside a Git repository)")
        });
    }
    let first = paths
        .first()
        .map_or_else(|| PathBuf::from("."), Clone::clone);
    let found = fluxfence::input::repository_root(&first);
    let from = if found.join(".git").exists() {
        "the nearest directory holding `.git`"
    } else {
        "the first path (no `.git` above it)"
    };
    Ok((Some(found), from))
}

fn discovered_policy(root: Option<&Path>) -> Option<PathBuf> {
    root.map(|r| r.join(".fluxfence.yaml"))
        .filter(|p| p.is_file())
}

/// Where each report goes: at most one to stdout (or `--output-file`), each file once.
fn outputs(formats: &[Output], output_file: Option<&Path>) -> anyhow::Result<Vec<Output>> {
    let mut outputs = if formats.is_empty() {
        vec![Output {
            format: Format::Text,
            file: None,
        }]
    } else {
        formats.to_vec()
    };
    route_to_files(
        outputs.iter_mut().map(|o| &mut o.file).collect(),
        output_file,
    )?;
    Ok(outputs)
}

/// The files of a run's reports (`None`: stdout), for `lint` and `audit` alike: at most one
/// goes to stdout, and to `output_file` when one is given; no two share a file.
fn route_to_files(
    mut files: Vec<&mut Option<PathBuf>>,
    output_file: Option<&Path>,
) -> anyhow::Result<()> {
    let unnamed = files.iter().filter(|f| f.is_none()).count();
    anyhow::ensure!(
        unnamed <= 1,
        "{unnamed} formats would all go to stdout: give each but one a file (`--format sarif=FILE`)"
    );
    for file in files.iter_mut().filter(|f| f.is_none()) {
        **file = output_file.map(Path::to_path_buf);
    }
    let mut named: Vec<&Path> = files.iter().filter_map(|f| f.as_deref()).collect();
    named.sort();
    let total = named.len();
    named.dedup();
    anyhow::ensure!(
        named.len() == total,
        "two formats are written to the same file: give each its own"
    );
    Ok(())
}

/// Colour for a text report on stdout: always, never, or on a terminal unless `NO_COLOR`
/// (any non-empty value) says otherwise, as <https://no-color.org> asks.
fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            !no_color && std::io::stdout().is_terminal()
        }
    }
}

/// Which rules are reported (`--select`, `--ignore`).
struct Selection {
    /// Empty: every rule.
    selected: Vec<&'static str>,
    ignored: Vec<&'static str>,
}

impl Selection {
    fn new(select: &[String], ignore: &[String]) -> anyhow::Result<Selection> {
        Ok(Selection {
            selected: rule_codes(select, "--select")?,
            ignored: rule_codes(ignore, "--ignore")?,
        })
    }

    fn reports(&self, code: &str) -> bool {
        (self.selected.is_empty() || self.selected.contains(&code)) && !self.ignored.contains(&code)
    }

    fn describe(&self) -> String {
        let codes: Vec<&str> = rules::ALL
            .iter()
            .map(|r| r.meta().code)
            .filter(|c| self.reports(c))
            .collect();
        if codes.len() == rules::ALL.len() {
            "every rule".to_owned()
        } else if codes.is_empty() {
            "none".to_owned()
        } else {
            codes.join(", ")
        }
    }
}

/// The codes `entries` name: a code, a code prefix (`FF1`) or a rule name each.
fn rule_codes(entries: &[String], flag: &str) -> anyhow::Result<Vec<&'static str>> {
    let mut codes = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let matching: Vec<&'static str> = rules::ALL
            .iter()
            .map(|r| r.meta())
            .filter(|m| {
                m.name == entry
                    || m.code
                        .get(..entry.len())
                        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(entry))
            })
            .map(|m| m.code)
            .collect();
        anyhow::ensure!(
            !matching.is_empty(),
            "{flag} {entry}: no rule has this code, code prefix or name; `fluxfence rules` lists them"
        );
        codes.extend(matching);
    }
    Ok(codes)
}

fn show_settings(settings: &Settings, args: &LintArgs) -> String {
    let absolute = |path: &Path| output::canonical(&current_dir().join(path));
    let root = settings
        .root
        .as_deref()
        .map_or_else(|| "none".to_owned(), |r| absolute(r).display().to_string());
    let policy = settings.policy.as_deref().map_or_else(
        || "built-in (Azure microsoft.flux, multiTenancy.enforce=true)".to_owned(),
        |p| {
            // What a partial policy file leaves out takes the documented defaults: say which.
            let defaults = Policy::load(p).map(|policy| policy.defaults_used());
            match defaults {
                Ok(filled) if !filled.is_empty() => format!(
                    "{} (defaults for what it leaves out: {})",
                    absolute(p).display(),
                    filled.join(", ")
                ),
                _ => absolute(p).display().to_string(),
            }
        },
    );
    let input = match &settings.stdin {
        Some(name) => format!("stdin, reported as {name}"),
        None => settings
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let outputs: Vec<String> = settings
        .outputs
        .iter()
        .map(|o| match &o.file {
            Some(file) => format!("{} to {}", o.format.as_str(), file.display()),
            None => format!("{} to stdout", o.format.as_str()),
        })
        .collect();
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    let crds = args
        .report
        .crds
        .as_deref()
        .map_or_else(|| "none".to_owned(), |d| d.display().to_string());
    format!(
        "root: {root} (from {})\npolicy: {policy}\ninput: {input}\nrules: {}\noutputs: {}\n\
         crds: {crds}\ncolor: {}\nexit-zero: {}\nstatistics: {}\nquiet: {}\nshow-unresolved: {}\n\
         fix: {}\n",
        settings.root_from,
        settings.selection.describe(),
        outputs.join(", "),
        yes_no(settings.color),
        yes_no(args.report.exit_zero),
        yes_no(args.report.statistics),
        yes_no(args.report.quiet),
        yes_no(args.report.show_unresolved),
        yes_no(args.fix),
    )
}

fn current_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// Writes each report and gives the exit code: what `lint` and `lint --fix` end with.
fn finish(
    report: fluxfence::Report,
    settings: &Settings,
    args: &ReportArgs,
) -> anyhow::Result<ExitCode> {
    let cwd = current_dir();
    let root = report
        .inventory
        .root
        .as_deref()
        .or(settings.root.as_deref())
        .map(|r| output::canonical(&cwd.join(r)));
    for destination in &settings.outputs {
        let options = output::Options {
            show_unresolved: args.show_unresolved,
            // Colour is for a terminal: never in a file.
            color: settings.color && destination.file.is_none(),
            statistics: args.statistics,
            quiet: args.quiet,
            root: root.clone(),
            cwd: Some(cwd.clone()),
        };
        let write = |out: &mut dyn Write| output::write(&report, destination.format, &options, out);
        match &destination.file {
            None => to_stdout(write)?,
            Some(file) => {
                let created = std::fs::File::create(file)
                    .with_context(|| format!("writing the report to {}", file.display()))?;
                let mut out = std::io::BufWriter::with_capacity(1 << 16, created);
                write(&mut out)
                    .and_then(|()| out.flush())
                    .with_context(|| format!("writing the report to {}", file.display()))?;
            }
        }
    }
    let code = match report.exit_code() {
        1 if args.exit_zero => 0,
        code => code,
    };
    let code = ExitCode::from(u8::try_from(code).unwrap_or(2));
    // The process ends here: freeing every tree and text one by one only delays the exit.
    std::mem::forget(report);
    Ok(code)
}

/// `fix`: fix, write (or diff); with `--diff`, a pending change exits 1 (like `ruff --diff`).
fn fix(args: FixArgs) -> anyhow::Result<ExitCode> {
    page_size::for_input(&args.paths);
    anyhow::ensure!(
        !args.paths.iter().any(|p| p == Path::new("-")),
        "fix works on files; stdin (`-`) cannot be rewritten"
    );
    let paths = or_current_dir(&args.paths);
    let (root, root_from) = find_root(args.input.root.as_deref(), &paths, false)?;
    let settings = Settings {
        policy: args
            .input
            .policy
            .clone()
            .or_else(|| discovered_policy(root.as_deref())),
        paths,
        stdin: None,
        root,
        root_from,
        selection: Selection::new(&[], &[])?,
        outputs: Vec::new(),
        color: false,
    };
    let policy = load_policy(settings.policy.as_deref())?;
    let fixed = fix_files(&settings, &policy, &args.fix, false)?;
    print(&fixed.diff)?;
    let pending = args.fix.diff && fixed.changed > 0;
    Ok(if pending {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What a fix run did.
struct Fixed {
    inventory: Inventory,
    /// Files changed (or, with `--diff`, that would change).
    changed: usize,
    diff: String,
}

/// Fixes the files of `settings`, writes them (or makes the diff), and says what it did on
/// stderr (not with `quiet`).
fn fix_files(
    settings: &Settings,
    policy: &Policy,
    flags: &FixFlags,
    quiet: bool,
) -> anyhow::Result<Fixed> {
    let inventory = match settings.explicit_root() {
        Some(root) => Inventory::load_for_fix_in_root(root, &settings.paths),
        None => Inventory::load_for_fix(&settings.paths),
    };
    let errors: Vec<String> = inventory.errors.iter().map(ToString::to_string).collect();
    if !errors.is_empty() {
        anyhow::bail!(
            "not fixing while files cannot be read or parsed:\n{}",
            errors.join("\n")
        );
    }
    let options = fluxfence::fix::FixOptions {
        unsafe_fixes: flags.unsafe_fixes,
        config_namespace: flags.config_namespace.clone(),
    };
    let outcome = fluxfence::fix::fix(inventory, policy, &options).map_err(anyhow::Error::msg)?;
    let mut diff = String::new();
    if flags.diff {
        for (path, before, after) in &outcome.changed {
            diff.push_str(&fluxfence::fix::unified_diff(path, before, after));
        }
    } else {
        fluxfence::fix::write_all(&outcome.changed).map_err(anyhow::Error::msg)?;
    }
    if !quiet {
        for line in &outcome.skipped {
            eprintln!("not fixed: {line}");
        }
        let verb = if flags.diff { "Would fix" } else { "Fixed" };
        eprintln!(
            "{verb} {} ({}).",
            output::plural(outcome.changed.len(), "file"),
            output::plural(outcome.applied.len(), "edit")
        );
    }
    Ok(Fixed {
        changed: outcome.changed.len(),
        inventory: outcome.inventory,
        diff,
    })
}

/// The paths given, or the current directory when none are.
fn or_current_dir(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    }
}

fn read_input(settings: &Settings) -> anyhow::Result<Inventory> {
    let Some(name) = &settings.stdin else {
        return Ok(match settings.explicit_root() {
            Some(root) => Inventory::load_in_root(root, &settings.paths),
            None => Inventory::load(&settings.paths),
        });
    };
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading stdin")?;
    match fluxfence::input::decode(bytes) {
        Ok(text) => {
            let mut inventory = Inventory::from_text(name, text);
            inventory.root.clone_from(&settings.root);
            Ok(inventory)
        }
        Err((line, column, message)) => anyhow::bail!("{name}:{line}:{column}: {message}"),
    }
}

fn export_admission_policy(args: AdmissionPolicyArgs) -> anyhow::Result<ExitCode> {
    use fluxfence::export::admission_policy::{self, Options};
    let policy = load_policy(args.policy.as_deref())?;
    let options = Options {
        name_prefix: args.name_prefix,
        params_namespace: args.params_namespace,
        mutating_api_version: args.mutating_api_version,
    };
    let export = admission_policy::export(&policy, &options)?;
    let source = args.policy.as_ref().map_or_else(
        || "the built-in policy".to_owned(),
        |path| format!("policy {}", path.display()),
    );
    print(&admission_policy::render(&export, &source))?;
    Ok(ExitCode::SUCCESS)
}

fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    match path {
        Some(path) => Ok(Policy::load(path)?),
        None => Ok(Policy::azure_default()),
    }
}

fn print(text: &str) -> anyhow::Result<()> {
    to_stdout(|out| out.write_all(text.as_bytes()))
}

/// Runs `write` on a buffered stdout; a closed pipe (`| head`) is not an error worth a panic.
fn to_stdout(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match write(&mut stdout).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Which pages the allocator's memory is backed by. mimalloc asks the kernel for 2 MiB pages,
/// and each one is zeroed whole at its first touch. A run over a tree or a big file allocates
/// tens of megabytes: there 2 MiB pages save thousands of 4 KiB page faults (~160 faults
/// instead of ~4,500 on the corpus). A pre-commit run over a few files touches a few
/// megabytes spread over a dozen huge pages, and zeroing them took a quarter of its time, so
/// small pages are the default. The switch is the kernel's per-process THP flag, read at each
/// page fault, so it can be flipped once the input is known.
mod page_size {
    use std::path::{Path, PathBuf};

    /// Input this big (a file, or any directory) gets huge pages.
    const HUGE_INPUT_BYTES: u64 = 4 << 20;

    pub fn small() {
        set_huge_pages(false);
    }

    /// No paths means the current directory.
    pub fn for_input(paths: &[PathBuf]) {
        if paths.is_empty() || paths.iter().any(|p| is_big(p)) {
            set_huge_pages(true);
        }
    }

    fn is_big(path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.is_dir() || m.len() >= HUGE_INPUT_BYTES)
    }

    /// A kernel without the flag (or without THP) keeps its own default: nothing to report.
    #[cfg(target_os = "linux")]
    fn set_huge_pages(on: bool) {
        let _ = rustix::thread::disable_transparent_huge_pages(!on);
    }

    #[cfg(not(target_os = "linux"))]
    fn set_huge_pages(_on: bool) {}
}
