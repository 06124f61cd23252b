//! The command line's clap types: what each command accepts, and nothing of what it
//! does (the commands are in [`crate::cli::cmd`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert an epoch to its UTC time, or a time (RFC 3339) to its epoch.
    Epoch(EpochArgs),
    /// Read RisingWave's own Hummock metadata objects: checkpoints, versions, deltas, meta
    /// snapshots, backup manifests.
    Rw {
        #[command(subcommand)]
        cmd: RwCmd,
    },
    /// Ship sealed WAL segments of a directory to the repo.
    Archive(ArchiveArgs),
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
    BackupMeta(BackupMetaArgs),
    /// Delete snapshots (`snapshot delete`, under RisingWave's name).
    DeleteMetaSnapshots(DeleteMetaSnapshotsArgs),
    /// Write the metadata as JSONL: from the repo at an epoch (default), from a WAL
    /// directory offline (--wal-dir), or read back from any meta store (--from-store).
    Export(ExportArgs),
    /// Time travel: print the metadata as of an epoch or a time, without restoring it
    /// anywhere (password hashes redacted).
    Show(ShowArgs),
    /// The SST set a time-travel read at an epoch uses: the Hummock version as of then,
    /// by compaction group and level.
    HummockVersion(HummockVersionArgs),
    /// What changed between two epochs: catalog objects created, dropped and altered,
    /// users and grants, id generators, system parameters, SSTs added and removed.
    Diff(DiffArgs),
    /// Load a JSONL export into a meta store (as databend-metactl import).
    Import(ImportArgs),
    /// Run the meta-service simulator with continuous archiving.
    Simulate(SimulateArgs),
    /// Which of the given SST object ids the garbage collector may delete (ids one per line,
    /// decimal, from --ids or stdin; the safe ones are printed the same way).
    GcCheck(GcCheckArgs),
    /// Show the repo: the restorable window with timestamps, its timelines (parent, fork
    /// epoch, writer epoch, what is archived and restorable), snapshots (count, size,
    /// newest age), WAL, pin sets, archive lag and the last verify.
    Info(InfoArgs),
    /// Check every archived object's checksums and the WAL's continuity, remembering what
    /// passed so that the next run reads only what is new.
    Verify(VerifyArgs),
    /// Go on after the newest manifest version was lost (deleted, or unreadable): list
    /// again, in a new version numbered past it, the WAL segments and snapshots it named.
    /// `verify` reports a lost version; archiving refuses to write over one.
    Repair(RepairArgs),
    /// Settings: `config show` prints every setting's effective value and where it came
    /// from (flag, METAPITR_* environment, settings file, AWS_* environment, default),
    /// with secrets masked.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Show the pin set: pinned object count, covered epoch range, size.
    Pins(PinsArgs),
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
    Demo(DemoArgs),
}

#[derive(Subcommand, Debug)]
pub enum RwCmd {
    /// Detect and decode a checkpoint object, a HummockVersion or HummockVersionDelta blob,
    /// a meta snapshot ({id}.snapshot) or a backup manifest.json.
    Inspect(RwInspectArgs),
    /// Print the version a chain of deltas leads to from a version (or a checkpoint or a
    /// meta snapshot holding one).
    Apply(RwApplyArgs),
}

#[derive(Args, Debug)]
pub struct RwInspectArgs {
    /// The object's file.
    pub file: PathBuf,
    /// JSON: kind, version_id, max_committed_epoch, groups (levels and SSTs under
    /// RisingWave's field names), object_ids (sorted).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RwApplyArgs {
    /// The base version (a version blob, a checkpoint or a meta snapshot).
    pub version: PathBuf,
    /// The deltas, in order.
    #[arg(required = true)]
    pub deltas: Vec<PathBuf>,
    /// The resulting version as JSON (as `rw inspect --json`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EpochArgs {
    /// An epoch (e.g. 3603859827458048) or a time (2022-12-28T11:08:56.918Z, or
    /// `2022-12-28 11:08:56.918` read as UTC).
    pub value: String,
    /// Print {"epoch", "timestamp", "unix_ms"} as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ArchiveArgs {
    /// The meta store directory the recorder writes (LOCK, CHECKPOINT, *.wal); it must
    /// exist and hold metapitr's WAL.
    #[arg(long)]
    pub wal_dir: PathBuf,
    #[command(flatten)]
    pub repo: RepoArg,
    /// Recover the directory (if no writer holds it), seal its tail, archive everything
    /// and exit.
    #[arg(long)]
    pub once: bool,
    /// How often to look for sealed segments when running continuously, in ms.
    /// Default: [archive] poll_ms, else 500.
    #[arg(long)]
    pub poll_ms: Option<u64>,
    /// Serve Prometheus metrics on http://ADDR/metrics and a health check on /health
    /// while archiving, e.g. 127.0.0.1:9187 (port 0: any free port). Default:
    /// METAPITR_METRICS_ADDR, else [archive] metrics_addr, else off; not with --once.
    #[arg(long, value_name = "ADDR", conflicts_with = "once")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
pub struct BackupMetaArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The epoch to snapshot (or a time); the newest archived by default.
    #[arg(long)]
    pub at_epoch: Option<String>,
}

#[derive(Args, Debug)]
pub struct DeleteMetaSnapshotsArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The snapshot ids (`metapitr snapshot list`).
    #[arg(required = true, value_name = "SNAPSHOT_IDS")]
    pub ids: Vec<u64>,
    /// Also delete what would make some epoch unrestorable.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").args(["wal_dir", "from_store"])))]
pub struct ExportArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// An epoch or an RFC 3339 time (default: the newest; with --from-store, not used).
    #[arg(long, conflicts_with = "from_store")]
    pub at_epoch: Option<String>,
    /// The timeline to read (default: the newest; `metapitr info` lists them).
    #[arg(long, conflicts_with_all = ["wal_dir", "from_store"])]
    pub timeline: Option<u32>,
    /// Read a native meta store directory (CHECKPOINT + WAL) instead of the repo.
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// Read back a meta store: dir:PATH, jsonl:PATH, sqlite:PATH, postgres://..., etcd://...
    #[arg(long)]
    pub from_store: Option<String>,
    #[command(flatten)]
    pub etcd: EtcdAuthArg,
    /// Output file, FIFO or device such as /dev/null (written through, never replaced);
    /// - or none for stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Overwrite a non-empty output file.
    #[arg(long)]
    pub force: bool,
    /// Keep users' password hashes (redacted by default; an export without them cannot
    /// be imported).
    #[arg(long)]
    pub include_secrets: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub at: AtArg,
    /// The timeline to read (default: the newest; `metapitr info` lists them).
    #[arg(long)]
    pub timeline: Option<u32>,
    /// What to print (default: everything).
    #[arg(value_enum)]
    pub what: Option<ShowWhat>,
    /// A JSON array of objects shaped like the export's lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct HummockVersionArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub at: AtArg,
    /// The timeline to read (default: the newest; `metapitr info` lists them).
    #[arg(long)]
    pub timeline: Option<u32>,
    /// Print only the SST object ids, one per line (the objects a read would open).
    #[arg(long, conflicts_with = "json")]
    pub object_ids: bool,
    /// One JSON object: the version's epochs and its SSTs.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The earlier end: an epoch or an RFC 3339 time.
    #[arg(long)]
    pub from: String,
    /// The later end: an epoch or an RFC 3339 time.
    #[arg(long)]
    pub to: String,
    /// The timeline to read (default: the newest; `metapitr info` lists them).
    #[arg(long)]
    pub timeline: Option<u32>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The export to load; - for stdin.
    #[arg(long, default_value = "-")]
    pub from: String,
    /// dir:PATH, jsonl:PATH, sqlite:PATH, postgres://..., etcd://...
    #[arg(long)]
    pub target_store: String,
    #[command(flatten)]
    pub etcd: EtcdAuthArg,
    /// Clear a non-empty target first.
    #[arg(long)]
    pub force: bool,
    /// With --force, also empty a dir: target that holds files a meta store does not.
    #[arg(long, requires = "force")]
    pub force_clear: bool,
    /// This meta node's id in the new cluster (with --initial-cluster).
    #[arg(long, requires = "initial_cluster")]
    pub id: Option<u32>,
    /// A meta node of the new cluster, ID=HOST:PORT; repeat for each. Replaces the
    /// meta nodes the export lists.
    #[arg(long, requires = "id")]
    pub initial_cluster: Vec<String>,
    /// Read a format_version 1 export, which has no end line: nothing then tells one
    /// cut short from a whole one, so give it only an export known to be whole.
    #[arg(long)]
    pub allow_untrailed: bool,
}

#[derive(Args, Debug)]
pub struct GcCheckArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The epoch at which the caller saw the candidates leave the live version (or a
    /// time).
    #[arg(long)]
    pub current_epoch: String,
    /// A file of candidate SST object ids, one decimal id per line (default: stdin).
    #[arg(long)]
    pub ids: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Read every object again, including those an earlier run verified.
    #[arg(long)]
    pub full: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Say what would be listed again, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct PinsArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Working directory (a fresh temporary one by default, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Epochs to simulate, 5 simulated minutes apart (2880 = 10 days).
    #[arg(long, default_value_t = 2880)]
    pub epochs: u64,
    /// The simulator's random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
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

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Recovery time and archive cost on a simulated history.
    Recovery(RecoveryArgs),
    /// Render report.html and the plots again from a run's result.json.
    Report {
        /// A result.json written by `bench recovery` or crates/metapitr-bench/benches/peers.sh.
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
