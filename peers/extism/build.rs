//! Builds the Extism guest (`guest/`) for wasm32-unknown-unknown into
//! `OUT_DIR` and says where it is (`EXTISM_GUEST`).

#![allow(
    clippy::disallowed_methods,
    reason = "a build script reads what cargo sets"
)]
#![expect(
    clippy::expect_used,
    reason = "a build script reports failure by panicking"
)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("guest").display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--manifest-path",
        ])
        .arg(manifest.join("guest/Cargo.toml"))
        .arg("--target-dir")
        .arg(out.join("guest"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "the Extism guest builds (rustup target add wasm32-unknown-unknown)"
    );
    let wasm = out.join("guest/wasm32-unknown-unknown/release/extism_guest.wasm");
    println!("cargo:rustc-env=EXTISM_GUEST={}", wasm.display());
}
