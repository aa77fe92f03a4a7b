//! Compiles every guest the tests run (the `test-programs` binaries and the
//! example plugins) for `wasm32-wasip2`, from source, into `OUT_DIR`, and
//! writes a constant with the path of each component.

#![expect(
    clippy::expect_used,
    reason = "a build script reports failure by panicking with its message"
)]

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PLUGINS: [&str; 4] = [
    "device-report",
    "stale-device-tagger",
    "alert-to-chat",
    "alert-to-ticket",
];

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .and_then(Path::parent)
        .expect("test-programs/artifacts sits two levels below the workspace")
        .to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["wit", "plugins", "examples", "test-programs/src"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    check_target();
    let target_dir = out.join("guests");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            "test-programs",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        // `cargo clippy` of the workspace must not lint the guests through this nested build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS");
    for plugin in PLUGINS {
        cmd.args(["-p", plugin]);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the test guests");
    assert!(
        status.success(),
        "building the test guests for {TARGET} failed"
    );

    let release = target_dir.join(TARGET).join("release");
    let mut names: Vec<String> = std::fs::read_dir(root.join("test-programs/src/bin"))
        .expect("test-programs/src/bin exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names.extend(PLUGINS.iter().map(|p| p.replace('-', "_")));

    let mut code = String::new();
    for name in &names {
        let path = release.join(format!("{name}.wasm"));
        assert!(
            path.is_file(),
            "expected {} after the guest build",
            path.display()
        );
        writeln!(
            code,
            "/// The `{name}` component.\npub const {}: &str = {:?};",
            name.to_uppercase(),
            path.display().to_string()
        )
        .expect("writing to a String");
    }
    writeln!(
        code,
        "/// Every guest, by name.\npub const ALL: &[(&str, &str)] = &["
    )
    .expect("write");
    for name in &names {
        writeln!(code, "    ({name:?}, {}),", name.to_uppercase()).expect("write");
    }
    writeln!(code, "];").expect("write");
    std::fs::write(out.join("gen.rs"), code).expect("cannot write gen.rs");
}

/// Installs the wasm target with rustup when it is missing, or fails with the fix in the message.
fn check_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let Some(sysroot) = sysroot else { return };
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir()
    {
        return;
    }
    println!(
        "cargo:warning=the {TARGET} target is missing; installing it with `rustup target add {TARGET}`"
    );
    let installed = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "the {TARGET} target is not installed and rustup could not add it; run `rustup target add {TARGET}`"
    );
}
