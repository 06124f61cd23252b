//! Restore target: an etcd cluster (3.4 or later), reached through the v3 HTTP/JSON gateway
//! etcd serves on its client port (`/v3/kv/range`, `/v3/kv/txn`, `/v3/kv/deleterange`,
//! `/v3/auth/authenticate`; keys and values base64 in the JSON bodies).
//!
//! Target URL: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`. Endpoints are tried in order; one
//! that refuses the connection, times out or answers that it is unavailable hands over to
//! the next. `PREFIX` defaults to `/metapitr/` and is normalised to start and end with `/`.
//!
//! # Key layout
//!
//! Every value is one line of the JSONL export ([`crate::jsonl`]) as compact JSON
//! (`serde_json::to_string` of the line), stored under the prefix `P` at:
//!
//! | key | value (export line) |
//! |---|---|
//! | `P` `header` | the header `{"format":"metapitr-jsonl",...}` |
//! | `P` `cluster` | kind `cluster` |
//! | `P` `system_param/{name}` | kind `system_param` |
//! | `P` `worker/{id:010}` | kind `worker` |
//! | `P` `catalog/{id:010}` | kinds `database`, `schema`, `table`, `materialized_view`, `index`, `internal_table`, `source`, `sink`, `view`, `function`, `connection`, `secret` |
//! | `P` `user/{id:010}` | kind `user` |
//! | `P` `id_generator/{name}` | kind `id_generator` |
//! | `P` `hummock/version` | kind `hummock_version` |
//! | `P` `hummock/group/{id:020}` | kind `compaction_group` |
//! | `P` `hummock/table_committed_epoch/{table_id:010}` | kind `table_committed_epoch` |
//! | `P` `hummock/sst/{group_id:020}/{sst_id:020}` | kind `sst` |
//! | `P` `restore-in-progress` | marker, present only while a restore writes |
//!
//! (`{id:010}` is the decimal id zero-padded to 10 digits, `{id:020}` to 20, so keys sort
//! by id.)
//!
//! A restore writes, in this order: the marker alone; the lines other than the header in
//! transactions of at most [`MAX_TXN_OPS`] puts (and at most [`MAX_TXN_BYTES`] of keys and
//! values); then one transaction that puts the header and deletes the marker. A prefix
//! that holds the marker, or keys but no header, is an incomplete restore: reading it
//! fails with [`ErrorKind::Corruption`], and restoring again with `--force` clears it.

use std::collections::HashSet;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::MetaStore;

use crate::error::{Error, ErrorKind, Result};
use crate::model::State;
use crate::net::Timeouts;

/// The prefix used when the target URL names none.
pub const DEFAULT_PREFIX: &str = "/metapitr/";
/// Key (below the prefix) of the export's header line.
pub const HEADER_KEY: &str = "header";
/// Key (below the prefix) present while a restore is being written.
pub const MARKER_KEY: &str = "restore-in-progress";
/// Puts per transaction: etcd's default `--max-txn-ops` is 128.
pub const MAX_TXN_OPS: usize = 128;
/// Bytes of keys and values per transaction, well below etcd's default
/// `--max-request-bytes` of 1.5 MiB. A transaction holds at least one put, whatever its size.
pub const MAX_TXN_BYTES: usize = 1 << 20;
/// Keys per page when reading a prefix back.
pub const READ_PAGE: u64 = 1000;

/// gRPC status codes etcd puts in its JSON error bodies.
mod code {
    pub const INVALID_ARGUMENT: i64 = 3;
    pub const DEADLINE_EXCEEDED: i64 = 4;
    pub const PERMISSION_DENIED: i64 = 7;
    pub const FAILED_PRECONDITION: i64 = 9;
    pub const UNAVAILABLE: i64 = 14;
    pub const UNAUTHENTICATED: i64 = 16;
}

const EXPECTED_FORM: &str = "etcd://HOST:PORT[,HOST:PORT...][/PREFIX]";

pub use super::EtcdCredentials;

/// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    pub endpoints: Vec<String>,
    /// Every key is written under this prefix (default `/metapitr/`).
    pub prefix: String,
    pub auth: Option<EtcdCredentials>,
    /// Connect and request timeouts of each HTTP call. Default: [`crate::net`]'s.
    pub timeouts: Timeouts,
}

impl EtcdTarget {
    /// Parses what follows `etcd://`: `HOST:PORT[,HOST:PORT...][/PREFIX]`. An empty or
    /// absent prefix gives [`DEFAULT_PREFIX`]; `auth` is left unset.
    pub fn parse(rest: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid_input(format!(
                "etcd target 'etcd://{rest}' is not understood ({why}); expected {EXPECTED_FORM}"
            ))
        };
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for ep in hosts.split(',') {
            let ep = ep.trim();
            if ep.is_empty() {
                continue;
            }
            if ep.chars().any(char::is_whitespace) || ep.contains('@') {
                return Err(bad(&format!("endpoint '{ep}' is not HOST:PORT")));
            }
            let (host, port) = ep
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("endpoint '{ep}' has no port")))?;
            if host.is_empty() {
                return Err(bad(&format!("endpoint '{ep}' has no host")));
            }
            if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
                return Err(bad(&format!(
                    "endpoint '{ep}': an IPv6 host goes in brackets, [ADDR]:PORT"
                )));
            }
            match port.parse::<u16>() {
                Ok(p) if p != 0 => {}
                _ => return Err(bad(&format!("endpoint '{ep}' has a bad port '{port}'"))),
            }
            endpoints.push(ep.to_string());
        }
        if endpoints.is_empty() {
            return Err(bad("no endpoint"));
        }
        let prefix = if prefix.trim_matches('/').is_empty() {
            DEFAULT_PREFIX.to_string()
        } else {
            let mut p = format!("/{prefix}");
            if !p.ends_with('/') {
                p.push('/');
            }
            p
        };
        Ok(EtcdTarget {
            endpoints,
            prefix,
            auth: None,
            timeouts: Timeouts::default(),
        })
    }

    /// Writes the export `lines` (header first, as [`crate::jsonl::lines`] gives them) under
    /// the prefix, in the order the module documentation describes.
    pub async fn write_lines(&self, lines: &[Value]) -> Result<()> {
        let (header, rest) = lines.split_first().ok_or_else(|| {
            Error::internal(format!("nothing to write into {self}: the export is empty"))
        })?;
        if line_key(header)? != HEADER_KEY {
            return Err(Error::internal(format!(
                "the first export line written into {self} is not the header: {header}"
            )));
        }
        // Every key first, so that a line without one fails before anything is written.
        let mut seen = HashSet::with_capacity(lines.len());
        seen.insert(HEADER_KEY.to_string());
        let mut puts = Vec::with_capacity(rest.len());
        for l in rest {
            let k = line_key(l)?;
            if !seen.insert(k.clone()) {
                return Err(Error::internal(format!(
                    "two export lines map to etcd key {}{k}; the second is {l}",
                    self.prefix
                )));
            }
            puts.push((format!("{}{k}", self.prefix), l.to_string()));
        }

        let mut c = Client::connect(self).await?;
        let marker = json!({"restore_in_progress": true, "lines": lines.len()}).to_string();
        c.txn(vec![put(&self.marker_key(), &marker)]).await?;
        let mut ops = Vec::with_capacity(MAX_TXN_OPS);
        let mut bytes = 0;
        for (k, v) in &puts {
            let size = k.len() + v.len();
            if !ops.is_empty() && (ops.len() == MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES) {
                c.txn(std::mem::take(&mut ops)).await?;
                bytes = 0;
            }
            ops.push(put(k, v));
            bytes += size;
        }
        if !ops.is_empty() {
            c.txn(ops).await?;
        }
        c.txn(vec![
            put(&format!("{}{HEADER_KEY}", self.prefix), &header.to_string()),
            json!({"request_delete_range": {"key": B64.encode(self.marker_key())}}),
        ])
        .await
    }

    /// Reads back what [`Self::write_lines`] wrote: the header first, then every other line (in
    /// key order). Fails with [`ErrorKind::Corruption`] when the prefix holds an incomplete
    /// restore or a value that is not an export line, and with [`ErrorKind::NotFound`] when
    /// it holds nothing.
    pub async fn read_lines(&self) -> Result<Vec<Value>> {
        let mut c = Client::connect(self).await?;
        let (mut start, end) = self.range();
        let mut revision: Option<i64> = None;
        let mut header = None;
        let mut marker = false;
        let mut keys = 0usize;
        let mut out = vec![Value::Null];
        loop {
            let mut req = json!({"key": B64.encode(&start), "range_end": B64.encode(&end),
                                 "limit": READ_PAGE});
            if let Some(r) = revision {
                // Every page from the same revision, so that the pages form one snapshot.
                req["revision"] = json!(r);
            }
            let v = c.call("/v3/kv/range", &req).await?;
            if revision.is_none() {
                revision = Some(int(&v["header"]["revision"]));
            }
            let page = kvs(&v);
            let Some(last) = page.last() else { break };
            let mut next = self.decode(last, "key")?;
            next.push(0);
            for kv in page {
                keys += 1;
                let key = self.decode(kv, "key")?;
                let key = String::from_utf8_lossy(&key).into_owned();
                let Some(rel) = key.strip_prefix(&self.prefix) else {
                    return Err(self.corrupt(format!("etcd returned key {key} outside the prefix")));
                };
                if rel == MARKER_KEY {
                    marker = true;
                    continue;
                }
                let value = self.decode(kv, "value")?;
                let line: Value = serde_json::from_slice(&value).map_err(|e| {
                    self.corrupt(format!("key {key} does not hold a JSON export line: {e}"))
                })?;
                let expected = line_key(&line).map_err(|e| {
                    self.corrupt(format!(
                        "key {key} holds a line that is not an export line ({e})"
                    ))
                })?;
                if expected != rel {
                    return Err(self.corrupt(format!(
                        "key {key} holds a line that belongs at {}{expected}",
                        self.prefix
                    )));
                }
                if rel == HEADER_KEY {
                    header = Some(line);
                } else {
                    out.push(line);
                }
            }
            if !v["more"].as_bool().unwrap_or(false) {
                break;
            }
            start = next;
        }
        if keys == 0 {
            return Err(Error::meta_store(
                self,
                ErrorKind::NotFound,
                format!(
                    "etcd prefix {} holds nothing; restore into it first",
                    self.prefix
                ),
            ));
        }
        let why = match (marker, &header) {
            (true, _) => "marker present",
            (false, None) => "no header",
            (false, Some(_)) => "",
        };
        match header {
            Some(h) if !marker => {
                out[0] = h;
                Ok(out)
            }
            _ => Err(self.corrupt(format!(
                "etcd prefix {} holds an incomplete restore ({why}); restore again with --force",
                self.prefix
            ))),
        }
    }

    /// The key range `[prefix, prefix + 1)`.
    fn range(&self) -> (Vec<u8>, Vec<u8>) {
        let start = self.prefix.as_bytes().to_vec();
        (start.clone(), range_end(&start))
    }

    fn marker_key(&self) -> String {
        format!("{}{MARKER_KEY}", self.prefix)
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::meta_store(self, ErrorKind::Corruption, reason)
    }

    fn decode(&self, kv: &Value, field: &str) -> Result<Vec<u8>> {
        // etcd leaves out empty fields: a missing value is an empty one.
        let s = kv[field].as_str().unwrap_or_default();
        B64.decode(s).map_err(|e| {
            self.corrupt(format!(
                "etcd returned a {field} that is not base64 ({e}): {kv}"
            ))
        })
    }
}

impl std::fmt::Display for EtcdTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

#[async_trait]
impl MetaStore for EtcdTarget {
    /// Whether no key at all lies under the prefix.
    async fn is_empty(&self) -> Result<bool> {
        let mut c = Client::connect(self).await?;
        let (start, end) = self.range();
        let v = c
            .call(
                "/v3/kv/range",
                &json!({"key": B64.encode(start), "range_end": B64.encode(end),
                        "limit": 1, "keys_only": true}),
            )
            .await?;
        Ok(kvs(&v).is_empty())
    }

    /// Deletes every key under the prefix.
    async fn clear(&self) -> Result<()> {
        let mut c = Client::connect(self).await?;
        let (start, end) = self.range();
        c.call(
            "/v3/kv/deleterange",
            &json!({"key": B64.encode(start), "range_end": B64.encode(end)}),
        )
        .await?;
        Ok(())
    }

    async fn write_with(&self, state: &State, force: bool, force_clear: bool) -> Result<()> {
        super::make_room(self, force, force_clear).await?;
        self.write_lines(&crate::jsonl::lines(state)).await
    }

    async fn read(&self) -> Result<State> {
        super::state_from_lines(&self.to_string(), self.read_lines().await?)
    }
}

/// The key (below the prefix) an export line is stored at; see the module documentation.
/// A line without a known `kind` (other than the header) is an internal error ([`Error::internal`]).
pub fn line_key(line: &Value) -> Result<String> {
    let bad = |why: String| Error::internal(format!("export line {line} has no etcd key: {why}"));
    let Some(kind) = line.get("kind").and_then(Value::as_str) else {
        if line.get("format").and_then(Value::as_str) == Some(crate::jsonl::FORMAT) {
            return Ok(HEADER_KEY.to_string());
        }
        return Err(bad("it has no kind and is not the header".into()));
    };
    let u = |f: &str| {
        line.get(f)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("field {f} is not an unsigned integer")))
    };
    let s = |f: &str| {
        line.get(f)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("field {f} is not a string")))
    };
    Ok(match kind {
        "cluster" => "cluster".to_string(),
        "system_param" => format!("system_param/{}", s("name")?),
        "worker" => format!("worker/{:010}", u("id")?),
        "user" => format!("user/{:010}", u("id")?),
        "id_generator" => format!("id_generator/{}", s("name")?),
        "hummock_version" => "hummock/version".to_string(),
        "compaction_group" => format!("hummock/group/{:020}", u("id")?),
        "table_committed_epoch" => {
            format!("hummock/table_committed_epoch/{:010}", u("table_id")?)
        }
        "sst" => format!("hummock/sst/{:020}/{:020}", u("group_id")?, u("sst_id")?),
        k if crate::model::catalog_kind_from_name(k).is_some() => {
            format!("catalog/{:010}", u("id")?)
        }
        k => return Err(bad(format!("kind {k} is unknown"))),
    })
}

/// The smallest key above every key that starts with `prefix` (etcd's `range_end`).
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: the range runs to the end of the keyspace.
    vec![0]
}

fn put(key: &str, value: &str) -> Value {
    json!({"request_put": {"key": B64.encode(key), "value": B64.encode(value)}})
}

/// The `kvs` of a range response (etcd leaves the field out when there are none).
fn kvs(v: &Value) -> &[Value] {
    v["kvs"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// An int64 of an etcd JSON response, which the gateway writes as a string.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        v => v.as_i64().unwrap_or(0),
    }
}

/// Why a request to the cluster failed, before it is turned into an [`Error`].
enum Failure {
    /// No endpoint answered; one reason per endpoint tried.
    Unreachable(Vec<String>),
    /// An endpoint answered with an etcd error body.
    Etcd {
        endpoint: String,
        code: i64,
        message: String,
    },
    /// An endpoint answered with something that is not etcd's JSON.
    NotEtcd {
        endpoint: String,
        path: &'static str,
        status: u16,
        body: String,
    },
}

/// One connection to the cluster: an HTTP client, the endpoint that answered last and the
/// authentication token.
struct Client<'a> {
    target: &'a EtcdTarget,
    http: reqwest::Client,
    current: usize,
    token: Option<String>,
}

impl<'a> Client<'a> {
    /// Builds the client and, when the target has credentials, authenticates.
    async fn connect(target: &'a EtcdTarget) -> Result<Client<'a>> {
        let http = reqwest::Client::builder()
            .connect_timeout(target.timeouts.connect)
            .timeout(target.timeouts.request)
            .no_proxy()
            .build()
            .map_err(|e| {
                Error::meta_store(
                    target,
                    ErrorKind::Internal,
                    format!("cannot build an HTTP client: {}", chain(&e)),
                )
            })?;
        let mut c = Client {
            target,
            http,
            current: 0,
            token: None,
        };
        c.authenticate().await?;
        Ok(c)
    }

    async fn authenticate(&mut self) -> Result<()> {
        let Some(cred) = self.target.auth.clone() else {
            return Ok(());
        };
        self.token = None;
        let body = json!({"name": cred.username, "password": cred.password});
        match self.post("/v3/auth/authenticate", &body).await {
            Ok(v) => match v["token"].as_str() {
                Some(t) if !t.is_empty() => {
                    self.token = Some(t.to_string());
                    Ok(())
                }
                _ => Err(Error::meta_store(
                    self.target,
                    ErrorKind::Unavailable,
                    format!(
                        "etcd at {} authenticated user {} but returned no token: {v}",
                        self.target.endpoints[self.current], cred.username
                    ),
                )),
            },
            // Credentials a cluster without authentication does not need.
            Err(Failure::Etcd { code, message, .. })
                if code == code::FAILED_PRECONDITION
                    && message.contains("authentication is not enabled") =>
            {
                Ok(())
            }
            Err(f) => Err(self.error("/v3/auth/authenticate", f)),
        }
    }

    /// Posts `body` to `path`, authenticating again once if the token has expired.
    async fn call(&mut self, path: &'static str, body: &Value) -> Result<Value> {
        match self.post(path, body).await {
            Ok(v) => Ok(v),
            Err(Failure::Etcd { code, .. })
                if code == code::UNAUTHENTICATED && self.target.auth.is_some() =>
            {
                self.authenticate().await?;
                self.post(path, body).await.map_err(|f| self.error(path, f))
            }
            Err(f) => Err(self.error(path, f)),
        }
    }

    /// A transaction without conditions.
    async fn txn(&mut self, ops: Vec<Value>) -> Result<()> {
        let v = self.call("/v3/kv/txn", &json!({"success": ops})).await?;
        if v["succeeded"].as_bool() == Some(true) {
            Ok(())
        } else {
            Err(Error::meta_store(
                self.target,
                ErrorKind::Internal,
                format!("etcd did not apply an unconditional transaction: {v}"),
            ))
        }
    }

    /// One request, tried on each endpoint in turn from the one that answered last, until
    /// one answers other than "unavailable".
    async fn post(&mut self, path: &'static str, body: &Value) -> Result<Value, Failure> {
        let n = self.target.endpoints.len();
        let mut reasons = Vec::new();
        for i in 0..n {
            let idx = (self.current + i) % n;
            let ep = &self.target.endpoints[idx];
            let mut req = self.http.post(format!("http://{ep}{path}")).json(body);
            if let Some(t) = &self.token {
                req = req.header(reqwest::header::AUTHORIZATION, t);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    reasons.push(self.failed(ep, &e));
                    continue;
                }
            };
            let status = resp.status();
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    reasons.push(self.failed(ep, &e));
                    continue;
                }
            };
            let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
            if status.is_success() {
                if let Some(v) = parsed.filter(Value::is_object) {
                    self.current = idx;
                    return Ok(v);
                }
            } else if let Some((code, message)) = parsed.as_ref().and_then(etcd_error) {
                if code == code::UNAVAILABLE || code == code::DEADLINE_EXCEEDED {
                    reasons.push(format!("{ep}: {message}"));
                    continue;
                }
                self.current = idx;
                return Err(Failure::Etcd {
                    endpoint: ep.clone(),
                    code,
                    message,
                });
            } else if status.is_server_error() {
                reasons.push(format!("{ep}: HTTP {status}"));
                continue;
            }
            let body = String::from_utf8_lossy(&bytes);
            return Err(Failure::NotEtcd {
                endpoint: ep.clone(),
                path,
                status: status.as_u16(),
                body: body.chars().take(200).collect(),
            });
        }
        Err(Failure::Unreachable(reasons))
    }

    /// Why a request to `ep` got no answer; a timeout names the setting that bounds it.
    fn failed(&self, ep: &str, e: &reqwest::Error) -> String {
        if !e.is_timeout() {
            return format!("{ep}: {}", chain(e));
        }
        let t = self.target.timeouts;
        let (what, after, setting) = if e.is_connect() {
            (
                "did not accept a connection",
                t.connect,
                "network.connect_timeout",
            )
        } else {
            ("did not answer", t.request, "network.request_timeout")
        };
        format!("{ep} {what} within {} ({setting})", crate::net::show(after))
    }

    fn error(&self, path: &str, f: Failure) -> Error {
        let t = self.target;
        let user = t.auth.as_ref().map(|c| c.username.as_str()).unwrap_or("");
        let (kind, reason) = match f {
            Failure::Unreachable(reasons) => (
                ErrorKind::Unavailable,
                format!(
                    "no etcd endpoint answered ({}): {}; check that etcd runs there and that \
                     the target names its client ports",
                    t.endpoints.join(", "),
                    reasons.join("; ")
                ),
            ),
            Failure::NotEtcd {
                endpoint,
                path,
                status,
                body,
            } => (
                ErrorKind::InvalidInput,
                format!(
                    "{endpoint} answered {path} with HTTP {status} and a body that is not \
                     etcd's ({body:?}); check that it is the client port of etcd 3.4 or later"
                ),
            ),
            Failure::Etcd {
                endpoint,
                code,
                message,
            } => {
                let m = message.as_str();
                if m.contains("user name is empty") {
                    (
                        ErrorKind::InvalidInput,
                        format!(
                            "etcd at {endpoint} has authentication enabled and no credentials \
                             were given: pass --etcd-auth --etcd-username --etcd-password"
                        ),
                    )
                } else if m.contains("authentication failed") {
                    (
                        ErrorKind::InvalidInput,
                        format!(
                            "etcd authentication failed for user {user} at {endpoint}: check \
                             --etcd-username/--etcd-password"
                        ),
                    )
                } else if code == code::PERMISSION_DENIED || m.contains("permission denied") {
                    (
                        ErrorKind::InvalidInput,
                        format!(
                            "etcd user {user} at {endpoint} may not read or write prefix {}: \
                             grant its role readwrite on the prefix or use another user",
                            t.prefix
                        ),
                    )
                } else if code == code::UNAUTHENTICATED {
                    (
                        ErrorKind::InvalidInput,
                        format!(
                            "etcd at {endpoint} refused the authentication token of user \
                             {user} ({m}); check --etcd-username/--etcd-password"
                        ),
                    )
                } else if m.contains("request is too large") {
                    (
                        ErrorKind::InvalidInput,
                        format!(
                            "etcd at {endpoint} refused {path}: {m}; raise the cluster's \
                             --max-request-bytes above the largest export line"
                        ),
                    )
                } else if m.contains("too many operations in txn") {
                    (
                        ErrorKind::InvalidInput,
                        format!(
                            "etcd at {endpoint} refused {path}: {m}; raise the cluster's \
                             --max-txn-ops to at least {MAX_TXN_OPS}"
                        ),
                    )
                } else if code == code::INVALID_ARGUMENT || code == code::FAILED_PRECONDITION {
                    (
                        ErrorKind::InvalidInput,
                        format!("etcd at {endpoint} refused {path}: {m} (code {code})"),
                    )
                } else {
                    (
                        ErrorKind::Unavailable,
                        format!(
                            "etcd at {endpoint} failed {path}: {m} (code {code}); retry when \
                             the cluster is healthy"
                        ),
                    )
                }
            }
        };
        Error::meta_store(t, kind, reason)
    }
}

/// The gRPC code and message of an etcd JSON error body `{"error","code","message"}`.
fn etcd_error(v: &Value) -> Option<(i64, String)> {
    let code = v.get("code")?.as_i64()?;
    let message = v
        .get("message")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

/// An error and its sources, one after the other.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let m = src.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(rest: &str) -> EtcdTarget {
        EtcdTarget::parse(rest).unwrap()
    }

    #[test]
    fn parses_endpoints_and_prefix() {
        let t = target("127.0.0.1:2379");
        assert_eq!(t.endpoints, vec!["127.0.0.1:2379"]);
        assert_eq!(t.prefix, DEFAULT_PREFIX);
        assert_eq!(t.auth, None);
        assert_eq!(t.to_string(), "etcd://127.0.0.1:2379/metapitr/");

        let t = target("a:1,b:2,[::1]:3/meta/x");
        assert_eq!(t.endpoints, vec!["a:1", "b:2", "[::1]:3"]);
        assert_eq!(t.prefix, "/meta/x/");
        assert_eq!(t.to_string(), "etcd://a:1,b:2,[::1]:3/meta/x/");

        assert_eq!(target("a:1/p/").prefix, "/p/");
        assert_eq!(target("a:1/").prefix, DEFAULT_PREFIX);
        assert_eq!(target("a:1,,b:2").endpoints, vec!["a:1", "b:2"]);
    }

    #[test]
    fn refuses_bad_targets() {
        for bad in [
            "",
            "/p",
            ",/p",
            "host",
            "host:",
            ":2379",
            "host:0",
            "host:65536",
            "host:x",
            "a:1,b/p",
            "u@h:1",
            "h :1",
            "::1:2379",
            "http://h:1",
        ] {
            let e = EtcdTarget::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
            let m = e.to_string();
            assert!(m.contains(&format!("etcd://{bad}")), "{m}");
            assert!(m.contains(EXPECTED_FORM), "{m}");
        }
    }

    #[test]
    fn maps_every_kind_to_its_key() {
        let cases = [
            (json!({"format": "metapitr-jsonl", "epoch": 1}), "header"),
            (json!({"kind": "cluster", "cluster_id": "c"}), "cluster"),
            (
                json!({"kind": "system_param", "name": "barrier_interval_ms", "value": "1"}),
                "system_param/barrier_interval_ms",
            ),
            (json!({"kind": "worker", "id": 7}), "worker/0000000007"),
            (json!({"kind": "table", "id": 42}), "catalog/0000000042"),
            (json!({"kind": "database", "id": 1}), "catalog/0000000001"),
            (
                json!({"kind": "secret", "id": 4294967295u64}),
                "catalog/4294967295",
            ),
            (json!({"kind": "user", "id": 3}), "user/0000000003"),
            (
                json!({"kind": "id_generator", "name": "sstable_object", "value": 9}),
                "id_generator/sstable_object",
            ),
            (
                json!({"kind": "hummock_version", "id": 5}),
                "hummock/version",
            ),
            (
                json!({"kind": "compaction_group", "id": 2}),
                "hummock/group/00000000000000000002",
            ),
            (
                json!({"kind": "table_committed_epoch", "table_id": 12, "epoch": 1}),
                "hummock/table_committed_epoch/0000000012",
            ),
            (
                json!({"kind": "sst", "group_id": 3, "sst_id": 77}),
                "hummock/sst/00000000000000000003/00000000000000000077",
            ),
        ];
        for (line, key) in cases {
            assert_eq!(line_key(&line).unwrap(), key, "{line}");
        }
        for bad in [
            json!({"kind": "gadget", "id": 1}),
            json!({"kind": "table"}),
            json!({"kind": "worker", "id": "7"}),
            json!({"kind": "system_param"}),
            json!({"format": "something-else"}),
            json!({}),
        ] {
            let e = line_key(&bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Internal, "{bad}");
        }
    }

    #[test]
    fn keys_of_a_simulated_state_are_unique() {
        let mut sim = metapitr_testkit::sim::Simulator::new(metapitr_testkit::sim::SimConfig {
            seed: 5,
            ddl_rate: 0.3,
            user_rate: 0.2,
            ..Default::default()
        });
        for _ in 0..150 {
            sim.next_epoch().unwrap();
        }
        let lines = crate::jsonl::lines(sim.state());
        let keys: HashSet<String> = lines.iter().map(|l| line_key(l).unwrap()).collect();
        assert_eq!(keys.len(), lines.len());
        assert_eq!(line_key(&lines[0]).unwrap(), HEADER_KEY);
        for kind in crate::model::CATALOG_KINDS {
            let name = crate::model::catalog_kind_name(kind);
            assert!(line_key(&json!({"kind": name, "id": 1}))
                .unwrap()
                .starts_with("catalog/"));
        }
    }

    #[test]
    fn range_end_is_the_next_prefix() {
        assert_eq!(range_end(b"/metapitr/"), b"/metapitr0".to_vec());
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(range_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn reads_etcd_error_bodies() {
        let v = json!({"error": "etcdserver: user name is empty",
                       "message": "etcdserver: user name is empty", "code": 3});
        assert_eq!(
            etcd_error(&v),
            Some((3, "etcdserver: user name is empty".to_string()))
        );
        assert_eq!(etcd_error(&json!({"header": {}})), None);
        assert_eq!(int(&json!("12")), 12);
        assert_eq!(int(&json!(12)), 12);
    }
}
