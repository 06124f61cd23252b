//! Settings, from four layers. For each setting the first of these that gives it wins:
//!
//! 1. a command-line flag;
//! 2. a `METAPITR_*` environment variable;
//! 3. the settings file: `--config FILE` (or `METAPITR_CONFIG`), else `./metapitr.toml`
//!    when it exists;
//! 4. a standard environment variable another tool also reads (`AWS_*` for S3), then the
//!    default.
//!
//! The layers are merged into one TOML table and deserialized with serde into [`Settings`],
//! a tree of typed values (durations, integers, booleans, addresses, paths) whose
//! `Default` impls state each default once. [`SETTINGS`] names each setting's flag and
//! variables; `metapitr config show` prints the effective value of each and where it came
//! from, with secrets masked. An example file:
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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::{RepoLocation, S3Options};
use crate::retention::Policy;
use crate::store::EtcdCredentials;

pub const DEFAULT_FILE: &str = "metapitr.toml";

/// Every setting metapitr reads, typed. A setting no layer gives takes the value of
/// `Settings::default()`: the `Default` impls below are the one place defaults are stated
/// (`config show` prints them from there).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub backup: Backup,
    pub archive: Archive,
    pub network: Network,
    pub retention: Retention,
    pub etcd: Etcd,
    /// Where each value some layer gave came from, by key.
    #[serde(skip)]
    sources: BTreeMap<&'static str, Source>,
    /// The settings file read, if any.
    #[serde(skip)]
    file: Option<PathBuf>,
}

/// `[backup]`: where the repo is and how it is encrypted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backup {
    pub storage_url: Option<String>,
    pub storage_directory: Option<String>,
    pub encryption_key_file: Option<PathBuf>,
    /// 64 hex digits.
    pub encryption_key: Option<Secret>,
    pub s3: S3,
}

/// `[backup.s3]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3 {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    #[serde(with = "text")]
    pub allow_http: bool,
}

impl Default for S3 {
    fn default() -> Self {
        S3 {
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
        }
    }
}

/// `[archive]`: the continuous archiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Archive {
    #[serde(with = "text")]
    pub poll_ms: u64,
    #[serde(with = "text")]
    pub metrics_addr: Option<SocketAddr>,
    /// Zero: no limit.
    #[serde(with = "text")]
    pub health_max_lag: Duration,
}

impl Default for Archive {
    fn default() -> Self {
        Archive {
            poll_ms: 500,
            metrics_addr: None,
            health_max_lag: Duration::from_secs(10 * 60),
        }
    }
}

/// `[network]`: bounds of every network call (never zero).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    #[serde(serialize_with = "text::serialize", deserialize_with = "text::nonzero")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "text::serialize", deserialize_with = "text::nonzero")]
    pub request_timeout: Duration,
}

impl Default for Network {
    fn default() -> Self {
        let t = crate::net::Timeouts::default();
        Network {
            connect_timeout: t.connect,
            request_timeout: t.request,
        }
    }
}

impl Network {
    pub fn timeouts(&self) -> crate::net::Timeouts {
        crate::net::Timeouts {
            connect: self.connect_timeout,
            request: self.request_timeout,
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    #[serde(with = "text")]
    pub window: Option<Duration>,
    #[serde(with = "text")]
    pub keep_last: Option<u32>,
}

impl Retention {
    pub fn policy(&self) -> Policy {
        Policy {
            window_ms: self
                .window
                .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
            keep_last: self.keep_last,
        }
    }
}

/// `[etcd]`: credentials for an etcd target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Etcd {
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl Etcd {
    /// The credentials: required when `required` (`--etcd-auth`), used whenever both are
    /// set.
    pub fn credentials(&self, required: bool) -> Result<Option<EtcdCredentials>> {
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => Ok(Some(EtcdCredentials {
                username: u.clone(),
                password: p.expose().to_string(),
            })),
            (u, _) if required || u.is_some() => Err(Error::invalid_input(
                "etcd authentication needs a username and a password: --etcd-username and \
                 --etcd-password, METAPITR_ETCD_USERNAME and METAPITR_ETCD_PASSWORD, or \
                 [etcd] username and password in metapitr.toml",
            )),
            _ => Ok(None),
        }
    }
}

/// A secret setting: printed (`Debug`, `config show`) as `********`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

const MASK: &str = "********";

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

/// Values read from text, as variables and flags give them (the file may give a TOML
/// integer or boolean too), and written back as text for `config show`.
mod text {
    use std::marker::PhantomData;
    use std::net::SocketAddr;
    use std::time::Duration;

    use serde::{de, Deserializer, Serializer};

    pub trait Text: Sized {
        /// What a value must look like, for an error.
        const EXPECTED: &'static str;
        fn parse(s: &str) -> Result<Self, String>;
        /// None: unset.
        fn show(&self) -> Option<String>;
    }

    macro_rules! from_str {
        ($($t:ty => $expected:literal),*) => {$(
            impl Text for $t {
                const EXPECTED: &'static str = $expected;
                fn parse(s: &str) -> Result<Self, String> {
                    s.trim().parse().map_err(|e: <$t as std::str::FromStr>::Err| e.to_string())
                }
                fn show(&self) -> Option<String> {
                    Some(self.to_string())
                }
            }
        )*};
    }
    from_str!(
        u64 => "an integer",
        u32 => "an integer",
        SocketAddr => "an address IP:PORT such as 127.0.0.1:9187"
    );

    impl Text for bool {
        const EXPECTED: &'static str = "true or false";
        fn parse(s: &str) -> Result<Self, String> {
            // The words other tools accept in AWS_ALLOW_HTTP too.
            match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "y" | "on" => Ok(true),
                "false" | "0" | "no" | "n" | "off" => Ok(false),
                _ => Err("not a boolean".into()),
            }
        }
        fn show(&self) -> Option<String> {
            Some(self.to_string())
        }
    }

    impl Text for Duration {
        const EXPECTED: &'static str = "a duration such as 10s, 1m 30s or 7d";
        fn parse(s: &str) -> Result<Self, String> {
            humantime::parse_duration(s.trim()).map_err(|e| e.to_string())
        }
        fn show(&self) -> Option<String> {
            Some(crate::net::show(*self))
        }
    }

    impl<T: Text> Text for Option<T> {
        const EXPECTED: &'static str = T::EXPECTED;
        fn parse(s: &str) -> Result<Self, String> {
            T::parse(s).map(Some)
        }
        fn show(&self) -> Option<String> {
            self.as_ref().and_then(T::show)
        }
    }

    pub fn serialize<T: Text, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        match v.show() {
            Some(t) => s.serialize_str(&t),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Text, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: Text> V<T> {
            fn text<E: de::Error>(s: &str) -> Result<T, E> {
                T::parse(s).map_err(|e| E::custom(format!("{e}; give {}", T::EXPECTED)))
            }
        }
        impl<T: Text> de::Visitor<'_> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(T::EXPECTED)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
                Self::text(s)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
                Self::text(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
                Self::text(&v.to_string())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
                Self::text(&v.to_string())
            }
        }
        d.deserialize_any(V(PhantomData))
    }

    /// A duration that may not be zero: a zero timeout would fail every call.
    pub fn nonzero<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v: Duration = deserialize(d)?;
        if v.is_zero() {
            return Err(de::Error::custom(
                "0 would fail every call; give a duration such as 10s",
            ));
        }
        Ok(v)
    }
}

/// One setting: its key in the file (`section.name`), its flag and environment
/// variables, and whether its value is a secret. Its type and default are those of its
/// field in [`Settings`].
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    /// The flag that sets it, if any.
    pub flag: Option<&'static str>,
    /// `METAPITR_*` variables, above the file.
    pub env: &'static [&'static str],
    /// Other tools' variables, below the file.
    pub fallback_env: &'static [&'static str],
    pub secret: bool,
    pub help: &'static str,
}

const fn setting(key: &'static str, help: &'static str) -> Setting {
    Setting {
        key,
        flag: None,
        env: &[],
        fallback_env: &[],
        secret: false,
        help,
    }
}

/// Every setting metapitr reads: its key, flag and variables.
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
        ..setting("backup.s3.allow_http", "Allow an http:// endpoint")
    },
    Setting {
        flag: Some("--poll-ms"),
        env: &["METAPITR_ARCHIVE_POLL_MS"],
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
        ..setting(
            "archive.health_max_lag",
            "`archive`'s /health answers 503 once the newest archived epoch is older than this; 0 turns the check off",
        )
    },
    Setting {
        env: &["METAPITR_CONNECT_TIMEOUT"],
        ..setting(
            "network.connect_timeout",
            "How long connecting to S3, PostgreSQL or etcd may take (for PostgreSQL with its startup and login)",
        )
    },
    Setting {
        env: &["METAPITR_REQUEST_TIMEOUT"],
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

/// One setting as `config show` prints it.
#[derive(Debug, Clone)]
pub struct Shown<'a> {
    pub setting: &'static Setting,
    /// The effective value as text (a secret as `********`); None: unset.
    pub value: Option<String>,
    pub source: Option<&'a Source>,
    /// The default as text, from `Settings::default()`.
    pub default: Option<String>,
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
    /// then fallback variables, each as given; then deserializes them into their types,
    /// defaults filling the rest. A value that does not fit its type names the setting,
    /// the value and its layer.
    pub fn resolve(config: Option<&Path>, flags: Flags, env: Env) -> Result<Settings> {
        if let Some((key, _)) = flags.iter().find(|(k, _)| find(k).is_none()) {
            return Err(Error::internal(format!(
                "a flag sets unknown setting {key}"
            )));
        }
        let config = config
            .map(Path::to_path_buf)
            .or_else(|| env("METAPITR_CONFIG").map(PathBuf::from));
        let (file, mut from_file) = read_file(config.as_deref())?;
        let text = toml::Value::String;
        let mut given: BTreeMap<&'static str, (toml::Value, Source)> = BTreeMap::new();
        for s in SETTINGS {
            let flag = flags
                .iter()
                .find(|(k, _)| *k == s.key)
                .and_then(|(_, v)| v.clone())
                .map(|v| (text(v), Source::Flag(s.flag.unwrap_or("(flag)"))));
            let found = flag
                .or_else(|| first_env(s.env, env).map(|(n, v)| (text(v), Source::Env(n))))
                .or_else(|| {
                    let p = file.clone().unwrap_or_default();
                    from_file.remove(s.key).map(|v| (v, Source::File(p)))
                })
                .or_else(|| {
                    first_env(s.fallback_env, env).map(|(n, v)| (text(v), Source::FallbackEnv(n)))
                });
            if let Some(v) = found {
                given.insert(s.key, v);
            }
        }
        let mut tree = toml::Table::new();
        for (key, (v, _)) in &given {
            insert(&mut tree, key, v.clone());
        }
        let mut settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| {
                let key = e.path().to_string();
                let inner = e.inner().message();
                Error::invalid_input(match (find(&key), given.get(key.as_str())) {
                    // serde's message repeats the value: not for a secret.
                    (Some(s), Some((_, src))) if s.secret => {
                        format!("setting {key} = '{MASK}' (from {src}): give it as a string")
                    }
                    (Some(_), Some((v, src))) => {
                        let v = match v {
                            toml::Value::String(t) => t.clone(),
                            other => other.to_string(),
                        };
                        format!("setting {key} = '{v}' (from {src}): {inner}")
                    }
                    _ => format!("setting {key}: {inner}"),
                })
            })?;
        settings.sources = given.into_iter().map(|(k, (_, src))| (k, src)).collect();
        settings.file = file;
        Ok(settings)
    }

    /// The file read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Where a value some layer gave came from (None: the default, or unset).
    fn source(&self, key: &str) -> Option<&Source> {
        self.sources.get(key)
    }

    fn rank(&self, key: &str) -> u8 {
        self.source(key)
            .map_or(Source::Default.rank(), Source::rank)
    }

    /// Every setting with its effective value (secrets masked), source and default, for
    /// `metapitr config show`.
    pub fn show(&self) -> Result<Vec<Shown<'_>>> {
        let values = as_text(self)?;
        let defaults = as_text(&Settings::default())?;
        Ok(SETTINGS
            .iter()
            .map(|s| {
                let value = values.get(s.key).cloned();
                let source = match self.source(s.key) {
                    None if value.is_some() => Some(&Source::Default),
                    src => src,
                };
                Shown {
                    setting: s,
                    value,
                    source,
                    default: defaults.get(s.key).cloned(),
                }
            })
            .collect())
    }

    /// Where the repo is, with the S3 settings and the encryption key.
    pub fn repo_location(&self) -> Result<RepoLocation> {
        let b = &self.backup;
        let url = b.storage_url.clone().ok_or_else(|| {
            Error::invalid_input(
                "no repo given: pass --repo URL (or --backup-storage-url), set METAPITR_REPO, \
                 or set [backup] storage_url in metapitr.toml",
            )
        })?;
        let (file_key, hex_key) = ("backup.encryption_key_file", "backup.encryption_key");
        // Both set: the one from the higher layer wins; from the same layer, neither.
        let src = |k| self.source(k).map(ToString::to_string).unwrap_or_default();
        let use_file = match (&b.encryption_key_file, &b.encryption_key) {
            (Some(f), Some(_)) if self.rank(file_key) == self.rank(hex_key) => {
                return Err(Error::invalid_input(format!(
                    "both an encryption key file ({}, from {}) and a key (from {}) are set; give one",
                    f.display(),
                    src(file_key),
                    src(hex_key)
                )));
            }
            (Some(_), Some(_)) => self.rank(file_key) < self.rank(hex_key),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let key = if use_file {
            b.encryption_key_file
                .as_deref()
                .map(crate::crypt::Key::from_file)
                .transpose()?
        } else {
            b.encryption_key
                .as_ref()
                .map(|h| crate::crypt::Key::from_hex(h.expose(), &src(hex_key)))
                .transpose()?
        };
        // S3 settings that came from AWS_* variables or defaults are left to the S3
        // client, which reads the same variables (and the rest of the AWS chain) itself.
        let explicit = |k: &str| {
            matches!(
                self.source(k),
                Some(Source::Flag(_) | Source::Env(_) | Source::File(_))
            )
        };
        let s3 = &b.s3;
        let secret = s3
            .secret_access_key
            .as_ref()
            .map(|s| s.expose().to_string());
        Ok(RepoLocation {
            url,
            directory: b.storage_directory.clone(),
            s3: S3Options {
                endpoint: s3
                    .endpoint
                    .clone()
                    .filter(|_| explicit("backup.s3.endpoint")),
                region: Some(s3.region.clone()).filter(|_| explicit("backup.s3.region")),
                access_key_id: s3
                    .access_key_id
                    .clone()
                    .filter(|_| explicit("backup.s3.access_key_id")),
                secret_access_key: secret.filter(|_| explicit("backup.s3.secret_access_key")),
                allow_http: Some(s3.allow_http).filter(|_| explicit("backup.s3.allow_http")),
            },
            encryption_key: key,
            network: self.network.timeouts(),
        })
    }
}

/// Settings as `section.name` → text (unset ones left out).
fn as_text(s: &Settings) -> Result<BTreeMap<String, String>> {
    fn walk(prefix: &str, v: serde_json::Value, out: &mut BTreeMap<String, String>) {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(&key(&k), v, out);
                }
            }
            serde_json::Value::Null => {}
            serde_json::Value::String(t) => {
                out.insert(prefix.to_string(), t);
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let v =
        serde_json::to_value(s).map_err(|e| Error::internal(format!("settings as text: {e}")))?;
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    Ok(out)
}

fn first_env(names: &[&'static str], env: Env) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| env(n).map(|v| (*n, v)))
}

/// Puts `value` at dotted `key` (`backup.s3.region`) in `t`, making the tables on the way.
fn insert(t: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            t.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let inner = t
                .entry(head)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = inner {
                insert(inner, rest, value);
            }
        }
    }
}

/// Reads the settings file into `section.name` → value. Unknown keys are refused, so a
/// misspelt setting is never silently ignored; a value's type is checked with the rest.
fn read_file(path: Option<&Path>) -> Result<(Option<PathBuf>, BTreeMap<String, toml::Value>)> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_FILE).exists() => DEFAULT_FILE.into(),
        None => return Ok((None, BTreeMap::new())),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::invalid_input(format!(
            "settings file {}: {e}; check --config or METAPITR_CONFIG",
            path.display()
        ))
    })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| Error::invalid_input(format!("settings file {}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    flatten("", table, &path, &mut out)?;
    Ok((Some(path), out))
}

fn flatten(
    prefix: &str,
    t: toml::Table,
    path: &Path,
    out: &mut BTreeMap<String, toml::Value>,
) -> Result<()> {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        if let toml::Value::Table(inner) = v {
            flatten(&key, inner, path, out)?;
            continue;
        }
        if find(&key).is_none() {
            return Err(Error::invalid_input(format!(
                "settings file {}: unknown setting {key}; `metapitr config show` lists every setting",
                path.display()
            )));
        }
        out.insert(key, v);
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

    /// A setting's value and source as `config show` states them.
    fn shown_as(s: &Settings, key: &str) -> (Option<String>, Option<Source>) {
        let all = s.show().unwrap();
        let x = all.iter().find(|x| x.setting.key == key).unwrap();
        (x.value.clone(), x.source.cloned())
    }

    fn resolve_err(text: &str, env: &[(&str, &str)]) -> String {
        let (_d, p) = file(text);
        let e = Settings::resolve(Some(&p), &[], &env_of(env)).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput, "{e}");
        e.to_string()
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
        assert_eq!(s.backup.storage_url.as_deref(), Some("file:///from-flag"));
        assert!(matches!(
            s.source("backup.storage_url"),
            Some(Source::Flag(_))
        ));
        let s = Settings::resolve(Some(&p), &[], &env).unwrap();
        assert_eq!(s.backup.storage_url.as_deref(), Some("file:///from-env"));
        assert_eq!(
            s.source("backup.storage_url"),
            Some(&Source::Env("METAPITR_REPO"))
        );
        // The file beats AWS_REGION; AWS_ACCESS_KEY_ID fills what nothing above sets.
        assert_eq!(s.backup.s3.region, "eu-west-1");
        assert_eq!(s.backup.s3.access_key_id.as_deref(), Some("AKIA"));
        assert_eq!(
            s.source("backup.s3.access_key_id"),
            Some(&Source::FallbackEnv("AWS_ACCESS_KEY_ID"))
        );
        assert_eq!(s.archive.poll_ms, 500);
        assert_eq!(
            shown_as(&s, "archive.poll_ms"),
            (Some("500".into()), Some(Source::Default))
        );
        assert_eq!(s.retention.policy().keep_last, Some(3));
        // Only explicit S3 settings reach the location; the client reads AWS_* itself.
        let loc = s.repo_location().unwrap();
        assert_eq!(loc.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(loc.s3.access_key_id, None);
        assert_eq!(loc.directory.as_deref(), Some("d"));
    }

    #[test]
    fn unknown_keys_bad_values_and_missing_files_are_named() {
        let e = resolve_err("[backup]\nstorage_ur = \"x\"\n", &[]);
        assert!(e.contains("unknown setting backup.storage_ur"), "{e}");
        let e = resolve_err("[retention]\nkeep_last = \"many\"\n", &[]);
        assert!(
            e.contains("retention.keep_last") && e.contains("'many'") && e.contains("file"),
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

    /// Each value is read into its type: a value of another type in the file, or text
    /// that does not parse from any layer, is refused naming the setting and its layer
    /// (a secret's value is not repeated).
    #[test]
    fn values_of_the_wrong_type_are_refused_naming_the_setting_and_layer() {
        for (text, key) in [
            ("[backup]\nstorage_url = 5\n", "backup.storage_url"),
            ("[backup.s3]\nregion = true\n", "backup.s3.region"),
            (
                "[backup]\nencryption_key_file = 1\n",
                "backup.encryption_key_file",
            ),
            ("[archive]\npoll_ms = 1.5\n", "archive.poll_ms"),
            ("[archive]\npoll_ms = -1\n", "archive.poll_ms"),
            (
                "[archive]\nmetrics_addr = \"here\"\n",
                "archive.metrics_addr",
            ),
            (
                "[backup.s3]\nallow_http = \"maybe\"\n",
                "backup.s3.allow_http",
            ),
            ("[retention]\nwindow = [\"7d\"]\n", "retention.window"),
            ("[etcd]\npassword = 12345\n", "etcd.password"),
        ] {
            let e = resolve_err(text, &[]);
            assert!(
                e.contains(&format!(": setting {key} = '")) && e.contains("(from file "),
                "{text}: {e}"
            );
        }
        let e = resolve_err("[etcd]\npassword = 12345\n", &[]);
        assert!(!e.contains("12345") && e.contains("********"), "{e}");
        let e = resolve_err("", &[("METAPITR_ARCHIVE_POLL_MS", "often")]);
        assert!(
            e.contains("archive.poll_ms = 'often' (from environment METAPITR_ARCHIVE_POLL_MS)")
                && e.contains("give an integer"),
            "{e}"
        );
        let e = resolve_err("", &[("METAPITR_ARCHIVE_HEALTH_MAX_LAG", "soon")]);
        assert!(e.contains("archive.health_max_lag = 'soon'"), "{e}");
        let flags = [("retention.keep_last", Some("x".to_string()))];
        let e = Settings::resolve(None, &flags, &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("(from flag --keep-last)"), "{e}");

        // Numbers and booleans may be TOML values or text, as variables give them.
        let (_d, p) = file(
            "[archive]\npoll_ms = \"250\"\nhealth_max_lag = 0\n\
             [backup.s3]\nallow_http = true\n[retention]\nwindow = \"1h 30min\"\n",
        );
        let s = Settings::resolve(Some(&p), &[], &env_of(&[])).unwrap();
        assert_eq!(s.archive.poll_ms, 250);
        assert_eq!(s.archive.health_max_lag, Duration::ZERO);
        assert!(s.backup.s3.allow_http);
        assert_eq!(s.retention.policy().window_ms, Some(90 * 60 * 1000));
        // AWS_ALLOW_HTTP=1, as the AWS tools take it, is true (and left to the client).
        let s = Settings::resolve(None, &[], &env_of(&[("AWS_ALLOW_HTTP", "1")])).unwrap();
        assert!(s.backup.s3.allow_http);
    }

    /// A flag the CLI passes under a key no setting has is a bug, not a silent no-op.
    #[test]
    fn a_flag_for_an_unknown_setting_is_an_internal_error() {
        let flags = [("archive.poll", Some("1".to_string()))];
        let e = Settings::resolve(None, &flags, &env_of(&[])).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Internal, "{e}");
    }

    /// `SETTINGS` and the `Settings` fields name the same keys, a secret field is masked
    /// exactly where the table says so, and the defaults `config show` prints are the
    /// typed defaults, read back unchanged.
    #[test]
    fn every_field_is_a_listed_setting_and_shown_defaults_are_the_typed_ones() {
        let secret = |s: &str| Some(Secret(s.into()));
        // A struct literal: a new field fails to compile here until it is listed.
        let all = Settings {
            backup: Backup {
                storage_url: Some("memory://".into()),
                storage_directory: Some("d".into()),
                encryption_key_file: Some("/k".into()),
                encryption_key: secret("ab"),
                s3: S3 {
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    region: "r".into(),
                    access_key_id: Some("a".into()),
                    secret_access_key: secret("s"),
                    allow_http: true,
                },
            },
            archive: Archive {
                poll_ms: 1,
                metrics_addr: Some("127.0.0.1:1".parse().unwrap()),
                health_max_lag: Duration::from_secs(1),
            },
            network: Network::default(),
            retention: Retention {
                window: Some(Duration::from_secs(60)),
                keep_last: Some(2),
            },
            etcd: Etcd {
                username: Some("u".into()),
                password: secret("p"),
            },
            ..Settings::default()
        };
        let text = as_text(&all).unwrap();
        let keys: Vec<&str> = text.keys().map(String::as_str).collect();
        let mut listed: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        listed.sort();
        assert_eq!(keys, listed);
        for s in SETTINGS {
            assert_eq!(text[s.key] == MASK, s.secret, "{}", s.key);
        }
        assert!(!format!("{all:?}").contains("\"ab\""));

        let s = Settings::resolve(None, &[], &env_of(&[])).unwrap();
        let shown = s.show().unwrap();
        let defaults: Vec<(&str, Option<&str>)> = shown
            .iter()
            .map(|x| (x.setting.key, x.default.as_deref()))
            .filter(|(_, d)| d.is_some())
            .collect();
        assert_eq!(
            defaults,
            [
                ("backup.s3.region", Some("us-east-1")),
                ("backup.s3.allow_http", Some("false")),
                ("archive.poll_ms", Some("500")),
                ("archive.health_max_lag", Some("10m")),
                ("network.connect_timeout", Some("10s")),
                ("network.request_timeout", Some("30s")),
            ]
        );
        for x in &shown {
            assert_eq!(x.value, x.default, "{}", x.setting.key);
        }
        // Shown text (secrets aside) reads back as the same value.
        let mut t = toml::Table::new();
        for (k, v) in text.iter().filter(|(_, v)| *v != MASK) {
            insert(&mut t, k, toml::Value::String(v.clone()));
        }
        let (_d, p) = file(&toml::to_string(&t).unwrap());
        let back = Settings::resolve(Some(&p), &[], &env_of(&[])).unwrap();
        let back = as_text(&back).unwrap();
        for (k, v) in &back {
            assert_eq!(text.get(k), Some(v), "{k}");
        }
    }

    #[test]
    fn secrets_are_masked_and_every_setting_is_listed_once() {
        let env = env_of(&[
            ("METAPITR_ETCD_PASSWORD", "hunter2"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ]);
        let s = Settings::resolve(None, &[], &env).unwrap();
        let shown = s.show().unwrap();
        assert_eq!(shown.len(), SETTINGS.len());
        let text = format!("{shown:?} {s:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("s3cr3t"),
            "{text}"
        );
        assert_eq!(
            shown_as(&s, "etcd.password"),
            (
                Some(MASK.into()),
                Some(Source::Env("METAPITR_ETCD_PASSWORD"))
            )
        );
        let keys: std::collections::BTreeSet<&str> = SETTINGS.iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), SETTINGS.len());
        // A username without a password is an error, not a silent anonymous connection.
        let s = Settings::resolve(None, &[], &env_of(&[("METAPITR_ETCD_USERNAME", "u")])).unwrap();
        assert!(s.etcd.credentials(false).is_err());
        let s = Settings::resolve(None, &[], &env_of(&[])).unwrap();
        assert!(s.etcd.credentials(true).is_err());
        assert_eq!(s.etcd.credentials(false).unwrap(), None);
    }

    #[test]
    fn network_timeouts_default_as_stated_and_refuse_zero() {
        let s = Settings::resolve(None, &[], &env_of(&[])).unwrap();
        assert_eq!(s.network.timeouts(), crate::net::Timeouts::default());
        let env = env_of(&[("METAPITR_REQUEST_TIMEOUT", "1m 30s")]);
        let s = Settings::resolve(None, &[], &env).unwrap();
        let t = s.network.timeouts();
        assert_eq!(t.request, Duration::from_secs(90));
        assert_eq!(t.connect, crate::net::CONNECT_TIMEOUT);
        let e = resolve_err("[network]\nconnect_timeout = \"0s\"\n", &[]);
        assert!(
            e.contains("network.connect_timeout")
                && e.contains("file")
                && e.contains("would fail every call"),
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
