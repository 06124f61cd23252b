fn main() -> std::process::ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = failpoints();
    metapitr::cli::main()
}

/// Test builds only: configures the fail points FAILPOINTS names (`name=action;...`), and
/// makes a fail point's `panic` abort the process, so that it dies at that step as in a
/// crash (no unwinding, no destructor closes or seals anything).
#[cfg(feature = "failpoints")]
fn failpoints() -> fail::FailScenario<'static> {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failpoint ") {
            eprintln!("{msg}: crashing here");
            std::process::abort();
        }
        default(info)
    }));
    fail::FailScenario::setup()
}
