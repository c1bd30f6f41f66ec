//! Compiles proto/cronhook/v1 with protoc: `$PROTOC`, else `protoc` on the PATH (Debian
//! package protobuf-compiler), else the copy vendored by `protoc-bin-vendored`, so a fresh
//! machine needs nothing installed to build.

use std::path::{Path, PathBuf};

/// Returns the protoc to use when neither `$PROTOC` nor a `protoc` on the PATH exists.
fn vendored_protoc() -> Option<PathBuf> {
    if std::env::var_os("PROTOC").is_some() {
        return None;
    }
    let on_path =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("protoc").is_file()));
    if on_path { None } else { protoc_bin_vendored::protoc_bin_path().ok() }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["schedule.proto", "run.proto", "tick.proto", "ledger.proto"].map(|f| root.join("cronhook/v1").join(f));
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut prost = tonic_prost_build::Config::new();
    if let Some(p) = vendored_protoc() {
        prost.protoc_executable(p);
    }
    tonic_prost_build::configure().file_descriptor_set_path(out.join("cronhook_descriptor.bin")).compile_with_config(
        prost,
        &files,
        std::slice::from_ref(&root),
    )?;
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
