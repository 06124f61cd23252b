//! etcd as a benchmark peer: a single-member server, snapshots saved with `etcdctl snapshot
//! save`, and restored with `etcdutl`/`etcdctl snapshot restore` into a fresh member that is
//! started and queried.
//!
//! Reads and writes go through etcd's JSON gRPC gateway (`POST /v3/kv/…`) on the client
//! port. The servers die with the bench process and are stopped on drop.

use metapitr_testkit::servers::proc;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use proc::Server;

/// How long a server may take to answer after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at starting a server when its free ports were taken in between.
const START_ATTEMPTS: usize = 3;

/// One restore by [`EtcdPeer::restore_snapshot`].
#[derive(Clone, Debug)]
pub struct EtcdRestore {
    /// From the start of the restore command to the count's answer.
    pub total: Duration,
    /// `snapshot restore` alone.
    pub restore_cmd: Duration,
    /// From starting the restored member to the count's answer.
    pub start_to_answer: Duration,
    /// The number of keys under the prefix.
    pub keys: u64,
}

pub struct EtcdPeer {
    dir: PathBuf,
    endpoint: String,
    server: Server,
    restores: AtomicU64,
}

impl EtcdPeer {
    /// Starts a single-member etcd on free ports on 127.0.0.1, its data in a new directory
    /// under `work`, and waits until `/health` says it is healthy.
    pub fn start(work: &Path) -> Result<EtcdPeer, String> {
        let dir = proc::unique_dir(&proc::absolute(work)?, "etcd", None)?;
        let mut last = String::new();
        for attempt in 0..START_ATTEMPTS {
            let m = Member::new("peer", &dir.join(format!("data-{attempt}")));
            let mut server = m.spawn(&dir, &dir.join("etcd.log"))?;
            let endpoint = m.endpoint();
            match server.wait_until(START_TIMEOUT, Duration::from_millis(20), || {
                proc::etcd_healthy(&endpoint)
            }) {
                Ok(()) => {
                    return Ok(EtcdPeer {
                        dir,
                        endpoint,
                        server,
                        restores: AtomicU64::new(0),
                    })
                }
                Err(e) => {
                    server.stop();
                    last = e;
                    if !proc::port_taken(&last) {
                        break;
                    }
                }
            }
        }
        Err(format!("etcd did not start in {}: {last}", dir.display()))
    }

    /// `127.0.0.1:PORT`, the client port.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The peer's directory: data, snapshots' restores, logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Puts one key.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({ "key": b64.encode(key), "value": b64.encode(value) });
        post(&self.endpoint, "/v3/kv/put", &body.to_string()).map(|_| ())
    }

    /// The number of keys under `prefix` (every key when it is empty).
    pub fn count(&self, prefix: &[u8]) -> Result<u64, String> {
        count(&self.endpoint, prefix)
    }

    /// `etcdctl snapshot save PATH`; returns the snapshot's size and the command's time.
    pub fn snapshot_save(&self, path: &Path) -> Result<(u64, Duration), String> {
        let path = &proc::absolute(path)?;
        let mut cmd = etcdctl(&self.dir);
        cmd.arg(format!("--endpoints=http://{}", self.endpoint))
            .arg("--command-timeout=600s")
            .args(["snapshot", "save"])
            .arg(path);
        let elapsed = proc::run(cmd, &self.dir.join("etcdctl.log"))?;
        let size = std::fs::metadata(path)
            .map_err(|e| format!("no snapshot at {}: {e}", path.display()))?
            .len();
        Ok((size, elapsed))
    }

    /// Restores the snapshot at `path` into a fresh data directory (`etcdutl snapshot
    /// restore` when there is an etcdutl, else `etcdctl snapshot restore`), starts a member
    /// on it on new free ports, and polls until counting the keys under `prefix` (a
    /// linearizable range, so only once the member leads) answers. Then stops that member
    /// and removes its directory, which stays for inspection when the restore fails.
    pub fn restore_snapshot(&self, path: &Path, prefix: &str) -> Result<EtcdRestore, String> {
        let path = &proc::absolute(path)?;
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let n = self.restores.fetch_add(1, Ordering::Relaxed);
            let rdir = self.dir.join(format!("restore-{n}"));
            proc::make_dir(&rdir, None)?;
            let m = Member::new("restored", &rdir.join("data"));
            let mut cmd = match proc::which("etcdutl") {
                Some(etcdutl) => proc::command(etcdutl, None, &rdir),
                None => etcdctl(&rdir),
            };
            cmd.args(["snapshot", "restore"])
                .arg(path)
                .arg(format!("--data-dir={}", m.data.display()))
                .args(m.cluster_flags());
            let log = rdir.join("etcd.log");

            let t0 = Instant::now();
            proc::run(cmd, &log)?;
            let t1 = Instant::now();
            let mut server = m.spawn(&rdir, &log)?;
            let endpoint = m.endpoint();
            let mut keys = None;
            let ready = server.wait_until(START_TIMEOUT, Duration::from_millis(2), || {
                keys = count(&endpoint, prefix.as_bytes()).ok();
                keys.is_some()
            });
            let t2 = Instant::now();
            server.stop();
            match ready {
                Ok(()) => {
                    drop(server);
                    proc::remove_dir(&rdir)?;
                    return Ok(EtcdRestore {
                        total: t2 - t0,
                        restore_cmd: t1 - t0,
                        start_to_answer: t2 - t1,
                        keys: keys.unwrap_or_default(),
                    });
                }
                Err(e) => {
                    last = format!("in {}: {e}", rdir.display());
                    if !proc::port_taken(&e) {
                        break;
                    }
                }
            }
        }
        Err(format!(
            "restoring the snapshot {} failed {last}",
            path.display()
        ))
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.server.stop();
    }
}

/// One member's name, data directory and ports.
struct Member {
    name: String,
    data: PathBuf,
    client: u16,
    peer: u16,
}

impl Member {
    fn new(name: &str, data: &Path) -> Member {
        Member {
            name: name.to_string(),
            data: data.to_path_buf(),
            client: proc::free_port(),
            peer: proc::free_port(),
        }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }

    /// The membership flags, the same for `snapshot restore` and for the member started
    /// on what it restored.
    fn cluster_flags(&self) -> Vec<String> {
        let peer_url = format!("http://127.0.0.1:{}", self.peer);
        vec![
            format!("--name={}", self.name),
            format!("--initial-cluster={}={peer_url}", self.name),
            format!("--initial-advertise-peer-urls={peer_url}"),
            "--initial-cluster-token=metapitr-bench".to_string(),
        ]
    }

    fn spawn(&self, cwd: &Path, log: &Path) -> Result<Server, String> {
        let mut cmd = proc::command("etcd", None, cwd);
        cmd.arg("--logger=zap")
            .arg(format!("--data-dir={}", self.data.display()))
            .args(self.cluster_flags())
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{}",
                self.client
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{}",
                self.client
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", self.peer))
            .arg("--initial-cluster-state=new");
        Server::spawn(cmd, log, libc::SIGKILL)
    }
}

fn etcdctl(cwd: &Path) -> Command {
    let mut c = proc::command("etcdctl", None, cwd);
    c.env("ETCDCTL_API", "3");
    c
}

/// The number of keys under `prefix` through `POST /v3/kv/range` with `count_only`.
fn count(endpoint: &str, prefix: &[u8]) -> Result<u64, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (key, end) = if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), metapitr::store::etcd::range_end(prefix))
    };
    let body = serde_json::json!({
        "key": b64.encode(key),
        "range_end": b64.encode(end),
        "count_only": true,
    });
    let resp = post(endpoint, "/v3/kv/range", &body.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&resp)
        .map_err(|e| format!("range answered bad JSON ({e}): {resp}"))?;
    if v.get("header").is_none() {
        return Err(format!("range answered without a header: {resp}"));
    }
    // int64 fields come as strings, and a zero count not at all.
    match &v["count"] {
        serde_json::Value::Null => Ok(0),
        serde_json::Value::String(s) => s
            .parse()
            .map_err(|e| format!("range answered a bad count ({e}): {resp}")),
        c => c
            .as_u64()
            .ok_or_else(|| format!("range answered a bad count: {resp}")),
    }
}

/// `POST path` with a JSON body on the client port; the response body when it is 200 OK.
fn post(endpoint: &str, path: &str, body: &str) -> Result<String, String> {
    let addr = endpoint
        .parse()
        .map_err(|e| format!("bad endpoint {endpoint}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| format!("cannot set a read timeout: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to {endpoint}: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("no answer from {endpoint}{path}: {e}"))?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{endpoint}{path} answered {status}: {body}"));
    }
    Ok(body.to_string())
}
