//! `levelhost demo`: the simulator and the example plugins, end to end: a
//! report, a tagger held to its tags, and an alert posted to a chat through
//! a connection whose secret URL the plugin never sees.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use axum::http::Uri;
use serde_json::Value;

use super::ExitStatus;
use crate::env_vars::EnvVars;
use level_api::{ApiKey, ClientConfig, LevelClient};
use level_sim::{SimConfig, Simulator};
use levelhost_core::capability;
use levelhost_core::grant::{Grant, Limits, Scopes, TagPatterns};
use levelhost_core::manifest::PluginManifest;
use levelhost_runtime::engine::LoadedPlugin;
use levelhost_runtime::runner::{RunReport, RunRequest};

/// The example plugins the demo runs, by crate name.
const PLUGINS: [&str; 3] = ["device-report", "stale-device-tagger", "alert-to-chat"];

/// Arguments of `levelhost demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A folder holding device_report.wasm, stale_device_tagger.wasm and alert_to_chat.wasm. When
    /// absent, the demo builds them from this source tree with cargo.
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Days offline after which the tagger marks a device stale.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
}

/// The example plugins' manifests, built into the binary.
const MANIFESTS: [(&str, &str); 3] = [
    (
        "plugins/device-report/plugin.toml",
        include_str!("../../../plugins/device-report/plugin.toml"),
    ),
    (
        "plugins/stale-device-tagger/plugin.toml",
        include_str!("../../../plugins/stale-device-tagger/plugin.toml"),
    ),
    (
        "examples/alert-to-chat/plugin.toml",
        include_str!("../../../examples/alert-to-chat/plugin.toml"),
    ),
];

impl DemoArgs {
    /// Runs the demo.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let dir = match self.plugins {
            Some(dir) => dir,
            None => build_examples()?,
        };
        let runner = super::runner()?;
        let mut loaded = Vec::new();
        for (crate_name, (manifest_path, manifest_text)) in PLUGINS.iter().zip(MANIFESTS) {
            let manifest = PluginManifest::parse(Path::new(manifest_path), manifest_text)?;
            let path = dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
            let mut plugin = runner.load_file(&path)?;
            plugin.name = manifest.name.as_str().into();
            loaded.push((plugin, manifest));
        }
        let [
            (report_plugin, report_manifest),
            (tagger, tagger_manifest),
            (chat_plugin, chat_manifest),
        ] = <[_; 3]>::try_from(loaded)
            .map_err(|_| anyhow::anyhow!("expected three example plugins"))?;

        let sim = Simulator::start(SimConfig::default(), Simulator::seeded()).await?;
        let client =
            |key: &str| LevelClient::new(ClientConfig::new(sim.base_url()), ApiKey::new(key));
        let read_only = client(sim.read_only_key())?;
        let read_write = client(sim.read_write_key())?;
        println!(
            "Level simulator on {} (a seeded organization; nothing leaves this machine)\n",
            sim.base_url()
        );

        // Each plugin gets exactly what its manifest asks for; the tagger only tags named stale*.
        let report_grant = Grant {
            plugin: report_manifest.name.clone(),
            connections: Default::default(),
            capabilities: report_manifest.capabilities,
            scopes: Scopes::default(),
            limits: Limits::default(),
        };
        let tagger_grant = Grant {
            plugin: tagger_manifest.name.clone(),
            connections: Default::default(),
            capabilities: tagger_manifest.capabilities,
            scopes: Scopes {
                tags: Some(TagPatterns::parse(vec!["stale*".to_owned()])?),
                ..Scopes::default()
            },
            limits: Limits::default(),
        };
        let run = |plugin: &LoadedPlugin,
                   grant: &Grant,
                   key: &LevelClient,
                   input: String,
                   dry_run: bool| {
            let runner = &runner;
            let request = RunRequest {
                grant: grant.clone(),
                dry_run,
                ..RunRequest::manual(input)
            };
            let (plugin, key) = (plugin.clone(), key.clone());
            async move { Ok::<_, anyhow::Error>(runner.run(&plugin, key, request).await?) }
        };
        let output = |report: RunReport| match report.outcome {
            Ok(output) => Ok((output, report.api_calls)),
            Err(e) => Err(anyhow::anyhow!("{} failed: {e}", report.plugin)),
        };

        println!(
            "▶ device-report, read-only key; grant: {}",
            capability::join(&report_grant.capabilities)
        );
        let (report, calls) = output(
            run(
                &report_plugin,
                &report_grant,
                &read_only,
                "{}".to_owned(),
                false,
            )
            .await?,
        )?;
        println!("  ({calls} Level calls)");
        print_report(&report);

        let input = format!("{{\"days\": {}}}", self.days);
        println!(
            "\n▶ stale-device-tagger {input}; grant: {}, tags \"stale*\" only",
            capability::join(&tagger_grant.capabilities)
        );
        let dry = run(&tagger, &tagger_grant, &read_write, input.clone(), true).await?;
        println!("  dry run: {} writes planned, none sent:", dry.plan.len());
        for entry in &dry.plan {
            match entry.request["device_ids"].as_array() {
                Some(ids) => println!(
                    "    {} {} on {} devices",
                    entry.operation,
                    entry.request["id"],
                    ids.len()
                ),
                None => println!("    {} {}", entry.operation, entry.request),
            }
        }
        let (first, calls) =
            output(run(&tagger, &tagger_grant, &read_write, input.clone(), false).await?)?;
        println!("  real run ({calls} Level calls):");
        print_tagging(&first);
        let (second, _) = output(run(&tagger, &tagger_grant, &read_write, input, false).await?)?;
        let tagged_again = second["tagged"].as_array().map_or(0, Vec::len);
        println!(
            "  again: tagged {tagged_again}, already tagged {} (idempotent)",
            second["already_tagged"]
        );

        println!("\n▶ stale-device-tagger asked to tag devices \"vip\", outside its grant");
        let refused = run(
            &tagger,
            &tagger_grant,
            &read_write,
            r#"{"days": 14, "tag": "vip"}"#.to_owned(),
            false,
        )
        .await?;
        let denial = refused.audit.iter().find(|r| !r.allowed);
        match (&refused.outcome, denial) {
            (Err(failure), Some(record)) => {
                println!("  refused by the host: {failure}");
                println!(
                    "  audit: {} DENIED — {}",
                    record.operation,
                    record.reason.as_deref().unwrap_or("")
                );
            }
            _ => bail!("the out-of-grant run was not refused"),
        }

        let tag = first["tag"].as_str().unwrap_or("stale");
        let fixture = sim.tenant().to_fixture();
        let carrying = fixture
            .devices
            .iter()
            .filter(|d| d.tags.iter().any(|t| t == tag))
            .count();
        let vip_before = Simulator::seeded()
            .to_fixture()
            .tags
            .iter()
            .find(|t| t.name == "vip")
            .map(|t| t.device_count);
        let vip_now = fixture
            .tags
            .iter()
            .find(|t| t.name == "vip")
            .map(|t| t.device_count);
        println!(
            "\nThe simulator now shows tag {tag:?} on {carrying} devices; \"vip\" is untouched ({} devices).",
            vip_now.unwrap_or(0)
        );
        alert_to_chat(&runner, chat_plugin, &chat_manifest, &read_only).await?;
        sim.stop().await;
        if tagged_again != 0 {
            bail!("the second tagger run changed {tagged_again} devices; it should change none");
        }
        if vip_before != vip_now {
            bail!("the refused run changed the vip tag");
        }
        Ok(ExitStatus::Success)
    }
}

/// The secret part of the demo chat's incoming-webhook URL: only the host holds it.
const CHAT_SECRET: &str = "services/T0DEMO/B0DEMO/s3cr3t-w3bh00k-t0k3n";

/// Runs alert-to-chat on an `alert_active` event for the simulator's first
/// active alert, posting to a chat on loopback (standing in for a Teams or
/// Slack incoming webhook) through a secret-URL connection; shows what the
/// chat received and that the secret never reached the plugin.
async fn alert_to_chat(
    runner: &levelhost_runtime::runner::PluginRunner,
    plugin: LoadedPlugin,
    manifest: &PluginManifest,
    client: &LevelClient,
) -> anyhow::Result<()> {
    use levelhost_runtime::outbound::{ConnectionSpec, Connections, Credential};
    let alerts = client
        .list_alerts(
            &level_api::AlertQuery {
                status: Some("active".to_owned()),
                ..Default::default()
            },
            &level_api::PageParams::default(),
        )
        .await?;
    let alert = alerts
        .data
        .first()
        .context("the simulator has no active alert")?;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let kept = received.clone();
    let chat = axum::Router::new().fallback(move |uri: Uri, body: String| {
        let kept = kept.clone();
        async move {
            kept.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((uri.path().to_owned(), body));
            "1"
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, chat).await });
    let connections = Connections::new([ConnectionSpec {
        name: "chat".to_owned(),
        url: format!("http://{addr}/{CHAT_SECRET}"),
        credential: Credential::SecretUrl,
        // The stand-in chat is on loopback; a real one is not.
        allow_private_network: true,
    }])?;
    let grant = Grant {
        plugin: manifest.name.clone(),
        connections: manifest.connections.clone(),
        capabilities: manifest.capabilities,
        scopes: Scopes::default(),
        limits: Limits::default(),
    };
    let event = serde_json::json!({"event": {
        "event_type": "alert_active",
        "event_id": "demo-1",
        "occurred_at": level_api::clock::now(),
        "data": alert,
    }});
    println!(
        "\n▶ alert-to-chat on an alert_active event ({} on {}); grant: {}",
        alert.name,
        alert.device_hostname.as_deref().unwrap_or("?"),
        manifest.asks()
    );
    println!(
        "  chat: a secret-URL connection, http://{addr}/[secret] (a loopback stand-in for a Teams webhook)"
    );
    let request = RunRequest {
        grant,
        connections: Some(std::sync::Arc::new(connections)),
        ..RunRequest::manual(event.to_string())
    };
    let report = runner.run(&plugin, client.clone(), request).await?;
    server.abort();
    let output = report
        .outcome
        .as_ref()
        .map_err(|e| anyhow::anyhow!("alert-to-chat failed: {e}"))?;
    let received = received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let [(path, body)] = received.as_slice() else {
        bail!(
            "the chat received {} messages; expected one",
            received.len()
        );
    };
    println!("  the chat received at /[secret]: {body}");
    if let Some(record) = report
        .audit
        .iter()
        .find(|r| r.operation == levelhost_core::route::HTTP_OPERATION)
    {
        println!(
            "  audit: {} {} → {}",
            record.operation,
            record.targets.join(" "),
            record.upstream_status.unwrap_or(0)
        );
    }
    let seen_by_plugin = output.to_string()
        + &report
            .logs
            .iter()
            .map(|l| l.message.clone())
            .collect::<String>();
    if path.trim_start_matches('/') != CHAT_SECRET || seen_by_plugin.contains(CHAT_SECRET) {
        bail!("the chat's secret URL was not kept from the plugin");
    }
    println!("  the plugin named only \"https://chat/\"; the secret URL never reached it");
    Ok(())
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
    let target = EnvVars::var_os(EnvVars::CARGO_TARGET_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let cargo = EnvVars::var_os(EnvVars::CARGO).unwrap_or_else(|| "cargo".into());
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
