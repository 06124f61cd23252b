//! metapitr's benchmarks live in benches/: criterion benches of the engine (core, pin,
//! stores) and the peers comparison (peers.rs, run by benches/peers.sh).
