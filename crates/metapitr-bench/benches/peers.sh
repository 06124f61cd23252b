#!/usr/bin/env bash
# Runs the peers benchmark (crates/metapitr-bench/benches/peers.rs): metapitr against pgBackRest, etcd and JSONL.
# Installs the peers from the distribution's packages when they are missing, then runs
# `cargo bench --bench peers -- ARGS` with this script's arguments (`--help` lists them).
set -euo pipefail
cd "$(dirname "$0")/../../.."

scripts/install-servers

exec cargo bench -p metapitr-bench --bench peers -- "$@"
