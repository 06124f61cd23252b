//! Compiles proto/*.proto with prost-build, parsing them with protox so that no
//! system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/model.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let mut config = prost_build::Config::new();
    config.btree_map(["."]);
    // JSON of the WAL's changes, for measuring the archive against the same history as
    // plain JSON (`metapitr bench recovery`); byte strings as hex, as in the export.
    config.type_attribute(".", "#[derive(serde::Serialize)]");
    for f in [
        "KeyRange.left",
        "KeyRange.right",
        "AuthInfo.encrypted_value",
    ] {
        config.field_attribute(f, "#[serde(serialize_with = \"crate::jsonl::hex_bytes\")]");
    }
    config.compile_fds(fds)?;
    Ok(())
}
