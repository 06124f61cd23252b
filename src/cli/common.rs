//! What the commands share: the global flags ([`Ctx`]), the flags every repo or store
//! command takes turned into settings, opening the repo, and printing.

use std::io::Write;
use std::path::PathBuf;

use crate::cli::args::{AtArg, EtcdAuthArg, RepoArg};
use crate::clock;
use crate::config::{Flags, Settings};
use crate::epoch;
use crate::error::{Error, Result};
use crate::repo::{Repo, RepoLocation};
use crate::restore::Target;
use crate::store::TargetStore;

pub use crate::progress::{human_bytes, human_duration};

/// What every command shares: the global flags.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub quiet: bool,
    pub config: Option<PathBuf>,
}

impl Ctx {
    /// The effective settings with these flags on top.
    pub fn settings(&self, flags: Flags) -> Result<Settings> {
        Settings::load(self.config.as_deref(), flags)
    }
}

impl RepoArg {
    /// These flags as settings.
    pub(crate) fn flags(&self) -> Vec<(&'static str, Option<String>)> {
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

impl AtArg {
    /// The moment the flags name (the newest when neither is given).
    pub fn target(&self) -> Result<Target> {
        Ok(match (&self.at_epoch, &self.at_time) {
            (Some(e), _) => Target::Epoch(epoch::parse_as_of(e)?),
            (None, Some(t)) => Target::Time(epoch::parse_time_ms(t)?),
            (None, None) => Target::Latest,
        })
    }
}

impl EtcdAuthArg {
    /// These flags as settings.
    pub(crate) fn flags(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("etcd.username", self.etcd_username.clone()),
            ("etcd.password", self.etcd_password.clone()),
        ]
    }

    /// Parses a store argument and attaches the network timeouts (for a PostgreSQL or
    /// etcd store) and the credentials (for an etcd store).
    pub(crate) fn store(&self, s: &str, ctx: &Ctx) -> Result<TargetStore> {
        let store = s.parse::<TargetStore>()?;
        if !store.is_remote() {
            return Ok(store);
        }
        let settings = ctx.settings(&self.flags())?;
        let store = store.with_network(settings.network.timeouts());
        if !store.is_etcd() {
            return Ok(store);
        }
        Ok(store.with_etcd_auth(settings.etcd.credentials(self.etcd_auth)?))
    }
}

/// Opens the repo the flags and settings name, which must exist.
pub(crate) fn open_repo(r: &RepoArg, ctx: &Ctx) -> Result<Repo> {
    open_settings_repo(&ctx.settings(&r.flags())?, false)
}

/// Opens the repo the settings name; a `file://` repo is created only when `create`
/// (archiving into a new repo), never by a command that reads.
pub(crate) fn open_settings_repo(settings: &Settings, create: bool) -> Result<Repo> {
    let loc = settings.repo_location()?;
    if create {
        Repo::open_location(&loc, clock::system())
    } else {
        Repo::open_existing(&loc, clock::system())
    }
}

/// Prints a line on stdout. A reader that went away (`| head`, `| grep -q`) gives a
/// `BrokenPipe` error, on which `main` ends the command quietly.
pub(crate) fn out(s: impl AsRef<str>) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{}", s.as_ref()).map_err(|e| Error::io("<stdout>", e))
}

/// A value as JSON text (for `--json` output of a serializable report).
pub(crate) fn to_json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(e.to_string()))
}
