//! Settings, from four layers. For each setting the first of these that gives it wins:
//!
//! 1. a command-line flag;
//! 2. a `METAPITR_*` environment variable;
//! 3. the settings file: `--config FILE` (or `METAPITR_CONFIG`), else `./metapitr.toml`
//!    when it exists;
//! 4. a standard environment variable another tool also reads (`AWS_*` for S3), then the
//!    default.
//!
//! [`SETTINGS`] is the one place every setting, its variables and its default are stated;
//! `metapitr config show` prints the effective value of each and where it came from, with
//! secrets masked. An example file:
//!
//! ```toml
//! [backup]
//! storage_url = "s3://backup-bucket"
//! storage_directory = "backup"
//! encryption_key_file = "/etc/metapitr/key"
//!
//! [backup.s3]
//! endpoint = "http://127.0.0.1:9000"
//! region = "us-east-1"
//! access_key_id = "..."
//! secret_access_key = "..."
//! allow_http = true
//!
//! [archive]
//! poll_ms = 500
//! metrics_addr = "127.0.0.1:9187"
//! health_max_lag = "10m"
//!
//! [network]
//! connect_timeout = "10s"
//! request_timeout = "30s"
//!
//! [retention]
//! window = "7d"
//! keep_last = 4
//!
//! [etcd]
//! username = "root"
//! password = "..."
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repo::{RepoLocation, S3Options};
use crate::retention::Policy;
use crate::store::EtcdCredentials;

pub const DEFAULT_FILE: &str = "metapitr.toml";

/// One setting: its key in the file (`section.name`), its flag, environment variables,
/// default, and whether its value is a secret.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    /// The flag that sets it, if any.
    pub flag: Option<&'static str>,
    /// `METAPITR_*` variables, above the file.
    pub env: &'static [&'static str],
    /// Other tools' variables, below the file.
    pub fallback_env: &'static [&'static str],
    /// The default, as text (None: unset).
    pub default: Option<&'static str>,
    pub secret: bool,
    pub help: &'static str,
}

const fn setting(key: &'static str, help: &'static str) -> Setting {
    Setting {
        key,
        flag: None,
        env: &[],
        fallback_env: &[],
        default: None,
        secret: false,
        help,
    }
}

/// Every setting metapitr reads, with its default.
pub const SETTINGS: &[Setting] = &[
    Setting {
        flag: Some("--repo (--backup-storage-url)"),
        env: &["METAPITR_REPO", "METAPITR_BACKUP_STORAGE_URL"],
        ..setting(
            "backup.storage_url",
            "The repo: s3://bucket[/prefix], file:///dir (or a path), memory://",
        )
    },
    Setting {
        flag: Some("--backup-storage-directory"),
        env: &["METAPITR_BACKUP_STORAGE_DIRECTORY"],
        ..setting(
            "backup.storage_directory",
            "A directory inside the storage URL",
        )
    },
    Setting {
        flag: Some("--encryption-key-file"),
        env: &["METAPITR_ENCRYPTION_KEY_FILE"],
        ..setting(
            "backup.encryption_key_file",
            "A file holding the repo's AES-256-GCM key (64 hex digits); default: no encryption",
        )
    },
    Setting {
        env: &["METAPITR_ENCRYPTION_KEY"],
        secret: true,
        ..setting(
            "backup.encryption_key",
            "The repo's AES-256-GCM key as 64 hex digits (instead of a key file)",
        )
    },
    Setting {
        env: &["METAPITR_S3_ENDPOINT"],
        fallback_env: &["AWS_ENDPOINT_URL", "AWS_ENDPOINT"],
        ..setting(
            "backup.s3.endpoint",
            "An S3-compatible endpoint, e.g. http://127.0.0.1:9000; default: AWS",
        )
    },
    Setting {
        env: &["METAPITR_S3_REGION"],
        fallback_env: &["AWS_REGION", "AWS_DEFAULT_REGION"],
        default: Some("us-east-1"),
        ..setting("backup.s3.region", "The S3 region")
    },
    Setting {
        env: &["METAPITR_S3_ACCESS_KEY_ID"],
        fallback_env: &["AWS_ACCESS_KEY_ID"],
        ..setting(
            "backup.s3.access_key_id",
            "S3 access key id; default: the AWS credential chain",
        )
    },
    Setting {
        env: &["METAPITR_S3_SECRET_ACCESS_KEY"],
        fallback_env: &["AWS_SECRET_ACCESS_KEY"],
        secret: true,
        ..setting("backup.s3.secret_access_key", "S3 secret access key")
    },
    Setting {
        env: &["METAPITR_S3_ALLOW_HTTP"],
        fallback_env: &["AWS_ALLOW_HTTP"],
        default: Some("false"),
        ..setting("backup.s3.allow_http", "Allow an http:// endpoint")
    },
    Setting {
        flag: Some("--poll-ms"),
        env: &["METAPITR_ARCHIVE_POLL_MS"],
        default: Some("500"),
        ..setting(
            "archive.poll_ms",
            "How often `archive` looks for sealed segments, in milliseconds",
        )
    },
    Setting {
        flag: Some("--metrics-addr"),
        env: &["METAPITR_METRICS_ADDR"],
        ..setting(
            "archive.metrics_addr",
            "HOST:PORT for `archive` to serve /metrics and /health on; default: off",
        )
    },
    Setting {
        env: &["METAPITR_ARCHIVE_HEALTH_MAX_LAG"],
        default: Some("10m"),
        ..setting(
            "archive.health_max_lag",
            "`archive`'s /health answers 503 once the newest archived epoch is older than this; 0 turns the check off",
        )
    },
    Setting {
        env: &["METAPITR_CONNECT_TIMEOUT"],
        default: Some("10s"),
        ..setting(
            "network.connect_timeout",
            "How long connecting to S3, PostgreSQL or etcd may take (for PostgreSQL with its startup and login)",
        )
    },
    Setting {
        env: &["METAPITR_REQUEST_TIMEOUT"],
        default: Some("30s"),
        ..setting(
            "network.request_timeout",
            "How long one request to S3, PostgreSQL or etcd may wait for its whole answer",
        )
    },
    Setting {
        flag: Some("--window"),
        env: &["METAPITR_RETENTION_WINDOW"],
        ..setting(
            "retention.window",
            "How far back every epoch stays restorable, e.g. 7d; default: no window",
        )
    },
    Setting {
        flag: Some("--keep-last"),
        env: &["METAPITR_RETENTION_KEEP_LAST"],
        ..setting(
            "retention.keep_last",
            "Keep every epoch from the newest N snapshots on; default: none",
        )
    },
    Setting {
        flag: Some("--etcd-username"),
        env: &["METAPITR_ETCD_USERNAME"],
        ..setting(
            "etcd.username",
            "User for an etcd target with authentication",
        )
    },
    Setting {
        flag: Some("--etcd-password"),
        env: &["METAPITR_ETCD_PASSWORD"],
        secret: true,
        ..setting(
            "etcd.password",
            "Password for an etcd target with authentication",
        )
    },
];

fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    FallbackEnv(&'static str),
    Default,
}

impl Source {
    /// The layer: 0 (flag) wins over 1 (METAPITR_* environment), 2 (file), 3 (other
    /// tools' environment) and 4 (default).
    pub fn rank(&self) -> u8 {
        match self {
            Source::Flag(_) => 0,
            Source::Env(_) => 1,
            Source::File(_) => 2,
            Source::FallbackEnv(_) => 3,
            Source::Default => 4,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(v) | Source::FallbackEnv(v) => write!(f, "environment {v}"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Default => write!(f, "default"),
        }
    }
}

/// The effective settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<&'static str, (String, Source)>,
    file: Option<PathBuf>,
}

/// Values given as flags, by setting key.
pub type Flags<'a> = &'a [(&'static str, Option<String>)];

/// Reads an environment variable: the process's, or a test's.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment (empty values count as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Resolves every setting from the process environment.
    pub fn load(config: Option<&Path>, flags: Flags) -> Result<Settings> {
        Self::resolve(config, flags, &process_env)
    }

    /// Resolves every setting: flags, then `env`'s METAPITR_* variables, then the file,
    /// then fallback variables and defaults.
    pub fn resolve(config: Option<&Path>, flags: Flags, env: Env) -> Result<Settings> {
        let config = config
            .map(Path::to_path_buf)
            .or_else(|| env("METAPITR_CONFIG").map(PathBuf::from));
        let (file, from_file) = read_file(config.as_deref())?;
        let mut values = BTreeMap::new();
        for s in SETTINGS {
            let flag = flags
                .iter()
                .find(|(k, _)| *k == s.key)
                .and_then(|(_, v)| v.clone())
                .map(|v| (v, Source::Flag(s.flag.unwrap_or("(flag)"))));
            let found = flag
                .or_else(|| first_env(s.env, env).map(|(n, v)| (v, Source::Env(n))))
                .or_else(|| {
                    let p = file.clone().unwrap_or_default();
                    from_file.get(s.key).map(|v| (v.clone(), Source::File(p)))
                })
                .or_else(|| {
                    first_env(s.fallback_env, env).map(|(n, v)| (v, Source::FallbackEnv(n)))
                })
                .or_else(|| s.default.map(|d| (d.to_string(), Source::Default)));
            if let Some(v) = found {
                values.insert(s.key, v);
            }
        }
        Ok(Settings { values, file })
    }

    /// The file read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    pub fn source(&self, key: &str) -> Option<&Source> {
        self.values.get(key).map(|(_, s)| s)
    }

    /// A setting parsed; a bad value names the setting and where it came from.
    pub fn parsed<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        let Some((v, src)) = self.values.get(key) else {
            return Ok(None);
        };
        v.trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| Error::InvalidInput(format!("setting {key} = '{v}' (from {src}): {e}")))
    }

    /// Every setting with its effective value (secrets masked) and source, for
    /// `metapitr config show`.
    pub fn show(&self) -> Vec<(&'static Setting, Option<String>, Option<&Source>)> {
        SETTINGS
            .iter()
            .map(|s| {
                let v = self.values.get(s.key).map(|(v, _)| {
                    if s.secret {
                        "********".to_string()
                    } else {
                        v.clone()
                    }
                });
                (s, v, self.source(s.key))
            })
            .collect()
    }

    /// A duration setting (humantime: `10s`, `1m 30s`, `500ms`); `None` when unset.
    pub fn duration(&self, key: &str) -> Result<Option<std::time::Duration>> {
        Ok(self.parsed::<humantime::Duration>(key)?.map(Into::into))
    }

    /// The connect and request timeouts of network calls. Zero is refused: it would fail
    /// every call.
    pub fn network(&self) -> Result<crate::net::Timeouts> {
        let mut t = crate::net::Timeouts::default();
        for (key, slot) in [
            ("network.connect_timeout", &mut t.connect),
            ("network.request_timeout", &mut t.request),
        ] {
            if let Some(d) = self.duration(key)? {
                if d.is_zero() {
                    let src = self
                        .source(key)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    return Err(Error::InvalidInput(format!(
                        "setting {key} = 0 (from {src}) would fail every call; give a duration such as 10s"
                    )));
                }
                *slot = d;
            }
        }
        Ok(t)
    }

    /// Where the repo is, with the S3 settings and the encryption key.
    pub fn repo_location(&self) -> Result<RepoLocation> {
        let url = self.get("backup.storage_url").ok_or_else(|| {
            Error::InvalidInput(
                "no repo given: pass --repo URL (or --backup-storage-url), set METAPITR_REPO, \
                 or set [backup] storage_url in metapitr.toml"
                    .into(),
            )
        })?;
        let file = self.values.get("backup.encryption_key_file");
        let hex = self.values.get("backup.encryption_key");
        // Both set: the one from the higher layer wins; from the same layer, neither.
        let use_file = match (file, hex) {
            (Some((f, fs)), Some((_, ks))) if fs.rank() == ks.rank() => {
                return Err(Error::InvalidInput(format!(
                    "both an encryption key file ({f}, from {fs}) and a key (from {ks}) are set; give one"
                )))
            }
            (Some((_, fs)), Some((_, ks))) => fs.rank() < ks.rank(),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let key = if use_file {
            file.map(|(f, _)| crate::crypt::Key::from_file(Path::new(f)))
                .transpose()?
        } else {
            hex.map(|(h, src)| crate::crypt::Key::from_hex(h, &src.to_string()))
                .transpose()?
        };
        // S3 settings that came from AWS_* variables or defaults are left to the S3
        // client, which reads the same variables (and the rest of the AWS chain) itself.
        let explicit = |k: &str| {
            matches!(
                self.source(k),
                Some(Source::Flag(_) | Source::Env(_) | Source::File(_))
            )
            .then(|| self.get(k).map(str::to_string))
            .flatten()
        };
        let allow_http = match explicit("backup.s3.allow_http") {
            Some(_) => self.parsed::<bool>("backup.s3.allow_http")?,
            None => None,
        };
        Ok(RepoLocation {
            url: url.to_string(),
            directory: self.get("backup.storage_directory").map(str::to_string),
            s3: S3Options {
                endpoint: explicit("backup.s3.endpoint"),
                region: explicit("backup.s3.region"),
                access_key_id: explicit("backup.s3.access_key_id"),
                secret_access_key: explicit("backup.s3.secret_access_key"),
                allow_http,
            },
            encryption_key: key,
            network: self.network()?,
        })
    }

    /// The retention policy.
    pub fn retention_policy(&self) -> Result<Policy> {
        Ok(Policy {
            window_ms: self
                .get("retention.window")
                .map(Policy::parse_window)
                .transpose()?,
            keep_last: self.parsed("retention.keep_last")?,
        })
    }

    /// Credentials for an etcd target: required when `required` (`--etcd-auth`), used
    /// whenever both are set.
    pub fn etcd_credentials(&self, required: bool) -> Result<Option<EtcdCredentials>> {
        match (self.get("etcd.username"), self.get("etcd.password")) {
            (Some(u), Some(p)) => Ok(Some(EtcdCredentials {
                username: u.to_string(),
                password: p.to_string(),
            })),
            (u, _) if required || u.is_some() => Err(Error::InvalidInput(
                "etcd authentication needs a username and a password: --etcd-username and \
                 --etcd-password, METAPITR_ETCD_USERNAME and METAPITR_ETCD_PASSWORD, or \
                 [etcd] username and password in metapitr.toml"
                    .into(),
            )),
            _ => Ok(None),
        }
    }
}

fn first_env(names: &[&'static str], env: Env) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| env(n).map(|v| (*n, v)))
}

/// Reads the settings file into `section.name` → value. Unknown keys are refused, so a
/// misspelt setting is never silently ignored.
fn read_file(path: Option<&Path>) -> Result<(Option<PathBuf>, BTreeMap<String, String>)> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_FILE).exists() => DEFAULT_FILE.into(),
        None => return Ok((None, BTreeMap::new())),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::InvalidInput(format!(
            "settings file {}: {e}; check --config or METAPITR_CONFIG",
            path.display()
        ))
    })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| Error::InvalidInput(format!("settings file {}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    flatten("", &table, &path, &mut out)?;
    Ok((Some(path), out))
}

fn flatten(
    prefix: &str,
    t: &toml::Table,
    path: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<()> {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let text = match v {
            toml::Value::Table(inner) => {
                flatten(&key, inner, path, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(Error::InvalidInput(format!(
                    "settings file {}: {key} = {other} is not a string, number or boolean",
                    path.display()
                )))
            }
        };
        if find(&key).is_none() {
            return Err(Error::InvalidInput(format!(
                "settings file {}: unknown setting {key}; `metapitr config show` lists every setting",
                path.display()
            )));
        }
        out.insert(key, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metapitr.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn flags_beat_environment_beats_file_beats_fallback_and_default() {
        let (_d, p) = file(
            "[backup]\nstorage_url = \"file:///from-file\"\nstorage_directory = \"d\"\n\
             [backup.s3]\nregion = \"eu-west-1\"\n[retention]\nkeep_last = 3\n",
        );
        let env = env_of(&[
            ("METAPITR_REPO", "file:///from-env"),
            ("AWS_REGION", "ap-south-1"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
        ]);
        let flags = [("backup.storage_url", Some("file:///from-flag".to_string()))];
        let s = Settings::resolve(Some(&p), &flags, &env).unwrap();
        assert_eq!(s.get("backup.storage_url"), Some("file:///from-flag"));
        assert!(matches!(
            s.source("backup.storage_url"),
            Some(Source::Flag(_))
        ));
        let s = Settings::resolve(Some(&p), &[], &env).unwrap();
        assert_eq!(s.get("backup.storage_url"), Some("file:///from-env"));
        assert_eq!(
            s.source("backup.storage_url"),
            Some(&Source::Env("METAPITR_REPO"))
        );
        // The file beats AWS_REGION; AWS_ACCESS_KEY_ID fills what nothing above sets.
        assert_eq!(s.get("backup.s3.region"), Some("eu-west-1"));
        assert_eq!(s.get("backup.s3.access_key_id"), Some("AKIA"));
        assert_eq!(
            s.source("backup.s3.access_key_id"),
            Some(&Source::FallbackEnv("AWS_ACCESS_KEY_ID"))
        );
        assert_eq!(s.get("archive.poll_ms"), Some("500"));
        assert_eq!(s.source("archive.poll_ms"), Some(&Source::Default));
        assert_eq!(s.retention_policy().unwrap().keep_last, Some(3));
        // Only explicit S3 settings reach the location; the client reads AWS_* itself.
        let loc = s.repo_location().unwrap();
        assert_eq!(loc.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(loc.s3.access_key_id, None);
        assert_eq!(loc.directory.as_deref(), Some("d"));
    }

    #[test]
    fn unknown_keys_bad_values_and_missing_files_are_named() {
        let (_d, p) = file("[backup]\nstorage_ur = \"x\"\n");
        let e = Settings::resolve(Some(&p), &[], &env_of(&[])).unwrap_err();
        assert!(
            e.to_string().contains("unknown setting backup.storage_ur"),
            "{e}"
        );
        let (_d, p) = file("[retention]\nkeep_last = \"many\"\n");
        let s = Settings::resolve(Some(&p), &[], &env_of(&[])).unwrap();
        let e = s.retention_policy().unwrap_err().to_string();
        assert!(
            e.contains("retention.keep_last") && e.contains("file"),
            "{e}"
        );
        let e = Settings::resolve(Some(Path::new("/nonexistent/m.toml")), &[], &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/m.toml"), "{e}");
        let e = Settings::resolve(None, &[], &env_of(&[("METAPITR_CONFIG", "/nope.toml")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nope.toml"), "{e}");
    }

    #[test]
    fn secrets_are_masked_and_every_setting_is_listed_once() {
        let env = env_of(&[
            ("METAPITR_ETCD_PASSWORD", "hunter2"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ]);
        let s = Settings::resolve(None, &[], &env).unwrap();
        let shown = s.show();
        assert_eq!(shown.len(), SETTINGS.len());
        let text = format!("{shown:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("s3cr3t"),
            "{text}"
        );
        let keys: std::collections::BTreeSet<&str> = SETTINGS.iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), SETTINGS.len());
        // A username without a password is an error, not a silent anonymous connection.
        let s = Settings::resolve(None, &[], &env_of(&[("METAPITR_ETCD_USERNAME", "u")])).unwrap();
        assert!(s.etcd_credentials(false).is_err());
        let s = Settings::resolve(None, &[], &env_of(&[])).unwrap();
        assert!(s.etcd_credentials(true).is_err());
        assert_eq!(s.etcd_credentials(false).unwrap(), None);
    }

    #[test]
    fn network_timeouts_default_as_stated_and_refuse_zero() {
        let s = Settings::resolve(None, &[], &env_of(&[])).unwrap();
        assert_eq!(s.network().unwrap(), crate::net::Timeouts::default());
        let env = env_of(&[("METAPITR_REQUEST_TIMEOUT", "1m 30s")]);
        let s = Settings::resolve(None, &[], &env).unwrap();
        let t = s.network().unwrap();
        assert_eq!(t.request, std::time::Duration::from_secs(90));
        assert_eq!(t.connect, crate::net::CONNECT_TIMEOUT);
        let (_d, p) = file("[network]\nconnect_timeout = \"0s\"\n");
        let e = Settings::resolve(Some(&p), &[], &env_of(&[]))
            .unwrap()
            .network()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("network.connect_timeout") && e.contains("file"),
            "{e}"
        );
    }

    #[test]
    fn a_key_and_a_key_file_from_one_layer_are_refused_else_the_higher_wins() {
        let env = env_of(&[
            ("METAPITR_REPO", "memory://"),
            ("METAPITR_ENCRYPTION_KEY", &"ab".repeat(32)),
            ("METAPITR_ENCRYPTION_KEY_FILE", "/k"),
        ]);
        let e = Settings::resolve(None, &[], &env)
            .unwrap()
            .repo_location()
            .unwrap_err()
            .to_string();
        assert!(e.contains("give one"), "{e}");
        // The flag's key file wins over the environment's key (and is read: it is missing).
        let flags = [(
            "backup.encryption_key_file",
            Some("/missing-key".to_string()),
        )];
        let env = env_of(&[
            ("METAPITR_REPO", "memory://"),
            ("METAPITR_ENCRYPTION_KEY", &"ab".repeat(32)),
        ]);
        let e = Settings::resolve(None, &flags, &env)
            .unwrap()
            .repo_location()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/missing-key"), "{e}");
        let loc = Settings::resolve(None, &[], &env)
            .unwrap()
            .repo_location()
            .unwrap();
        assert!(loc.encryption_key.is_some());
    }
}
