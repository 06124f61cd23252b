//! `metapitr import`: a JSONL export into a meta store, optionally as a new cluster's
//! (`--id`, `--initial-cluster`).

use crate::cli::args::ImportArgs;
use crate::cli::common::{out, Ctx};
use crate::epoch;
use crate::error::{Error, Result};
use crate::model::{WorkerNode, WorkerType};
use crate::progress::{Bars, Progress};
use crate::store::{JsonlStore, MetaStore, TargetStore};

pub(crate) async fn run(a: ImportArgs, ctx: &Ctx) -> Result<()> {
    let quiet = ctx.quiet;
    let source = if a.from == "-" {
        JsonlStore::Stdio
    } else {
        JsonlStore::File(a.from.into())
    };
    let store = a.etcd.store(&a.target_store, ctx)?;
    if store == TargetStore::Jsonl(source.clone()) {
        return Err(Error::invalid_input(
            "--from and --target-store name the same file",
        ));
    }
    let store = store.into_store();
    if !a.force && !store.is_empty().await? {
        return Err(Error::target_not_empty(store.to_string()));
    }
    store.check_clearable(a.force_clear)?;
    let spin = Progress::spinner(&format!("reading {source}"), quiet);
    let state = source.read_export(a.allow_untrailed);
    spin.finish();
    let mut state = state?;
    if let Some(id) = a.id {
        let nodes = parse_initial_cluster(&a.initial_cluster)?;
        crate::store::reinitialize_cluster(&mut state, id, nodes)?;
    }
    let spin = Progress::spinner(&format!("writing into {store}"), quiet);
    let r = store.write_with(&state, a.force, a.force_clear).await;
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

/// `--initial-cluster ID=HOST:PORT` values as meta nodes.
fn parse_initial_cluster(values: &[String]) -> Result<Vec<WorkerNode>> {
    let mut nodes: Vec<WorkerNode> = Vec::new();
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
        nodes.push(WorkerNode {
            id,
            host: host.to_string(),
            port,
            worker_type: WorkerType::Meta as i32,
        });
    }
    Ok(nodes)
}
