//! `levelhost demo`: the simulator and the two example plugins, end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::ExitStatus;
use crate::client::{ApiKey, ClientConfig, LevelClient};
use crate::engine::LoadedPlugin;
use crate::runtime::{PluginRunner, RunRequest};
use crate::sim::{SimConfig, Simulator};

/// The example plugins the demo runs, by crate name.
const PLUGINS: [&str; 2] = ["device-report", "stale-device-tagger"];

/// Arguments of `levelhost demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A folder holding device_report.wasm and stale_device_tagger.wasm. When
    /// absent, the demo builds them from this source tree with cargo.
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Days offline after which the tagger marks a device stale.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
}

impl DemoArgs {
    /// Runs the demo.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let dir = match self.plugins {
            Some(dir) => dir,
            None => build_examples()?,
        };
        let runner = PluginRunner::new()?;
        let load = |crate_name: &str| -> anyhow::Result<LoadedPlugin> {
            let path = dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
            let mut plugin = runner.load_file(&path)?;
            plugin.name = crate_name.to_owned();
            Ok(plugin)
        };
        let report_plugin = load(PLUGINS[0])?;
        let tagger = load(PLUGINS[1])?;

        let sim = Simulator::start(SimConfig::default(), Simulator::seeded()).await?;
        let client = LevelClient::new(
            ClientConfig::new(sim.base_url()),
            ApiKey::new(sim.read_write_key()),
        )?;
        println!(
            "Level simulator on {} (a seeded organization; nothing leaves this machine)\n",
            sim.base_url()
        );

        let run = |plugin: &LoadedPlugin, input: String| {
            let runner = &runner;
            let client = client.clone();
            let plugin = plugin.clone();
            async move {
                let report = runner
                    .run(&plugin, client, RunRequest::manual(input))
                    .await?;
                match report.outcome {
                    Ok(output) => Ok::<_, anyhow::Error>((output, report.api_calls)),
                    Err(e) => bail!("{} failed: {e}", plugin.name),
                }
            }
        };

        let (report, calls) = run(&report_plugin, "{}".to_owned()).await?;
        println!("▶ device-report (read-only, {calls} Level calls)");
        print_report(&report);

        let input = format!("{{\"days\": {}}}", self.days);
        let (first, calls) = run(&tagger, input.clone()).await?;
        println!("\n▶ stale-device-tagger {input} ({calls} Level calls)");
        print_tagging(&first);
        let (second, _) = run(&tagger, input).await?;
        let tagged_again = second["tagged"].as_array().map_or(0, Vec::len);
        println!(
            "\n▶ stale-device-tagger again: tagged {tagged_again}, already tagged {} (idempotent)",
            second["already_tagged"]
        );

        let tag = first["tag"].as_str().unwrap_or("stale");
        let fixture = sim.tenant().to_fixture();
        let carrying = fixture
            .devices
            .iter()
            .filter(|d| d.tags.iter().any(|t| t == tag))
            .count();
        println!("\nThe simulator now shows tag {tag:?} on {carrying} devices.");
        sim.stop().await;
        if tagged_again != 0 {
            bail!("the second tagger run changed {tagged_again} devices; it should change none");
        }
        Ok(ExitStatus::Success)
    }
}

fn print_report(r: &Value) {
    println!(
        "  {} devices: {} online, {} offline; {} stale (offline {} days or more)",
        r["devices"], r["online"], r["offline"], r["stale"], r["stale_after_days"]
    );
    println!("  By group:");
    for g in r["by_group"].as_array().into_iter().flatten() {
        println!(
            "    {:<28} {:>3} devices {:>3} online {:>3} offline",
            g["group"].as_str().unwrap_or("?"),
            g["devices"],
            g["online"],
            g["offline"]
        );
    }
    println!("  By platform:");
    if let Some(platforms) = r["by_platform"].as_object() {
        for (name, c) in platforms {
            println!(
                "    {:<28} {:>3} devices {:>3} online {:>3} offline",
                name, c["devices"], c["online"], c["offline"]
            );
        }
    }
    println!("  Stalest devices:");
    for s in r["stalest"].as_array().into_iter().flatten() {
        println!(
            "    {:<20} {:<28} offline {} days",
            s["hostname"].as_str().unwrap_or("?"),
            s["group"].as_str().unwrap_or("?"),
            s["days_offline"]
        );
    }
}

fn print_tagging(t: &Value) {
    let tag = t["tag"].as_str().unwrap_or("?");
    if t["created_tag"] == Value::Bool(true) {
        println!("  created tag {tag:?}");
    }
    let tagged: Vec<&str> = t["tagged"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!("  tagged {} stale devices with {tag:?}:", tagged.len());
    for host in tagged {
        println!("    + {host}");
    }
    let untagged = t["untagged"].as_array().map_or(0, Vec::len);
    println!("  untagged {untagged} devices that came back online");
}

/// Builds the example plugins from this source tree and returns where they are.
fn build_examples() -> anyhow::Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("cannot find the levelhost source tree")?;
    if !workspace.join("plugins").join(PLUGINS[0]).is_dir() {
        bail!(
            "the example plugins' sources are not at {}; build them with \
             `cargo build --release --target wasm32-wasip2 -p device-report -p stale-device-tagger` \
             in the levelhost repository and pass --plugins <target/wasm32-wasip2/release>",
            workspace.display()
        );
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "Building the example plugins for wasm32-wasip2 (cargo build --release --target wasm32-wasip2)…"
    );
    let mut command = Command::new(&cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target);
    for p in PLUGINS {
        command.args(["-p", p]);
    }
    ensure_wasm_target();
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!(
            "building the example plugins failed ({status}); if the wasm32-wasip2 target is missing, \
             run `rustup target add wasm32-wasip2` and try again"
        );
    }
    Ok(target.join("wasm32-wasip2").join("release"))
}

/// Adds the wasm32-wasip2 target with rustup when it is missing, so a fresh
/// machine can run the demo with one command.
fn ensure_wasm_target() {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let Ok(listed) = listed else { return };
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return;
    }
    eprintln!("Installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)…");
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
}
