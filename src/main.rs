fn main() -> std::process::ExitCode {
    metapitr::cli::main()
}
