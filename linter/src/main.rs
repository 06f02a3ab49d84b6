//! The `fluxfence` command line: lint Flux manifests for multi-tenancy before they land.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fluxfence::output::{self, Format};
use fluxfence::{Inventory, Policy, rules};

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
}

#[derive(clap::Args)]
struct FixArgs {
    #[command(flatten)]
    lint: LintArgs,
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

#[derive(clap::Args)]
struct LintArgs {
    /// Paths to lint; `-` reads manifests from stdin. Default: the current directory.
    paths: Vec<PathBuf>,
    /// Policy file. Default: `.fluxfence.yaml` at the repository root, else the built-in
    /// Azure `multiTenancy.enforce=true` policy.
    #[arg(long, env = "FLUXFENCE_POLICY")]
    policy: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text, env = "FLUXFENCE_FORMAT")]
    format: Format,
    /// Directory of CustomResourceDefinition YAML files (recursive) to validate against (FF001).
    #[arg(long, env = "FLUXFENCE_CRDS")]
    crds: Option<PathBuf>,
    /// List the objects whose namespace cannot be known offline.
    #[arg(long)]
    show_unresolved: bool,
    /// Apply safe fixes first, then report what is left (see `fluxfence fix`).
    #[arg(long)]
    fix: bool,
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
        Command::Lint(args) if args.fix => {
            let flags = FixFlags {
                diff: false,
                unsafe_fixes: false,
                config_namespace: None,
            };
            fix(args, flags, true)
        }
        Command::Lint(args) => lint(args),
        Command::Fix(FixArgs { lint, fix: flags }) => fix(lint, flags, false),
        Command::Rules => {
            let mut out = String::new();
            for rule in rules::ALL {
                let meta = rule.meta();
                let fix = if meta.fixable { "fix" } else { "   " };
                out.push_str(&format!(
                    "{}  {:<34} {:<5} {fix}  {}\n",
                    meta.code,
                    meta.name,
                    meta.default_severity.as_str(),
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
        Command::Kinds => {
            print(&format!(
                "{}\n",
                serde_json::to_string_pretty(fluxfence::kinds::FLUX_KINDS)?
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lint(args: LintArgs) -> anyhow::Result<ExitCode> {
    page_size::for_input(&args.paths);
    let mut inventory = read_input(&args.paths)?;
    if let Some(dir) = &args.crds {
        inventory.load_crds(dir);
    }
    let policy = load_policy(args.policy.as_deref(), inventory.root.as_deref())?;
    finish(fluxfence::lint(inventory, &policy), &args)
}

/// Prints the report and gives the exit code: what `lint` and `lint --fix` end with.
fn finish(report: fluxfence::Report, args: &LintArgs) -> anyhow::Result<ExitCode> {
    to_stdout(|out| output::write(&report, args.format, args.show_unresolved, out))?;
    let code = ExitCode::from(u8::try_from(report.exit_code()).unwrap_or(2));
    // The process ends here: freeing every tree and text one by one only delays the exit.
    std::mem::forget(report);
    Ok(code)
}

/// `fix`, or `lint --fix` (`then_lint`): fix, write (or diff), then report what is left.
fn fix(args: LintArgs, flags: FixFlags, then_lint: bool) -> anyhow::Result<ExitCode> {
    page_size::for_input(&args.paths);
    let inventory = read_input_for_fix(&args.paths)?;
    let policy = load_policy(args.policy.as_deref(), inventory.root.as_deref())?;
    // The report after `lint --fix` checks schemas like `lint` does; the CRDs are read first,
    // so that a wrong `--crds` stops the run before any file is written.
    let mut crds = Inventory::default();
    if let (true, Some(dir)) = (then_lint, &args.crds) {
        crds.load_crds(dir);
    }
    let unreadable = inventory.errors.iter().chain(&crds.errors);
    let errors: Vec<String> = unreadable.map(ToString::to_string).collect();
    if !errors.is_empty() {
        anyhow::bail!(
            "not fixing while files cannot be read or parsed:\n{}",
            errors.join("\n")
        );
    }
    let options = fluxfence::fix::FixOptions {
        unsafe_fixes: flags.unsafe_fixes,
        config_namespace: flags.config_namespace,
    };
    let outcome = fluxfence::fix::fix(inventory, &policy, &options).map_err(anyhow::Error::msg)?;
    let mut out = String::new();
    for (path, before, after) in &outcome.changed {
        if flags.diff {
            out.push_str(&fluxfence::fix::unified_diff(path, before, after));
        } else {
            std::fs::write(path, after).with_context(|| format!("writing {path}"))?;
        }
    }
    for line in &outcome.skipped {
        eprintln!("not fixed: {line}");
    }
    let verb = if flags.diff { "Would fix" } else { "Fixed" };
    eprintln!(
        "{verb} {} files ({} edits).",
        outcome.changed.len(),
        outcome.applied.len()
    );
    if !then_lint {
        print(&out)?;
        // Like `ruff --diff`: a pending change is a failure for CI.
        let pending = flags.diff && !outcome.changed.is_empty();
        return Ok(if pending {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let mut fixed = outcome.inventory;
    fixed.crds.extend(crds.crds);
    finish(fluxfence::lint(fixed, &policy), &args)
}

fn read_input_for_fix(paths: &[PathBuf]) -> anyhow::Result<Inventory> {
    anyhow::ensure!(
        !paths.iter().any(|p| p == Path::new("-")),
        "fix works on files; stdin (`-`) cannot be rewritten"
    );
    Ok(Inventory::load_for_fix(&or_current_dir(paths)))
}

/// The paths given, or the current directory when none are.
fn or_current_dir(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    }
}

fn read_input(paths: &[PathBuf]) -> anyhow::Result<Inventory> {
    let paths = or_current_dir(paths);
    if !paths.iter().any(|p| p == Path::new("-")) {
        return Ok(Inventory::load(&paths));
    }
    anyhow::ensure!(
        paths.len() == 1,
        "`-` (stdin) cannot be combined with other paths"
    );
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading stdin")?;
    match fluxfence::input::decode(bytes) {
        Ok(text) => Ok(Inventory::from_text("<stdin>", text)),
        Err((line, column, message)) => anyhow::bail!("<stdin>:{line}:{column}: {message}"),
    }
}

fn load_policy(explicit: Option<&Path>, root: Option<&Path>) -> anyhow::Result<Policy> {
    if let Some(path) = explicit {
        return Ok(Policy::load(path)?);
    }
    let discovered = root
        .map(|r| r.join(".fluxfence.yaml"))
        .filter(|p| p.is_file());
    match discovered {
        Some(path) => Ok(Policy::load(&path)?),
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
