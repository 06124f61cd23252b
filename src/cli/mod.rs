//! The `metapitr` command line. [`main`] parses the arguments, runs the command and maps
//! an error to an exit code; [`run`] hands each command to its module under `cmd`. The
//! clap types are in `args`, what the commands share (the global flags, opening the repo,
//! printing) in `common`.

mod args;
mod cmd;
mod common;

use std::process::ExitCode;

use clap::Parser;

pub use args::{
    ArchiveArgs, AtArg, BackupMetaArgs, BenchCmd, Cli, Command, ConfigCmd, DeleteMetaSnapshotsArgs,
    DemoArgs, DiffArgs, EpochArgs, EtcdAuthArg, ExportArgs, GcCheckArgs, HummockVersionArgs,
    ImportArgs, InfoArgs, PinsArgs, RecoveryArgs, RepairArgs, RepoArg, RestoreArgs, RetentionCmd,
    ShowArgs, ShowWhat, SimulateArgs, SnapshotCmd, VerifyArgs,
};
pub use common::{human_bytes, human_duration, Ctx};

use crate::error::{ErrorKind, Result};

/// Runs the CLI; errors are printed with what to do and mapped to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout (or of an output FIFO) went away (`| head`, `| grep -q`):
        // end quietly, as a closed pipe ends any Unix filter. Only local I/O counts; a
        // network store's broken connection is a failure to report.
        Err(e) if crate::error::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(e.kind()))
        }
    }
}

/// The exit code of a failure of this kind (docs/design.md §10).
fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidInput => 2,
        ErrorKind::Corruption => 3,
        ErrorKind::NotFound => 4,
        ErrorKind::Fenced => 5,
        ErrorKind::Unavailable => 6,
        _ => 1,
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let ctx = &Ctx {
        quiet: cli.quiet,
        config: cli.config,
    };
    match cli.cmd {
        Command::Epoch(a) => cmd::epoch::run(a),
        Command::Rw { cmd: c } => cmd::rw::run(c),
        Command::Archive(a) => cmd::archive::run(a, ctx).await,
        Command::Snapshot { cmd: c } => cmd::snapshot::run(c, ctx).await,
        Command::BackupMeta(a) => cmd::snapshot::backup_meta(a, ctx).await,
        Command::DeleteMetaSnapshots(a) => cmd::snapshot::delete_meta_snapshots(a, ctx).await,
        Command::Restore(a) => cmd::restore::run(a, ctx).await,
        Command::Export(a) => cmd::export::run(a, ctx).await,
        Command::Show(a) => cmd::show::run(a, ctx).await,
        Command::HummockVersion(a) => cmd::hummock_version::run(a, ctx).await,
        Command::Diff(a) => cmd::diff::run(a, ctx).await,
        Command::Import(a) => cmd::import::run(a, ctx).await,
        Command::Simulate(a) => cmd::simulate::run(a, ctx).await,
        Command::GcCheck(a) => cmd::gc_check::run(a, ctx).await,
        Command::Info(a) => cmd::info::run(a, ctx).await,
        Command::Verify(a) => cmd::verify::run(a, ctx).await,
        Command::Repair(a) => cmd::repair::run(a, ctx).await,
        Command::Config { cmd: c } => cmd::config::run(c, ctx),
        Command::Pins(a) => cmd::pins::run(a, ctx).await,
        Command::Retention { cmd: c } => cmd::retention::run(c, ctx).await,
        Command::Bench { cmd: c } => cmd::bench::run(c, ctx).await,
        Command::Demo(a) => cmd::demo::run(a).await,
    }
}
