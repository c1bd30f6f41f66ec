//! Compiles proto/cronhook/v1 with protoc (Debian package protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["schedule.proto", "run.proto", "tick.proto"]
        .map(|f| root.join("cronhook/v1").join(f));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("cronhook_descriptor.bin"))
        .compile_protos(&files, &[root.clone()])?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
