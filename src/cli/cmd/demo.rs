//! `metapitr demo`: ten simulated days, a restore six days back, checked against the truth.

use crate::cli::args::DemoArgs;
use crate::error::Result;

pub(crate) async fn run(a: DemoArgs) -> Result<()> {
    crate::demo::run(a.dir, a.epochs, a.seed).await
}
