//! Test tools: the simulator of a meta service and its cluster ([`sim`]), an object
//! store that injects faults ([`faulty_store`]) and the fuzz entry points ([`fuzz`]).
//! Used by the tests, the benchmarks, the demo and `metapitr simulate`; an embedder of
//! the engine needs none of it.

// The engine and today's model, as `crate::…` paths for the modules below.
#[allow(unused_imports)]
use metapitr_model::*;

pub mod faulty_store;
pub mod fuzz;
pub mod sim;
// The servers the integration tests and benches start (etcd, PostgreSQL, an S3 server),
// only with the `servers` feature: a build of the command line compiles none of it.
#[cfg(feature = "servers")]
pub mod servers;
