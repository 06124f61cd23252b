//! The `metapitr` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::clock;
use crate::epoch;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::{Progress, Unit};
use crate::repo::Repo;
use crate::repo::RepoLocation;
use crate::restore::{self, Target};
use crate::sim::{self, RunOptions, SimConfig, TruthOptions};
use crate::snapshot;
use crate::store::TargetStore;

#[derive(Parser, Debug)]
#[command(
    name = "metapitr",
    version,
    about = "Point-in-time recovery for streaming-database metadata"
)]
pub struct Cli {
    /// No progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(
        long,
        short = 'q',
        global = true,
        env = "METAPITR_QUIET",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub quiet: bool,
    /// Settings file (or METAPITR_CONFIG). Default: ./metapitr.toml when it exists.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RepoArg {
    /// The repo's storage URL: s3://bucket[/prefix], file:///dir (or a path), memory://.
    /// Default: METAPITR_REPO, else [backup] storage_url in the settings file.
    #[arg(long, visible_alias = "backup-storage-url")]
    pub repo: Option<String>,
    /// A directory inside the storage URL. Default: METAPITR_BACKUP_STORAGE_DIRECTORY,
    /// else [backup] storage_directory.
    #[arg(long = "backup-storage-directory")]
    pub repo_directory: Option<String>,
    /// A file holding the repo's AES-256-GCM key as 64 hex digits (or set
    /// METAPITR_ENCRYPTION_KEY). Default: [backup] encryption_key_file, else none.
    #[arg(long)]
    pub encryption_key_file: Option<PathBuf>,
}

impl RepoArg {
    /// These flags as settings.
    fn flags(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("backup.storage_url", self.repo.clone()),
            ("backup.storage_directory", self.repo_directory.clone()),
            (
                "backup.encryption_key_file",
                self.encryption_key_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
        ]
    }

    /// The repo location: flags, then the environment, then the settings file.
    pub fn location(&self, ctx: &Ctx) -> Result<RepoLocation> {
        ctx.settings(&self.flags())?.repo_location()
    }
}

/// What every command shares: the global flags.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub quiet: bool,
    pub config: Option<PathBuf>,
}

impl Ctx {
    /// The effective settings with these flags on top.
    pub fn settings(&self, flags: crate::config::Flags) -> Result<crate::config::Settings> {
        crate::config::Settings::load(self.config.as_deref(), flags)
    }
}

/// The moment a time-travel command looks at: an epoch or a time (default: the newest).
#[derive(Args, Debug, Clone)]
#[group(required = false, multiple = false)]
pub struct AtArg {
    /// The epoch to look at (or a time: the state as of then). Default: the newest.
    #[arg(long)]
    pub at_epoch: Option<String>,
    /// An RFC 3339 time (or `2022-12-28 11:08:56.918`, UTC).
    #[arg(long)]
    pub at_time: Option<String>,
}

impl AtArg {
    pub fn target(&self) -> Result<Target> {
        Ok(match (&self.at_epoch, &self.at_time) {
            (Some(e), _) => Target::Epoch(epoch::parse_as_of(e)?),
            (None, Some(t)) => Target::Time(epoch::parse_time_ms(t)?),
            (None, None) => Target::Latest,
        })
    }
}

/// Credentials for an etcd target with authentication enabled (as risectl restore-meta).
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdAuthArg {
    /// The etcd target has authentication enabled: a username and password are required
    /// (from these flags, METAPITR_ETCD_USERNAME/PASSWORD or [etcd] in the settings file).
    #[arg(long)]
    pub etcd_auth: bool,
    /// The etcd user (with --etcd-auth). Default: METAPITR_ETCD_USERNAME, else [etcd]
    /// username.
    #[arg(long)]
    pub etcd_username: Option<String>,
    /// The etcd user's password (with --etcd-auth). Default: METAPITR_ETCD_PASSWORD, else
    /// [etcd] password.
    #[arg(long)]
    pub etcd_password: Option<String>,
}

impl EtcdAuthArg {
    fn flags(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("etcd.username", self.etcd_username.clone()),
            ("etcd.password", self.etcd_password.clone()),
        ]
    }

    /// Parses a store argument and attaches the network timeouts (for a PostgreSQL or
    /// etcd store) and the credentials (for an etcd store).
    fn store(&self, s: &str, ctx: &Ctx) -> Result<TargetStore> {
        let store = s.parse::<TargetStore>()?;
        if !matches!(store, TargetStore::Etcd(_) | TargetStore::Postgres(_)) {
            return Ok(store);
        }
        let settings = ctx.settings(&self.flags())?;
        let store = store.with_network(settings.network.timeouts());
        if !matches!(store, TargetStore::Etcd(_)) {
            return Ok(store);
        }
        Ok(store.with_etcd_auth(settings.etcd.credentials(self.etcd_auth)?))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert an epoch to its UTC time, or a time (RFC 3339) to its epoch.
    Epoch {
        /// An epoch (e.g. 3603859827458048) or a time (2022-12-28T11:08:56.918Z, or
        /// `2022-12-28 11:08:56.918` read as UTC).
        value: String,
        /// Print {"epoch", "timestamp", "unix_ms"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ship sealed WAL segments of a directory to the repo.
    Archive {
        /// The meta store directory the recorder writes (LOCK, CHECKPOINT, *.wal); it must
        /// exist and hold metapitr's WAL.
        #[arg(long)]
        wal_dir: PathBuf,
        #[command(flatten)]
        repo: RepoArg,
        /// Recover the directory (if no writer holds it), seal its tail, archive everything
        /// and exit.
        #[arg(long)]
        once: bool,
        /// How often to look for sealed segments when running continuously, in ms.
        /// Default: [archive] poll_ms, else 500.
        #[arg(long)]
        poll_ms: Option<u64>,
        /// Serve Prometheus metrics on http://ADDR/metrics and a health check on /health
        /// while archiving, e.g. 127.0.0.1:9187 (port 0: any free port). Default:
        /// METAPITR_METRICS_ADDR, else [archive] metrics_addr, else off; not with --once.
        #[arg(long, value_name = "ADDR", conflicts_with = "once")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Create, list and delete base snapshots.
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
    /// Restore the metadata as of an epoch into a fresh meta store (as risectl meta
    /// restore-meta).
    #[command(visible_alias = "restore-meta")]
    Restore(RestoreArgs),
    /// Take a snapshot (`snapshot create`, under RisingWave's name).
    BackupMeta {
        #[command(flatten)]
        repo: RepoArg,
        /// The epoch to snapshot (or a time); the newest archived by default.
        #[arg(long)]
        at_epoch: Option<String>,
    },
    /// Delete snapshots (`snapshot delete`, under RisingWave's name).
    DeleteMetaSnapshots {
        #[command(flatten)]
        repo: RepoArg,
        /// The snapshot ids (`metapitr snapshot list`).
        #[arg(required = true, value_name = "SNAPSHOT_IDS")]
        ids: Vec<u64>,
        /// Also delete what would make some epoch unrestorable.
        #[arg(long)]
        force: bool,
    },
    /// Write the metadata as JSONL: from the repo at an epoch (default), from a WAL
    /// directory offline (--wal-dir), or read back from any meta store (--from-store).
    #[command(group(clap::ArgGroup::new("source").args(["wal_dir", "from_store"])))]
    Export {
        #[command(flatten)]
        repo: RepoArg,
        /// An epoch or an RFC 3339 time (default: the newest; with --from-store, not used).
        #[arg(long, conflicts_with = "from_store")]
        at_epoch: Option<String>,
        /// The timeline to read (default: the newest; `metapitr info` lists them).
        #[arg(long, conflicts_with_all = ["wal_dir", "from_store"])]
        timeline: Option<u32>,
        /// Read a native meta store directory (CHECKPOINT + WAL) instead of the repo.
        #[arg(long)]
        wal_dir: Option<PathBuf>,
        /// Read back a meta store: dir:PATH, jsonl:PATH, sqlite:PATH, postgres://..., etcd://...
        #[arg(long)]
        from_store: Option<String>,
        #[command(flatten)]
        etcd: EtcdAuthArg,
        /// Output file, FIFO or device such as /dev/null (written through, never replaced);
        /// - or none for stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Overwrite a non-empty output file.
        #[arg(long)]
        force: bool,
        /// Keep users' password hashes (redacted by default; an export without them cannot
        /// be imported).
        #[arg(long)]
        include_secrets: bool,
    },
    /// Time travel: print the metadata as of an epoch or a time, without restoring it
    /// anywhere (password hashes redacted).
    Show {
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        at: AtArg,
        /// The timeline to read (default: the newest; `metapitr info` lists them).
        #[arg(long)]
        timeline: Option<u32>,
        /// What to print (default: everything).
        #[arg(value_enum)]
        what: Option<ShowWhat>,
        /// A JSON array of objects shaped like the export's lines.
        #[arg(long)]
        json: bool,
    },
    /// The SST set a time-travel read at an epoch uses: the Hummock version as of then,
    /// by compaction group and level.
    HummockVersion {
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        at: AtArg,
        /// The timeline to read (default: the newest; `metapitr info` lists them).
        #[arg(long)]
        timeline: Option<u32>,
        /// Print only the SST object ids, one per line (the objects a read would open).
        #[arg(long, conflicts_with = "json")]
        object_ids: bool,
        /// One JSON object: the version's epochs and its SSTs.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two epochs: catalog objects created, dropped and altered,
    /// users and grants, id generators, system parameters, SSTs added and removed.
    Diff {
        #[command(flatten)]
        repo: RepoArg,
        /// The earlier end: an epoch or an RFC 3339 time.
        #[arg(long)]
        from: String,
        /// The later end: an epoch or an RFC 3339 time.
        #[arg(long)]
        to: String,
        /// The timeline to read (default: the newest; `metapitr info` lists them).
        #[arg(long)]
        timeline: Option<u32>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a JSONL export into a meta store (as databend-metactl import).
    Import {
        /// The export to load; - for stdin.
        #[arg(long, default_value = "-")]
        from: String,
        /// dir:PATH, jsonl:PATH, sqlite:PATH, postgres://..., etcd://...
        #[arg(long)]
        target_store: String,
        #[command(flatten)]
        etcd: EtcdAuthArg,
        /// Clear a non-empty target first.
        #[arg(long)]
        force: bool,
        /// With --force, also empty a dir: target that holds files a meta store does not.
        #[arg(long, requires = "force")]
        force_clear: bool,
        /// This meta node's id in the new cluster (with --initial-cluster).
        #[arg(long, requires = "initial_cluster")]
        id: Option<u32>,
        /// A meta node of the new cluster, ID=HOST:PORT; repeat for each. Replaces the
        /// meta nodes the export lists.
        #[arg(long, requires = "id")]
        initial_cluster: Vec<String>,
        /// Read a format_version 1 export, which has no end line: nothing then tells one
        /// cut short from a whole one, so give it only an export known to be whole.
        #[arg(long)]
        allow_untrailed: bool,
    },
    /// Run the meta-service simulator with continuous archiving.
    Simulate(SimulateArgs),
    /// Which of the given SST object ids the garbage collector may delete (ids one per line,
    /// decimal, from --ids or stdin; the safe ones are printed the same way).
    GcCheck {
        #[command(flatten)]
        repo: RepoArg,
        /// The epoch at which the caller saw the candidates leave the live version (or a
        /// time).
        #[arg(long)]
        current_epoch: String,
        /// A file of candidate SST object ids, one decimal id per line (default: stdin).
        #[arg(long)]
        ids: Option<PathBuf>,
    },
    /// Show the repo: the restorable window with timestamps, its timelines (parent, fork
    /// epoch, writer epoch, what is archived and restorable), snapshots (count, size,
    /// newest age), WAL, pin sets, archive lag and the last verify.
    Info {
        #[command(flatten)]
        repo: RepoArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every archived object's checksums and the WAL's continuity, remembering what
    /// passed so that the next run reads only what is new.
    Verify {
        #[command(flatten)]
        repo: RepoArg,
        /// Read every object again, including those an earlier run verified.
        #[arg(long)]
        full: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Go on after the newest manifest version was lost (deleted, or unreadable): list
    /// again, in a new version numbered past it, the WAL segments and snapshots it named.
    /// `verify` reports a lost version; archiving refuses to write over one.
    Repair {
        #[command(flatten)]
        repo: RepoArg,
        /// Say what would be listed again, and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Settings: `config show` prints every setting's effective value and where it came
    /// from (flag, METAPITR_* environment, settings file, AWS_* environment, default),
    /// with secrets masked.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Show the pin set: pinned object count, covered epoch range, size.
    Pins {
        #[command(flatten)]
        repo: RepoArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention policy.
    Retention {
        #[command(subcommand)]
        cmd: RetentionCmd,
    },
    /// Measure recovery: build a history with the simulator, restore to random epochs,
    /// report RTO, bytes fetched, memory, archive size and lag (result.json, report.html).
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// Simulate 10 days with a 7-day retention window and vacuum, restore to an epoch six
    /// days back between two snapshots, validate its SSTs and check it against the truth.
    Demo {
        /// Working directory (a fresh temporary one by default, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Epochs to simulate, 5 simulated minutes apart (2880 = 10 days).
        #[arg(long, default_value_t = 2880)]
        epochs: u64,
        /// The simulator's random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

/// A part of the metadata for `metapitr show`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShowWhat {
    /// Databases, schemas, tables, views, sources, sinks, functions, connections, secrets.
    Catalog,
    /// Users and their grants.
    Users,
    /// The Hummock version: its epochs, compaction groups, table epochs and SSTs.
    Hummock,
    /// The id generators' next values.
    Ids,
    /// The cluster id, system parameters and workers.
    Params,
}

impl ShowWhat {
    /// Whether an export line of this `kind` belongs to the part.
    pub fn holds(self, kind: &str) -> bool {
        match self {
            ShowWhat::Users => kind == "user",
            ShowWhat::Hummock => matches!(
                kind,
                "hummock_version" | "compaction_group" | "table_committed_epoch" | "sst"
            ),
            ShowWhat::Ids => kind == "id_generator",
            ShowWhat::Params => matches!(kind, "cluster" | "system_param" | "worker"),
            ShowWhat::Catalog => crate::model::catalog_kind_from_name(kind).is_some(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Recovery time and archive cost on a simulated history.
    Recovery(RecoveryArgs),
    /// Render report.html and the plots again from a run's result.json.
    Report {
        /// A result.json written by `bench recovery` or benches/peers.sh.
        #[arg(long)]
        result: PathBuf,
        /// Where report.html and the SVG plots go.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RecoveryArgs {
    /// The repo to build the history in (default: a fresh directory under --out).
    #[arg(long)]
    pub repo: Option<String>,
    /// Simulated span of the history.
    #[arg(long, default_value = "7d")]
    pub window: String,
    /// Simulated time between epochs, in ms (1 ms to 1 day).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub epoch_interval_ms: u64,
    /// SSTs the version grows to.
    #[arg(long, default_value_t = 100_000)]
    pub ssts: usize,
    /// Catalog objects the catalog grows to.
    #[arg(long, default_value_t = 10_000)]
    pub catalog: usize,
    /// Epochs between snapshots.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,
    /// Restores to random epochs across the history.
    #[arg(long, default_value_t = 20)]
    pub restores: usize,
    /// The simulator's random seed: the same seed gives the same history.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where result.json and report.html go.
    #[arg(long)]
    pub out: PathBuf,
}

impl RecoveryArgs {
    fn config(&self) -> Result<crate::bench::RecoveryConfig> {
        Ok(crate::bench::RecoveryConfig {
            window_ms: crate::retention::Policy::parse_window(&self.window)?,
            epoch_interval_ms: self.epoch_interval_ms,
            ssts: self.ssts,
            catalog: self.catalog,
            snapshot_every: self.snapshot_every,
            restores: self.restores,
            seed: self.seed,
            progress: Progress::hidden(),
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the effective settings (the flags given here count as flags).
    Show {
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        etcd: EtcdAuthArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// Delete the snapshots and WAL segments no epoch in the window needs.
    Apply {
        #[command(flatten)]
        repo: RepoArg,
        /// How far back every epoch stays restorable, e.g. 7d (default from metapitr.toml).
        #[arg(long)]
        window: Option<String>,
        /// Keep every epoch from the newest N snapshots on.
        #[arg(long)]
        keep_last: Option<u32>,
        /// Say what would expire, and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a policy that keeps less than the one last applied.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Mark snapshots so that retention never expires them and their SSTs stay pinned.
    Keep {
        #[command(flatten)]
        repo: RepoArg,
        /// The snapshot ids (`metapitr snapshot list`).
        #[arg(required = true, value_name = "SNAPSHOT_IDS")]
        ids: Vec<u64>,
    },
    /// Clear the keep mark.
    Unkeep {
        #[command(flatten)]
        repo: RepoArg,
        /// The snapshot ids (`metapitr snapshot list`).
        #[arg(required = true, value_name = "SNAPSHOT_IDS")]
        ids: Vec<u64>,
    },
    /// Take a snapshot from the repo alone (newest snapshot + archived WAL), no service
    /// needed (as risectl meta backup-meta).
    Create {
        #[command(flatten)]
        repo: RepoArg,
        /// The epoch to snapshot (an epoch or RFC 3339 time); the newest archived by default.
        #[arg(long, conflicts_with = "wal_dir")]
        at_epoch: Option<String>,
        /// The timeline to snapshot (default: the newest).
        #[arg(long, conflicts_with = "wal_dir")]
        timeline: Option<u32>,
        /// Take the snapshot from a meta store directory's CHECKPOINT instead of the repo:
        /// a new base for the WAL archived after it, when the repo's bases were lost.
        #[arg(long)]
        wal_dir: Option<PathBuf>,
    },
    /// List snapshots (the columns of rw_catalog.rw_meta_snapshot).
    List {
        #[command(flatten)]
        repo: RepoArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete snapshots by id (as risectl meta delete-meta-snapshots). A delete that would
    /// make some epoch unrestorable is refused unless --force.
    Delete {
        #[command(flatten)]
        repo: RepoArg,
        /// The snapshot ids (`metapitr snapshot list`).
        #[arg(required = true, value_name = "SNAPSHOT_IDS")]
        ids: Vec<u64>,
        /// Also delete snapshots marked keep, the retention window's base, and any whose
        /// loss makes some epoch unrestorable.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["target_epoch", "target_time", "snapshot_id", "latest"])))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The epoch to restore (or a time: the state as of then).
    #[arg(long)]
    pub target_epoch: Option<String>,
    /// An RFC 3339 time (or `2022-12-28 11:08:56.918`, UTC): the state as of then.
    #[arg(long)]
    pub target_time: Option<String>,
    /// Restore exactly the state of this snapshot (`metapitr snapshot list`).
    #[arg(long, visible_alias = "meta-snapshot-id")]
    pub snapshot_id: Option<u64>,
    /// Restore the newest archived epoch.
    #[arg(long)]
    pub latest: bool,
    /// dir:PATH, jsonl:PATH, jsonl:-, sqlite:PATH, postgres://USER:PASSWORD@HOST:PORT/DB
    /// or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]
    #[arg(long)]
    pub target_store: String,
    #[command(flatten)]
    pub etcd: EtcdAuthArg,
    /// The timeline to read (default: the newest; `metapitr info` lists them).
    #[arg(long)]
    pub timeline: Option<u32>,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite a non-empty target; restore a target older than the retention window.
    #[arg(long)]
    pub force: bool,
    /// With --force, also empty a dir: target that holds files a meta store does not.
    #[arg(long, requires = "force")]
    pub force_clear: bool,
    /// The Hummock object storage the cluster uses (e.g. s3://state-bucket); the restored
    /// version is written there as its checkpoint. It must be the storage the metadata was
    /// recorded against (its state_store parameter without `hummock+`).
    #[arg(long, visible_alias = "hummock-storage")]
    pub hummock_storage_url: Option<String>,
    /// A directory inside --hummock-storage-url (the data_directory parameter).
    #[arg(long, requires = "hummock_storage_url")]
    pub hummock_storage_directory: Option<String>,
    /// Restore against a Hummock storage other than the one recorded (after copying the
    /// SSTs there): the restored state_store and data_directory point at it.
    #[arg(long, requires = "hummock_storage_url")]
    pub overwrite_hummock_storage_endpoint: bool,
    /// Check that every SST object the restored version references exists in the
    /// Hummock storage.
    #[arg(long, requires = "hummock_storage_url")]
    pub validate_integrity: bool,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The simulated meta service's store directory (created when missing).
    #[arg(long)]
    pub wal_dir: PathBuf,
    /// Epochs to simulate.
    #[arg(long)]
    pub epochs: u64,
    /// The simulator's random seed: the same seed gives the same history.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated time between epochs, in ms (1 ms to 1 day).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub epoch_interval_ms: u64,
    /// Take a snapshot every N epochs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: Option<u64>,
    /// Write the simulator's own state as DIR/<epoch>.jsonl every --truth-every epochs.
    #[arg(long)]
    pub truth_dir: Option<PathBuf>,
    /// Epochs between truth files (at least 1).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub truth_every: u64,
    /// Skip fsync (faster; acknowledged commits may be lost on a machine crash).
    #[arg(long)]
    pub no_sync: bool,
    /// Write every SST object the simulator creates to this object storage.
    #[arg(long)]
    pub hummock_storage: Option<String>,
    /// Apply retention with this window after every snapshot, e.g. 7d.
    #[arg(long, requires = "snapshot_every")]
    pub retention_window: Option<String>,
    /// Vacuum the Hummock storage: delete objects that left the live version and that
    /// gc-check reports safe.
    #[arg(long, requires = "hummock_storage")]
    pub vacuum: bool,
    /// Epochs between vacuum passes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub vacuum_every: u64,
    /// Continue the simulated meta service from a native store (dir:PATH), e.g. one a
    /// restore wrote: it records on a new timeline of the repo. The store is copied into
    /// --wal-dir unless that is the same directory.
    #[arg(long)]
    pub resume_from: Option<String>,
    /// Append each epoch to FILE once its commit is acknowledged (durable), one per line.
    #[arg(long)]
    pub ack_log: Option<PathBuf>,
}

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
            ExitCode::from(match e.kind() {
                ErrorKind::InvalidInput => 2,
                ErrorKind::Corruption => 3,
                ErrorKind::NotFound => 4,
                ErrorKind::Fenced => 5,
                ErrorKind::Unavailable => 6,
                ErrorKind::Internal => 1,
            })
        }
    }
}

/// The timeline a WAL directory records on: its newest segment's, else its checkpoint's.
fn dir_timeline(dir: &std::path::Path) -> Result<Option<u32>> {
    if let Some(s) = crate::wal::list_segments(dir)?.last() {
        return Ok(Some(s.timeline));
    }
    Ok(crate::snapshot::read_checkpoint(dir)?.map(|s| s.timeline))
}

/// Opens the repo the flags and settings name, which must exist.
fn open_repo(r: &RepoArg, ctx: &Ctx) -> Result<Repo> {
    open_settings_repo(&ctx.settings(&r.flags())?, false)
}

/// Opens the repo the settings name; a `file://` repo is created only when `create`
/// (archiving into a new repo), never by a command that reads.
fn open_settings_repo(settings: &crate::config::Settings, create: bool) -> Result<Repo> {
    let loc = settings.repo_location()?;
    if create {
        Repo::open_location(&loc, clock::system())
    } else {
        Repo::open_existing(&loc, clock::system())
    }
}

/// `--initial-cluster ID=HOST:PORT` values as meta nodes.
fn parse_initial_cluster(values: &[String]) -> Result<Vec<crate::model::WorkerNode>> {
    let mut nodes: Vec<crate::model::WorkerNode> = Vec::new();
    for v in values {
        let bad = || {
            Error::invalid_input(format!(
                "--initial-cluster {v}: expected ID=HOST:PORT, e.g. 1=127.0.0.1:5690"
            ))
        };
        let (id, addr) = v.split_once('=').ok_or_else(bad)?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let id: u32 = id.trim().parse().map_err(|_| bad())?;
        let port: u32 = port.parse::<u16>().map_err(|_| bad())?.into();
        if host.is_empty() {
            return Err(bad());
        }
        if nodes.iter().any(|n| n.id == id) {
            return Err(Error::invalid_input(format!(
                "--initial-cluster names node {id} twice"
            )));
        }
        nodes.push(crate::model::WorkerNode {
            id,
            host: host.to_string(),
            port,
            worker_type: crate::model::WorkerType::Meta as i32,
        });
    }
    Ok(nodes)
}

/// Prints a line on stdout. A reader that went away (`| head`, `| grep -q`) gives a
/// `BrokenPipe` error, on which `main` ends the command quietly.
fn out(s: impl AsRef<str>) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{}", s.as_ref()).map_err(|e| Error::io("<stdout>", e))
}

pub use crate::progress::{human_bytes, human_duration};

pub async fn run(cli: Cli) -> Result<()> {
    let ctx = &Ctx {
        quiet: cli.quiet,
        config: cli.config,
    };
    let quiet = ctx.quiet;
    match cli.cmd {
        Command::Epoch { value, json } => {
            let v = value.trim();
            let (e, is_epoch) = match v.parse::<u64>() {
                Ok(e) => (e, true),
                Err(_) => (epoch::from_unix_ms(epoch::parse_time_ms(v)?), false),
            };
            if json {
                out(json!({"epoch": e, "timestamp": epoch::format(e), "unix_ms": epoch::to_unix_ms(e)}).to_string())
            } else if is_epoch {
                out(epoch::format(e))
            } else {
                out(e.to_string())
            }
        }
        Command::Archive {
            wal_dir,
            repo,
            once,
            poll_ms,
            metrics_addr,
        } => {
            crate::archive::require_wal_dir(&wal_dir)?;
            let mut flags = repo.flags();
            flags.push(("archive.poll_ms", poll_ms.map(|p| p.to_string())));
            flags.push(("archive.metrics_addr", metrics_addr.map(|a| a.to_string())));
            let settings = ctx.settings(&flags)?;
            let poll_ms = settings.archive.poll_ms;
            // From the environment or the file, a metrics address does not apply to --once.
            let metrics_addr = settings.archive.metrics_addr.filter(|_| !once);
            let repo = open_settings_repo(&settings, true)?;
            // Bound before the timeline is claimed, so a bad address changes nothing.
            let metrics = match metrics_addr {
                Some(addr) => {
                    let tl = dir_timeline(&wal_dir)?;
                    let clock = repo.clock().clone();
                    let m = crate::metrics::ArchiverMetrics::new(clock, &wal_dir, tl)
                        .with_max_lag(Some(settings.archive.health_max_lag));
                    let server = crate::metrics::serve(addr, m.clone()).await?;
                    let at = server.local_addr();
                    let _ = writeln!(std::io::stderr(), "serving metrics on http://{at}/metrics");
                    Some((m, server))
                }
                None => None,
            };
            let _lock = if once {
                Some(seal_crashed_tail(&wal_dir).await?)
            } else {
                None
            };
            // Decided before claiming: a directory the repo would refuse must not fence the
            // writer that owns the timeline.
            let todo = crate::archive::preflight_dir(&repo, &wal_dir).await?;
            // One writer per timeline: this archiver takes the directory's timeline over
            // (archiving once with nothing to ship takes nothing over).
            let repo = match dir_timeline(&wal_dir)? {
                Some(tl) if todo > 0 || !once => repo.claim_timeline(tl).await?,
                _ => repo,
            };
            if once {
                let r = crate::archive::archive_dir(&repo, &wal_dir).await?;
                reseed(&repo, &wal_dir).await?;
                if r.segments == 0 {
                    return out(format!(
                        "nothing to archive: every sealed segment of {} is in the repo",
                        wal_dir.display()
                    ));
                }
                return out(format!(
                    "archived {} segments ({}), archive ends at lsn {} epoch {}",
                    r.segments,
                    human_bytes(r.stored_bytes),
                    r.archived_lsn,
                    r.archived_epoch
                ));
            }
            if let Some((m, _)) = &metrics {
                m.refresh(&repo).await;
            }
            let mut first_pass = true;
            let mut failures: u32 = 0;
            loop {
                let pass = crate::archive::archive_dir(&repo, &wal_dir).await;
                let pass_ok = pass.is_ok();
                if let Some((m, _)) = &metrics {
                    m.after_pass(&repo, &pass).await;
                }
                match pass {
                    Ok(r) if r.segments > 0 || first_pass => {
                        if r.segments > 0 {
                            out(format!(
                                "archived {} segments, archive ends at epoch {} ({})",
                                r.segments,
                                r.archived_epoch,
                                epoch::format(r.archived_epoch)
                            ))?;
                        }
                        match reseed(&repo, &wal_dir).await {
                            Ok(()) => first_pass = false,
                            Err(e) if e.kind() == ErrorKind::Unavailable => {
                                tracing::warn!(error = %e, "re-seeding a base failed; retrying")
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(_) => {}
                    // Another writer, or damage: this archiver must stop.
                    Err(e) if matches!(e.kind(), ErrorKind::Fenced | ErrorKind::Corruption) => {
                        return Err(e)
                    }
                    // Anything else may be fixed while it runs (storage back, a permission
                    // granted, a segment put back): keep trying, less often, with the
                    // error on /health and in the log.
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, failures, "archiving failed; retrying")
                    }
                }
                if pass_ok {
                    failures = 0;
                }
                let backoff = poll_ms.saturating_mul(1 << failures.min(6)).min(5_000);
                tokio::time::sleep(std::time::Duration::from_millis(backoff.max(poll_ms))).await;
            }
        }
        Command::Snapshot { cmd } => snapshot_cmd(cmd, ctx).await,
        Command::BackupMeta { repo, at_epoch } => {
            let cmd = SnapshotCmd::Create {
                repo,
                at_epoch,
                timeline: None,
                wal_dir: None,
            };
            snapshot_cmd(cmd, ctx).await
        }
        Command::DeleteMetaSnapshots { repo, ids, force } => {
            snapshot_cmd(SnapshotCmd::Delete { repo, ids, force }, ctx).await
        }
        Command::Restore(a) => restore_cmd(a, ctx).await,
        Command::Show {
            repo,
            at,
            timeline,
            what,
            json,
        } => {
            let repo = open_repo(&repo, ctx)?;
            let (plan, mut state) = restore::as_recorded(&repo, timeline, at.target()?).await?;
            if what.is_some_and(|w| w != ShowWhat::Hummock) {
                // Not asked for: no export lines for the (largest) part, the SSTs.
                state.hummock = Default::default();
            }
            let mut lines = crate::jsonl::lines(&state);
            crate::jsonl::redact(&mut lines);
            let shown: Vec<serde_json::Value> = lines
                .into_iter()
                .skip(1)
                .filter(|l| {
                    let kind = l["kind"].as_str().unwrap_or("");
                    what.is_none_or(|w| w.holds(kind))
                })
                .collect();
            if json {
                out(serde_json::Value::Array(shown).to_string())
            } else {
                let mut text = format!(
                    "as of epoch {} ({})\n",
                    plan.target_epoch,
                    epoch::format(plan.target_epoch)
                );
                for l in &shown {
                    let kind = l["kind"].as_str().unwrap_or("");
                    let fields: Vec<String> = l
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| *k != "kind")
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    text.push_str(&format!("{kind} {}\n", fields.join(" ")));
                }
                out(text.trim_end())
            }
        }
        Command::HummockVersion {
            repo,
            at,
            timeline,
            object_ids,
            json,
        } => {
            let repo = open_repo(&repo, ctx)?;
            let (plan, state) = restore::as_recorded(&repo, timeline, at.target()?).await?;
            hummock_version_out(&plan, &state, object_ids, json)
        }
        Command::Diff {
            repo,
            from,
            to,
            timeline,
            json,
        } => {
            let (from_t, to_t) = (
                Target::Epoch(epoch::parse_as_of(&from)?),
                Target::Epoch(epoch::parse_as_of(&to)?),
            );
            let repo = open_repo(&repo, ctx)?;
            let (a, b) = tokio::try_join!(
                restore::as_recorded(&repo, timeline, from_t),
                restore::as_recorded(&repo, timeline, to_t),
            )?;
            if a.0.target_epoch > b.0.target_epoch {
                return Err(Error::invalid_input(format!(
                    "--from {from} (epoch {}) is after --to {to} (epoch {}); give the earlier one first",
                    a.0.target_epoch, b.0.target_epoch
                )));
            }
            let d = crate::diff::Diff::between(&a.1, &b.1);
            if json {
                return out(serde_json::to_string(&d).map_err(|e| Error::internal(e.to_string()))?);
            }
            out(format!(
                "from epoch {} ({}) to epoch {} ({})",
                d.from_epoch,
                epoch::format(d.from_epoch),
                d.to_epoch,
                epoch::format(d.to_epoch)
            ))?;
            out(d.to_text())
        }
        Command::Export {
            repo,
            at_epoch,
            timeline,
            wal_dir,
            from_store,
            etcd,
            output,
            force,
            include_secrets,
        } => {
            let at = at_epoch.as_deref().map(epoch::parse_as_of).transpose()?;
            let state = if let Some(dir) = wal_dir {
                crate::store::read_wal_dir(&dir, at)?
            } else if let Some(s) = from_store {
                etcd.store(&s, ctx)?.read().await?
            } else {
                let repo = open_repo(&repo, ctx)?;
                let target = at.map_or(Target::Latest, Target::Epoch);
                let m = repo.manifest().await?;
                let plan = restore::plan(&repo, &m, timeline, target).await?;
                let progress = Progress::new(0, Unit::Items, "export", quiet);
                restore::execute_with(&repo, &plan, &progress).await?
            };
            let target = match output {
                Some(p) if p.as_os_str() != "-" => TargetStore::Jsonl(p),
                _ => TargetStore::Stdout,
            };
            let spin = Progress::spinner(&format!("writing {target}"), quiet);
            let r = target.write_export(&state, force, include_secrets).await;
            spin.finish();
            r
        }
        Command::Import {
            from,
            target_store,
            etcd,
            force,
            force_clear,
            id,
            initial_cluster,
            allow_untrailed,
        } => {
            let source = if from == "-" {
                TargetStore::Stdout
            } else {
                TargetStore::Jsonl(from.into())
            };
            let store = etcd.store(&target_store, ctx)?;
            if store == source {
                return Err(Error::invalid_input(
                    "--from and --target-store name the same file",
                ));
            }
            if !force && !store.is_empty().await? {
                return Err(Error::target_not_empty(store.to_string()));
            }
            store.check_clearable(force_clear)?;
            let spin = Progress::spinner(&format!("reading {source}"), quiet);
            let state = source.read_export(allow_untrailed);
            spin.finish();
            let mut state = state?;
            if let Some(id) = id {
                let nodes = parse_initial_cluster(&initial_cluster)?;
                crate::store::reinitialize_cluster(&mut state, id, nodes)?;
            }
            let spin = Progress::spinner(&format!("writing into {store}"), quiet);
            let r = store.write_with(&state, force, force_clear).await;
            spin.finish();
            r?;
            out(format!(
                "imported epoch {} ({} UTC) into {store}: {} catalog objects, {} users, {} SSTs",
                state.epoch,
                epoch::format(state.epoch),
                state.catalog.len(),
                state.users.len(),
                state.hummock.sst_count()
            ))
        }
        Command::Simulate(a) => {
            let opts = RunOptions {
                sim: SimConfig {
                    seed: a.seed,
                    epoch_interval_ms: a.epoch_interval_ms,
                    ..Default::default()
                },
                epochs: a.epochs,
                snapshot_every: a.snapshot_every,
                truth: a.truth_dir.map(|dir| TruthOptions {
                    dir,
                    every: a.truth_every,
                }),
                hummock_storage: a
                    .hummock_storage
                    .as_deref()
                    .map(|u| Repo::open(u, clock::system()))
                    .transpose()?,
                retention: a
                    .retention_window
                    .as_deref()
                    .map(|w| {
                        crate::retention::Policy::parse_window(w).map(|ms| {
                            crate::retention::Policy {
                                window_ms: Some(ms),
                                keep_last: None,
                            }
                        })
                    })
                    .transpose()?,
                vacuum_every: a.vacuum.then_some(a.vacuum_every),
                recorder: crate::recorder::RecorderOptions {
                    wal: crate::wal::WalOptions {
                        sync: !a.no_sync,
                        ..Default::default()
                    },
                    snapshot_every_ms: None,
                    ..Default::default()
                },
                ..Default::default()
            };
            if let Some(from) = &a.resume_from {
                prepare_resume(from, &a.wal_dir)?;
            }
            let progress = Progress::new(a.epochs, Unit::Items, "simulate", quiet);
            let opts = RunOptions {
                ack_log: a.ack_log.clone(),
                progress: progress.clone(),
                ..opts
            };
            let t = Instant::now();
            let r = sim::run(a.repo.location(ctx)?, &a.wal_dir, opts).await;
            progress.finish();
            let r = r?;
            if r.objects_written > 0 {
                out(format!(
                    "hummock storage: {} SST objects written, {} vacuumed; retention moved the window {} times, now from {}",
                    r.objects_written,
                    r.objects_vacuumed,
                    r.retention_moves,
                    epoch::format(r.window_start)
                ))?;
            }
            out(format!(
                "simulated {} epochs ({} .. {}), {} records in {}; archived {} segments ({}); {} snapshots; {} truth files",
                r.epochs,
                epoch::format(r.first_epoch),
                epoch::format(r.last_epoch),
                r.records,
                human_duration(t.elapsed()),
                r.archive.segments,
                human_bytes(r.archive.stored_bytes),
                r.snapshots.len(),
                r.truth_files.len()
            ))
        }
        Command::Demo { dir, epochs, seed } => crate::demo::run(dir, epochs, seed).await,
        Command::Bench {
            cmd: BenchCmd::Recovery(a),
        } => {
            let mut cfg = a.config()?;
            cfg.progress = Progress::new(0, Unit::Items, "bench", quiet);
            let out_dir = a.out.clone();
            let work = out_dir.join("work");
            if work.exists() {
                return Err(Error::target_not_empty(format!(
                    "{} (a previous run's history; remove it or choose another --out)",
                    work.display()
                )));
            }
            let repo_url = a
                .repo
                .clone()
                .unwrap_or_else(|| format!("file://{}", work.join("repo").display()));
            let loc = RepoArg {
                repo: Some(repo_url),
                ..Default::default()
            }
            .location(ctx)?;
            let r = crate::bench::recovery(&cfg, &loc, &work).await?;
            let (json, html) = crate::bench::write_report(&r, &out_dir)?;
            out(format!(
                "{} epochs, {} SSTs, {} catalog objects, built in {:.1} s; RTO p50 {:.1} ms, \
                 p99 {:.1} ms (into a dir: store {:.1} / {:.1} ms); {:.1} archived bytes per \
                 epoch, {:.3} of the history as JSON; archive lag p99 {} ms; peak RSS {} \
                 MiB\nwrote {} and {}",
                r.epochs,
                r.final_ssts,
                r.final_catalog_objects,
                r.build_seconds,
                r.rto_ms_p50,
                r.rto_ms_p99,
                r.store_ms_p50,
                r.store_ms_p99,
                r.archived_bytes_per_epoch,
                r.archive_to_json_ratio,
                r.archive_lag_ms_p99,
                r.peak_rss_bytes >> 20,
                json.display(),
                html.display()
            ))
        }
        Command::Bench {
            cmd: BenchCmd::Report { result, out: dir },
        } => {
            let text = std::fs::read_to_string(&result).map_err(|e| Error::io(&result, e))?;
            let r: crate::bench::RecoveryResult = serde_json::from_str(&text).map_err(|e| {
                Error::invalid_input(format!(
                    "{} is not a benchmark result.json: {e}",
                    result.display()
                ))
            })?;
            let (_, html) = crate::bench::write_report(&r, &dir)?;
            out(format!("wrote {}", html.display()))
        }
        Command::GcCheck {
            repo,
            current_epoch,
            ids,
        } => {
            let repo = open_repo(&repo, ctx)?;
            let e = epoch::parse_epoch_or_time(&current_epoch)?;
            let text = match &ids {
                Some(p) => std::fs::read_to_string(p).map_err(|err| Error::io(p, err))?,
                None => std::io::read_to_string(std::io::stdin())
                    .map_err(|err| Error::io("<stdin>", err))?,
            };
            let candidates = parse_ids(&text)?;
            let pins = crate::pin::load_all(&repo).await?;
            match crate::pin::gc_check(&pins, e, &candidates) {
                crate::pin::GcAnswer::Safe(safe) => {
                    let mut o = std::io::BufWriter::new(std::io::stdout().lock());
                    for id in safe {
                        writeln!(o, "{id}").map_err(|err| Error::io("<stdout>", err))?;
                    }
                    o.flush().map_err(|err| Error::io("<stdout>", err))
                }
                crate::pin::GcAnswer::NotCovered {
                    covered_to,
                    current_epoch,
                } => {
                    eprintln!(
                        "nothing is safe: the pin set covers epochs up to {covered_to} ({}) but the objects left the live version at {current_epoch} ({}); retry once the archive has caught up",
                        epoch::format(covered_to),
                        epoch::format(current_epoch)
                    );
                    Ok(())
                }
            }
        }
        Command::Info { repo, json } => info_cmd(&repo, json, ctx).await,
        Command::Repair { repo, dry_run } => {
            let repo = open_repo(&repo, ctx)?;
            let r = crate::repair::run(&repo, dry_run).await?;
            if r.lost_version == 0 {
                return out(format!(
                    "nothing to repair: the newest manifest version {} of {} is intact",
                    r.from_version,
                    repo.url()
                ));
            }
            if dry_run {
                return out(format!(
                    "dry run: manifest version {} is lost; going on from version {} would list \
                     again {}",
                    r.lost_version,
                    r.from_version,
                    r.unlisted.describe()
                ));
            }
            out(format!(
                "manifest version {} was lost; wrote version {} from version {}, listing again \
                 {} WAL segments and {} snapshots, {} pin sets computed again{}",
                r.lost_version,
                r.new_version,
                r.from_version,
                r.segments_listed,
                r.snapshots_listed,
                r.pin_sets_rebuilt,
                if r.segments_skipped > 0 {
                    format!(
                        "; {} segments do not chain onto the archive and stay unlisted",
                        r.segments_skipped
                    )
                } else {
                    String::new()
                }
            ))
        }
        Command::Config {
            cmd: ConfigCmd::Show { repo, etcd, json },
        } => {
            let mut flags = repo.flags();
            flags.extend(etcd.flags());
            let settings = ctx.settings(&flags)?;
            let shown = settings.show()?;
            if json {
                let v: Vec<serde_json::Value> = shown
                    .iter()
                    .map(|x| {
                        let s = x.setting;
                        json!({
                            "key": s.key,
                            "value": x.value,
                            "source": x.source.map(|x| x.to_string()),
                            "secret": s.secret,
                            "flag": s.flag,
                            "env": s.env,
                            "fallback_env": s.fallback_env,
                            "default": x.default,
                            "help": s.help,
                        })
                    })
                    .collect();
                return out(json!({
                    "file": settings.file().map(|p| p.display().to_string()),
                    "settings": v,
                })
                .to_string());
            }
            let mut t = format!(
                "settings file: {}\n",
                settings
                    .file()
                    .map_or("none".to_string(), |p| p.display().to_string())
            );
            let width = shown.iter().map(|x| x.setting.key.len()).max().unwrap_or(0);
            for x in &shown {
                t.push_str(&format!(
                    "{:width$}  {}{}\n",
                    x.setting.key,
                    x.value.as_deref().unwrap_or("(unset)"),
                    x.source.map(|x| format!("  [{x}]")).unwrap_or_default()
                ));
            }
            out(t.trim_end())
        }
        Command::Verify { repo, full, json } => {
            let repo = open_repo(&repo, ctx)?;
            let progress = Progress::new(0, Unit::Items, "verify", quiet);
            let t = Instant::now();
            let r = crate::verify::run(&repo, full, &progress).await?;
            if json {
                out(serde_json::to_string(&r).map_err(|e| Error::internal(e.to_string()))?)?;
            } else {
                if let Some(n) = &r.note {
                    out(format!("note: {n}"))?;
                }
                for p in &r.problems {
                    out(format!("{}: {}: {}", p.kind, p.object, p.message))?;
                }
                out(format!(
                    "verified manifest version {}{} in {}: read {} objects ({}): {} segments, {} index chunks, {} snapshots, {} pin sets; {} verified earlier and skipped; {}",
                    r.manifest_version,
                    if r.full { " (full)" } else { "" },
                    human_duration(t.elapsed()),
                    r.objects_read,
                    human_bytes(r.bytes_read),
                    r.segments,
                    r.index_chunks,
                    r.snapshots,
                    r.pin_sets,
                    r.objects_skipped,
                    if r.ok() {
                        "no problems".to_string()
                    } else {
                        format!("{} problems", r.problems.len())
                    }
                ))?;
            }
            match r.error() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        Command::Pins { repo, json } => {
            let repo = open_repo(&repo, ctx)?;
            let m = repo.manifest().await?;
            let pins = crate::pin::load_all(&repo).await?;
            let count: u64 = pins.iter().map(|p| p.count()).sum();
            let from = pins.iter().map(|p| p.from_epoch).min().unwrap_or(0);
            let to = pins.iter().map(|p| p.to_epoch).max().unwrap_or(0);
            let bytes: u64 = m.pins.iter().map(|p| p.stored_size).sum();
            if json {
                out(
                    json!({"count": count, "from_epoch": from, "to_epoch": to, "bytes": bytes})
                        .to_string(),
                )
            } else {
                out(format!(
                    "{count} pinned SST objects, epochs {from} ({}) .. {to} ({}), {}",
                    epoch::format(from),
                    epoch::format(to),
                    human_bytes(bytes)
                ))
            }
        }
        Command::Retention {
            cmd:
                RetentionCmd::Apply {
                    repo: repo_arg,
                    window,
                    keep_last,
                    dry_run,
                    force,
                },
        } => {
            let mut flags = repo_arg.flags();
            flags.push(("retention.window", window));
            flags.push(("retention.keep_last", keep_last.map(|k| k.to_string())));
            let settings = ctx.settings(&flags)?;
            let policy = settings.retention.policy();
            let repo = open_settings_repo(&settings, false)?;
            let r = crate::retention::apply(&repo, policy, dry_run, force).await?;
            out(format!(
                "{}window now starts at epoch {} ({}), newest {} ({}); {} snapshots ({:?}) and {} WAL segments expired ({}); {} SST objects pinned",
                if r.dry_run { "dry run: " } else { "" },
                r.window_start,
                epoch::format(r.window_start),
                r.newest_epoch,
                epoch::format(r.newest_epoch),
                r.deleted_snapshots.len(),
                r.deleted_snapshots,
                r.deleted_segments,
                human_bytes(r.deleted_bytes),
                r.pinned
            ))
        }
    }
}

/// Prints the SSTs of the version as of `plan.target_epoch`.
fn hummock_version_out(
    plan: &restore::Plan,
    state: &crate::model::State,
    object_ids: bool,
    json: bool,
) -> Result<()> {
    let v = &state.hummock;
    if object_ids {
        let ids: std::collections::BTreeSet<u64> = v.object_ids().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        return out(text.join("\n"));
    }
    let level = |loc: &crate::model::SstLoc| match loc {
        crate::model::SstLoc::L0(sub) => (0, Some(*sub)),
        crate::model::SstLoc::Level(l) => (*l, None),
    };
    let sst = |g: u64, loc: &crate::model::SstLoc, s: &crate::model::SstableInfo| {
        let (level, sub_level) = level(loc);
        json!({
            "group": g,
            "level": level,
            "sub_level": sub_level,
            "sst_id": s.sst_id,
            "object_id": s.object_id,
            "file_size": s.file_size,
            "table_ids": s.table_ids,
            "min_epoch": s.min_epoch,
            "max_epoch": s.max_epoch,
        })
    };
    if json {
        let ssts: Vec<serde_json::Value> = v.ssts().map(|(g, loc, s)| sst(g, &loc, s)).collect();
        return out(json!({
            "epoch": plan.target_epoch,
            "timestamp": epoch::format(plan.target_epoch),
            "version_id": v.id,
            "max_committed_epoch": v.max_committed_epoch,
            "safe_epoch": v.safe_epoch,
            "sst_count": v.sst_count(),
            "object_count": v.object_count(),
            "total_file_size": v.total_file_size(),
            "ssts": ssts,
        })
        .to_string());
    }
    out(format!(
        "hummock version {} as of epoch {} ({}): max_committed_epoch {}, safe_epoch {}, {} SSTs in {} objects, {}",
        v.id,
        plan.target_epoch,
        epoch::format(plan.target_epoch),
        v.max_committed_epoch,
        v.safe_epoch,
        v.sst_count(),
        v.object_count(),
        human_bytes(v.total_file_size())
    ))?;
    let mut text = String::new();
    for (g, loc, s) in v.ssts() {
        let level = match level(&loc) {
            (0, Some(sub)) => format!("L0.{sub}"),
            (l, _) => format!("L{l}"),
        };
        text.push_str(&format!(
            "group {g} {level} sst {} object {} {} tables {:?} epochs {}..{}\n",
            s.sst_id,
            s.object_id,
            human_bytes(s.file_size),
            s.table_ids,
            s.min_epoch,
            s.max_epoch
        ));
    }
    out(text.trim_end())
}

/// After an archiving pass: when the repo holds no base from which the archive's end can
/// be restored (the snapshots were deleted), the directory's checkpoint becomes one.
async fn reseed(repo: &Repo, wal_dir: &std::path::Path) -> Result<()> {
    if let Some(e) = snapshot::reseed_from_checkpoint(repo, wal_dir, true).await? {
        out(format!(
            "the repo could not restore the archived WAL of timeline {}: uploaded the local \
             checkpoint (lsn {}, epoch {} ({})) as snapshot {}",
            e.timeline,
            e.lsn,
            e.max_committed_epoch,
            epoch::format(e.max_committed_epoch),
            e.id
        ))?;
    }
    Ok(())
}

/// For `archive --once`: takes the directory's lock (so a directory a live writer holds
/// is refused: taking its timeline over would fence that writer's own archiver), recovers
/// the directory (truncating a torn tail) and seals the active segment so that it can be
/// shipped. The lock is returned, to be held while archiving.
async fn seal_crashed_tail(dir: &std::path::Path) -> Result<std::fs::File> {
    let lock = crate::wal::lock_dir(dir)?;
    let segs = crate::wal::list_segments(dir)?;
    if let Some(open) = segs.iter().find(|s| !s.sealed) {
        let held = lock.try_clone().map_err(|e| Error::io(dir, e))?;
        crate::wal::Wal::open_locked(
            held,
            dir,
            open.timeline,
            open.first_lsn,
            Default::default(),
            clock::system(),
        )?
        .close()
        .await?;
    }
    Ok(lock)
}

async fn snapshot_cmd(cmd: SnapshotCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        SnapshotCmd::Create {
            repo,
            at_epoch,
            timeline,
            wal_dir: Some(dir),
        } => {
            let _ = (at_epoch, timeline);
            crate::archive::require_wal_dir(&dir)?;
            let repo = open_repo(&repo, ctx)?;
            let e = snapshot::reseed_from_checkpoint(&repo, &dir, false)
                .await?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "{} holds no CHECKPOINT to take a snapshot from",
                        dir.display()
                    ))
                })?;
            out(format!(
                "snapshot {} at epoch {} ({}) from {}'s checkpoint (lsn {}), {}",
                e.id,
                e.max_committed_epoch,
                epoch::format(e.max_committed_epoch),
                dir.display(),
                e.lsn,
                human_bytes(e.stored_size)
            ))
        }
        SnapshotCmd::Create {
            repo,
            at_epoch,
            timeline,
            wal_dir: None,
        } => {
            let repo = open_repo(&repo, ctx)?;
            let target = match at_epoch {
                Some(s) => Target::Epoch(epoch::parse_as_of(&s)?),
                None => Target::Latest,
            };
            // Exactly as recorded: a snapshot is a base for replaying the records after it,
            // so its id generators must be the recorded ones, not raised.
            let (_, state) = restore::as_recorded(&repo, timeline, target).await?;
            let e = snapshot::upload(&repo, &state).await?;
            out(format!(
                "snapshot {} at epoch {} ({}), {}",
                e.id,
                e.max_committed_epoch,
                epoch::format(e.max_committed_epoch),
                human_bytes(e.stored_size)
            ))
        }
        SnapshotCmd::List { repo, json } => {
            let repo = open_repo(&repo, ctx)?;
            let list = snapshot::list(&repo).await?;
            if json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|s| {
                        json!({
                            "id": s.id,
                            "safe_epoch": s.safe_epoch,
                            "safe_epoch_ts": epoch::format(s.safe_epoch),
                            "max_committed_epoch": s.max_committed_epoch,
                            "max_committed_epoch_ts": epoch::format(s.max_committed_epoch),
                            "size": s.stored_size,
                            "timeline": s.timeline,
                            "keep": s.keep,
                        })
                    })
                    .collect();
                return out(serde_json::Value::Array(v).to_string());
            }
            out(format!(
                "{:>6} | {:>18} | {:<23} | {:>19} | {:<23} | {:>10} | {:>8} | keep",
                "id",
                "safe_epoch",
                "safe_epoch_ts",
                "max_committed_epoch",
                "max_committed_epoch_ts",
                "size",
                "timeline"
            ))?;
            for s in list {
                out(format!(
                    "{:>6} | {:>18} | {:<23} | {:>19} | {:<23} | {:>10} | {:>8} | {}",
                    s.id,
                    s.safe_epoch,
                    epoch::format(s.safe_epoch),
                    s.max_committed_epoch,
                    epoch::format(s.max_committed_epoch),
                    human_bytes(s.stored_size),
                    s.timeline,
                    if s.keep { "yes" } else { "" }
                ))?;
            }
            Ok(())
        }
        SnapshotCmd::Keep { repo, ids } => set_keep(&repo, &ids, true, ctx).await,
        SnapshotCmd::Unkeep { repo, ids } => set_keep(&repo, &ids, false, ctx).await,
        SnapshotCmd::Delete { repo, ids, force } => {
            let repo = open_repo(&repo, ctx)?;
            let removed = snapshot::delete(&repo, &ids, force).await?;
            out(format!("deleted {} snapshots", removed.len()))
        }
    }
}

async fn set_keep(repo: &RepoArg, ids: &[u64], keep: bool, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(repo, ctx)?;
    for id in ids {
        let s = crate::retention::set_keep(&repo, *id, keep).await?;
        out(format!("snapshot {} keep = {}", s.id, s.keep))?;
    }
    Ok(())
}

fn parse_ids(text: &str) -> Result<roaring::RoaringTreemap> {
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        ids.push(t.parse::<u64>().map_err(|_| {
            Error::invalid_input(format!(
                "line {}: '{t}' is not a decimal SST object id",
                n + 1
            ))
        })?);
    }
    ids.sort_unstable();
    ids.dedup();
    roaring::RoaringTreemap::from_sorted_iter(ids)
        .map_err(|e| Error::internal(format!("id set: {e}")))
}

async fn restore_cmd(a: RestoreArgs, ctx: &Ctx) -> Result<()> {
    let quiet = ctx.quiet;
    let repo = open_repo(&a.repo, ctx)?;
    let target = if let Some(e) = &a.target_epoch {
        Target::Epoch(epoch::parse_as_of(e)?)
    } else if let Some(t) = &a.target_time {
        Target::Time(epoch::parse_time_ms(t)?)
    } else if let Some(id) = a.snapshot_id {
        Target::Snapshot(id)
    } else {
        Target::Latest
    };
    let store = a.etcd.store(&a.target_store, ctx)?;
    if !a.force && !store.is_empty().await? {
        return Err(Error::target_not_empty(store.to_string()));
    }
    store.check_clearable(a.force_clear)?;
    let t = Instant::now();
    let m = repo.manifest().await?;
    let plan = restore::plan(&repo, &m, a.timeline, target).await?;
    let to_stdout = store == TargetStore::Stdout;
    // Messages only: a reader of them that went away does not stop the restore.
    let say = |s: String| {
        if to_stdout {
            eprintln!("{s}");
        } else {
            let _ = out(s);
        }
    };
    say(plan.describe());
    if !a.force {
        restore::check_window(&m, &plan)?;
    }
    let hummock_location = a
        .hummock_storage_url
        .as_deref()
        .map(|u| crate::repo::join_location(u, a.hummock_storage_directory.as_deref()));
    if a.dry_run {
        say("dry run: nothing written".into());
        return Ok(());
    }
    let progress = Progress::new(0, Unit::Items, "restore", quiet || to_stdout);
    let mut state = restore::execute_with(&repo, &plan, &progress).await?;
    if let Some(loc) = &hummock_location {
        crate::hummock::guard_storage(&mut state, loc, a.overwrite_hummock_storage_endpoint)?;
    }
    // Opened (a file storage created) only once the restore is known to go ahead.
    let network = ctx.settings(&a.repo.flags())?.network.timeouts();
    let hummock = match hummock_location.as_deref() {
        Some(u) => Some(Repo::open_location(
            &RepoLocation {
                network,
                ..RepoLocation::new(u)
            },
            clock::system(),
        )?),
        None => None,
    };
    if let (Some(h), true) = (&hummock, a.validate_integrity) {
        let n = crate::hummock::validate_integrity(h, &state).await?;
        say(format!(
            "integrity: all {n} SST objects of the restored version exist in {}",
            h.url()
        ));
    }
    let spin = Progress::spinner(&format!("writing into {store}"), quiet || to_stdout);
    let r = store.write_with(&state, a.force, a.force_clear).await;
    spin.finish();
    r?;
    if let Some(h) = &hummock {
        crate::hummock::write_checkpoint(h, &state).await?;
        say(format!(
            "wrote the restored Hummock version to {}/{}",
            h.url(),
            crate::hummock::CHECKPOINT_KEY
        ));
    }
    say(format!(
        "restored epoch {} ({} UTC) into {store} in {}: {} catalog objects, {} users, {} SSTs",
        state.epoch,
        epoch::format(state.epoch),
        human_duration(t.elapsed()),
        state.catalog.len(),
        state.users.len(),
        state.hummock.sst_count()
    ));
    Ok(())
}

/// Makes `wal_dir` the native store `from` names (copying it unless it is the same
/// directory), for `simulate --resume-from`.
fn prepare_resume(from: &str, wal_dir: &std::path::Path) -> Result<()> {
    let TargetStore::Dir(src) = from.parse::<TargetStore>()? else {
        return Err(Error::invalid_input(format!(
            "--resume-from {from}: only a native store (dir:PATH) can be resumed"
        )));
    };
    if crate::snapshot::read_checkpoint(&src)?.is_none() {
        return Err(Error::not_found(format!(
            "--resume-from {from}: {} holds no CHECKPOINT; restore into it first",
            src.display()
        )));
    }
    let same = match (std::fs::canonicalize(&src), std::fs::canonicalize(wal_dir)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(());
    }
    if std::fs::read_dir(wal_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::target_not_empty(format!(
            "--wal-dir {} (to resume from {from}, give an empty directory or the store itself)",
            wal_dir.display()
        )));
    }
    std::fs::create_dir_all(wal_dir).map_err(|e| Error::io(wal_dir, e))?;
    for ent in std::fs::read_dir(&src).map_err(|e| Error::io(&src, e))? {
        let ent = ent.map_err(|e| Error::io(&src, e))?;
        let name = ent.file_name();
        if name == crate::wal::LOCK_FILE || !ent.path().is_file() {
            continue;
        }
        let to = wal_dir.join(&name);
        std::fs::copy(ent.path(), &to).map_err(|e| Error::io(&to, e))?;
    }
    crate::wal::fsync_dir(wal_dir)
}

async fn info_cmd(repo: &RepoArg, json: bool, ctx: &Ctx) -> Result<()> {
    let repo = open_repo(repo, ctx)?;
    let m = repo.manifest().await?;
    let now = repo.clock().now_ms();
    let age = |e: u64| now.saturating_sub(epoch::to_unix_ms(e));
    let ranges_json = |ranges: &[(u64, u64)]| -> Vec<serde_json::Value> {
        ranges
            .iter()
            .map(|(a, b)| {
                json!({
                    "from": a, "from_ts": epoch::format(*a),
                    "to": b, "to_ts": epoch::format(*b),
                })
            })
            .collect()
    };
    let tree = crate::timeline::tree(&m);
    let timelines: Vec<serde_json::Value> = tree
        .iter()
        .map(|t| {
            let (last_lsn, last_epoch) = t.last();
            let first = t.first_archived();
            let ranges = restore::restorable_ranges(&m, t.id);
            json!({
                "id": t.id,
                "parent": t.parent,
                "fork_epoch": t.fork_epoch,
                "fork_epoch_ts": (t.parent != 0).then(|| epoch::format(t.fork_epoch)),
                "fork_lsn": t.fork_lsn,
                "writer_epoch": t.writer_epoch,
                "first_archived_epoch": first.map(|f| f.1),
                "last_archived_epoch": last_epoch,
                "last_archived_epoch_ts": (last_epoch != 0).then(|| epoch::format(last_epoch)),
                "last_archived_lsn": last_lsn,
                "archive_age_ms": (last_epoch != 0).then(|| age(last_epoch)),
                "segments": t.segment_count(),
                "index_chunks": t.chunks.len(),
                "archived_bytes": t.archived_bytes(),
                "snapshots": m.snapshots.iter().filter(|s| s.timeline == t.id).count(),
                "restorable": ranges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
                "restorable_ts": ranges_json(&ranges),
            })
        })
        .collect();
    let newest = m.newest_timeline();
    let window = restore::restorable_ranges(&m, newest);
    let newest_snap = m.snapshots.iter().max_by_key(|s| s.max_committed_epoch);
    let snap_bytes: u64 = m.snapshots.iter().map(|s| s.stored_size).sum();
    let wal_segments: u64 = m.timelines.iter().map(|t| t.segment_count()).sum();
    let wal_bytes: u64 = m.timelines.iter().map(|t| t.archived_bytes()).sum();
    let pinned: u64 = m.pins.iter().map(|p| p.count).sum();
    let pin_bytes: u64 = m.pins.iter().map(|p| p.stored_size).sum();
    let lag_ms = m
        .timeline(newest)
        .map(|t| t.last().1)
        .filter(|e| *e != 0)
        .map(age);
    let verify = match crate::verify::load_state(&repo).await {
        Ok(Some(v)) => json!({
            "at_ms": v.verified_at_ms,
            "at": epoch::format_unix_ms(v.verified_at_ms),
            "age_ms": now.saturating_sub(v.verified_at_ms),
            "manifest_version": v.manifest_version,
            "problems": v.last_problems,
            "full": v.last_full,
            "objects_read": v.last_objects_read,
            "bytes_read": v.last_bytes_read,
            "objects_verified": v.objects.len(),
        }),
        Ok(None) => serde_json::Value::Null,
        Err(e) => json!({ "error": e.to_string() }),
    };
    let info = json!({
        "repo": repo.url(),
        "manifest_version": m.version,
        "manifest_updated_at_ms": m.updated_at_ms,
        "newest_timeline": newest,
        "timelines": timelines,
        "restorable": ranges_json(&window),
        "archive_lag_ms": lag_ms,
        "snapshots": {
            "count": m.snapshots.len(),
            "stored_bytes": snap_bytes,
            "kept": m.snapshots.iter().filter(|s| s.keep).count(),
            "newest": newest_snap.map(|s| json!({
                "id": s.id,
                "max_committed_epoch": s.max_committed_epoch,
                "max_committed_epoch_ts": epoch::format(s.max_committed_epoch),
                "age_ms": age(s.max_committed_epoch),
            })),
        },
        "wal": { "segments": wal_segments, "stored_bytes": wal_bytes },
        "pin_sets": { "count": m.pins.len(), "pinned_objects": pinned, "stored_bytes": pin_bytes },
        "retention": {
            "window_ms": (m.retention_window_ms != 0).then_some(m.retention_window_ms),
            "keep_last": (m.retention_keep_last != 0).then_some(m.retention_keep_last),
        },
        "last_verify": verify,
    });
    if json {
        return out(info.to_string());
    }
    let ago = |ms: u64| human_duration(std::time::Duration::from_millis(ms));
    let mut t = format!(
        "repo {} (manifest version {}, written {} ago), newest timeline {newest}\n",
        repo.url(),
        m.version,
        ago(now.saturating_sub(m.updated_at_ms))
    );
    t.push_str(&format!(
        "restorable: {}\n",
        restore::format_ranges(&window)
    ));
    if let Some(l) = lag_ms {
        t.push_str(&format!("archive: newest epoch archived {} ago\n", ago(l)));
    }
    t.push_str(&format!(
        "wal: {wal_segments} segments ({})\n",
        human_bytes(wal_bytes)
    ));
    t.push_str(&format!(
        "snapshots: {} ({}){}\n",
        m.snapshots.len(),
        human_bytes(snap_bytes),
        newest_snap
            .map(|s| format!(
                ", newest {} at epoch {} ({}), {} old",
                s.id,
                s.max_committed_epoch,
                epoch::format(s.max_committed_epoch),
                ago(age(s.max_committed_epoch))
            ))
            .unwrap_or_default()
    ));
    t.push_str(&format!(
        "pin sets: {} ({pinned} objects pinned, {})\n",
        m.pins.len(),
        human_bytes(pin_bytes)
    ));
    let policy = crate::retention::Policy::last_applied(&m);
    if !policy.is_empty() {
        t.push_str(&format!("retention: {}\n", policy.describe()));
    }
    t.push_str(&match &verify {
        serde_json::Value::Null => "last verify: never (run `metapitr verify`)\n".to_string(),
        v if v.get("error").is_some() => format!("last verify: unreadable state: {}\n", v["error"]),
        v => format!(
            "last verify: {} ago, manifest version {}, problems: {}{}\n",
            ago(v["age_ms"].as_u64().unwrap_or(0)),
            v["manifest_version"],
            v["problems"],
            if v["full"].as_bool() == Some(true) {
                " (full)"
            } else {
                ""
            }
        ),
    });
    t.push_str("timelines:\n");
    for tl in &tree {
        let depth = {
            let mut d = 0;
            let mut p = tl.parent;
            while p != 0 && d < 64 {
                d += 1;
                p = m.timeline(p).map_or(0, |x| x.parent);
            }
            d
        };
        let fork = if tl.parent == 0 {
            String::new()
        } else {
            format!(
                " forked from {} at epoch {} ({})",
                tl.parent,
                tl.fork_epoch,
                epoch::format(tl.fork_epoch)
            )
        };
        let ranges = restore::format_ranges(&restore::restorable_ranges(&m, tl.id));
        t.push_str(&format!(
            "{}{}{fork}: {} segments ({}), writer epoch {}; restorable {ranges}\n",
            "  ".repeat(depth + 1),
            tl.id,
            tl.segment_count(),
            human_bytes(tl.archived_bytes()),
            tl.writer_epoch
        ));
    }
    out(t.trim_end())
}
