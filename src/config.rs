//! `metapitr.toml`: settings read from a file. Flags override it.
//!
//! ```toml
//! [backup]
//! storage_url = "s3://backup-bucket"   # the repo (default: none; --repo overrides)
//! storage_directory = "backup"         # a directory inside it (default: none)
//! encryption_key_file = "/etc/metapitr/key"  # AES-256-GCM key, 64 hex (default: none)
//!
//! [backup.s3]                          # every key optional; unset ones come from AWS_*
//! endpoint = "http://127.0.0.1:9000"
//! region = "us-east-1"
//! access_key_id = "..."
//! secret_access_key = "..."
//! allow_http = true
//!
//! [retention]
//! window = "7d"      # every epoch this far back stays restorable (default: none)
//! keep_last = 4      # ... and every epoch from the newest 4 snapshots on (default: none)
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::repo::S3Options;
use crate::retention::Policy;

pub const DEFAULT_FILE: &str = "metapitr.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub backup: BackupConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub storage_url: Option<String>,
    pub storage_directory: Option<String>,
    /// A file holding the repo's encryption key (64 hex digits). Default: none.
    pub encryption_key_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub s3: S3Options,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub window: Option<String>,
    pub keep_last: Option<u32>,
}

impl Config {
    pub fn retention_policy(&self) -> Result<Policy> {
        Ok(Policy {
            window_ms: self
                .retention
                .window
                .as_deref()
                .map(Policy::parse_window)
                .transpose()?,
            keep_last: self.retention.keep_last,
        })
    }
}

/// Reads `path`, or `./metapitr.toml` if that exists, or nothing.
pub fn load(path: Option<&Path>) -> Result<Config> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_FILE).exists() => DEFAULT_FILE.into(),
        None => return Ok(Config::default()),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::InvalidInput(format!("config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))
}
