//! Embedding the recorder in a meta service: open it on a directory and a repo, commit
//! changes at epochs, take a snapshot, close, and restore.
//!
//! Run with `cargo run --example embed`.

use metapitr::clock;
use metapitr::epoch;
use metapitr::model::{change::Kind, pb, CatalogKind, CatalogObject, Change, IdCategory, User};
use metapitr::recorder::{Recorder, RecorderOptions};
use metapitr::repo::Repo;
use metapitr::restore::{self, Target};

fn change(k: Kind) -> Change {
    Change { kind: Some(k) }
}

#[tokio::main]
async fn main() -> metapitr::Result<()> {
    let work = tempfile::tempdir().map_err(|e| metapitr::Error::internal(e.to_string()))?;
    let repo = Repo::open(
        &format!("file://{}", work.path().join("repo").display()),
        clock::system(),
    )?;
    let rec = Recorder::open(
        &work.path().join("meta"),
        repo.clone(),
        RecorderOptions::default(),
    )
    .await?;

    let now = clock::system();
    let e1 = epoch::from_unix_ms(now.now_ms());
    // One barrier's worth of changes: committed together, durable when commit returns.
    rec.commit(
        e1,
        vec![
            change(Kind::CreateUser(User {
                id: 1,
                name: "root".into(),
                is_super: true,
                can_login: true,
                ..Default::default()
            })),
            change(Kind::CreateCatalog(CatalogObject {
                id: 1,
                kind: CatalogKind::Database as i32,
                name: "dev".into(),
                owner: 1,
                ..Default::default()
            })),
            change(Kind::CreateCatalog(CatalogObject {
                id: 2,
                kind: CatalogKind::Schema as i32,
                name: "public".into(),
                database_id: 1,
                owner: 1,
                ..Default::default()
            })),
            change(Kind::IdAdvance(pb::IdGenerator {
                category: IdCategory::Catalog as i32,
                next: 3,
            })),
        ],
    )
    .await?;
    let snap = rec.snapshot().await?;
    println!(
        "snapshot {} at epoch {} ({})",
        snap.id,
        snap.max_committed_epoch,
        epoch::format(snap.max_committed_epoch)
    );

    // An invalid batch is refused whole and changes nothing.
    let bad = rec
        .commit(
            e1 + 1,
            vec![change(Kind::CreateCatalog(CatalogObject {
                id: 3,
                kind: CatalogKind::Table as i32,
                name: "t".into(),
                database_id: 1,
                schema_id: 99,
                owner: 1,
                ..Default::default()
            }))],
        )
        .await;
    println!(
        "refused: {}",
        bad.err().map(|e| e.to_string()).unwrap_or_default()
    );

    rec.close().await?;
    let (_, state) = restore::materialize(&repo, None, Target::Latest).await?;
    println!(
        "restored {} catalog objects at epoch {}",
        state.catalog.len(),
        epoch::format(state.epoch)
    );
    Ok(())
}
