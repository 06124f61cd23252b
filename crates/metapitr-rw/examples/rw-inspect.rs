//! Prints the JSON rendering of RisingWave metadata objects: `rw-inspect FILE...`.
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for path in std::env::args().skip(1) {
        let shown = match std::fs::read(&path) {
            Ok(data) => metapitr_rw::inspect_named(&path, &data).map(|i| i.to_json()),
            Err(e) => {
                eprintln!("{path}: cannot read: {e}");
                status = ExitCode::FAILURE;
                continue;
            }
        };
        match shown.and_then(|j| {
            serde_json::to_string_pretty(&j).map_err(|e| metapitr_rw::Error::Unrecognized {
                file: path.clone(),
                detail: e.to_string(),
            })
        }) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("{e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
