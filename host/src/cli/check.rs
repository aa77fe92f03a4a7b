//! `levelhost check`.

use std::path::PathBuf;

use anyhow::Context as _;

use super::ExitStatus;
use crate::config::{HostConfig, PluginSource};
use crate::env_vars::EnvVars;
use levelhost_runtime::error::HostError;
use levelhost_runtime::runner::{PluginRunner, resolve_scopes};

/// Arguments of `levelhost check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long, env = EnvVars::LEVELHOST_CONFIG, default_value = "levelhost.toml")]
    pub config: PathBuf,
    /// Do not ask Level anything: neither probe the keys nor resolve group scopes.
    #[arg(long)]
    pub offline: bool,
    /// Print the result as JSON: `{config, keys, key_checks: [{key, works, access, declared, error}]
    /// (null with --offline), plugins: [{name, version, description, key, digest,
    /// package, pinned, component, vetting, grant, grant_in_words, approval, approval_in_words,
    /// warnings, notes}]}` (`approval` is null for a plugin with no approval policy).
    #[arg(long)]
    pub json: bool,
}

/// One plugin as `check` reports it, and its `--json` shape.
#[derive(Debug, serde::Serialize)]
struct PluginCheck {
    name: String,
    version: String,
    description: String,
    key: String,
    digest: String,
    package: Option<PathBuf>,
    pinned: Option<String>,
    component: Option<PathBuf>,
    vetting: String,
    grant: levelhost_core::grant::Grant,
    grant_in_words: Vec<String>,
    approval: Option<levelhost_core::plan::ApprovalPolicy>,
    approval_in_words: Option<String>,
    warnings: Vec<String>,
    notes: Vec<String>,
}

/// The whole report, and its `--json` shape.
#[derive(Debug, serde::Serialize)]
struct CheckReport {
    config: PathBuf,
    keys: usize,
    /// Each key as Level answered a probe; `None` when offline.
    key_checks: Option<Vec<super::key::KeyProbe>>,
    /// Each connection to another system, in words (never its secret).
    connections: Vec<String>,
    plugins: Vec<PluginCheck>,
    /// Each gateway client (never its key).
    clients: Vec<ClientCheck>,
}

/// One gateway client as `check` reports it, and its `--json` shape.
#[derive(Debug, serde::Serialize)]
struct ClientCheck {
    name: String,
    /// The Level key the host uses for it.
    key: String,
    /// Whether it has a key of its own: `hash`, `env:...`/`file:...`, or `none`.
    client_key: String,
    /// When its key stops working (RFC 3339), if ever.
    expires: Option<String>,
    /// Its own rates, per minute and per hour (0: none).
    requests_per_minute: u32,
    requests_per_hour: u32,
    grant_in_words: Vec<String>,
}

impl CheckArgs {
    /// Checks the whole configuration and prints each plugin's effective grant.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let config = HostConfig::load(&self.config)?;
        config
            .check_keys()
            .with_context(|| self.config.display().to_string())?;
        let connections = config
            .load_connections()
            .with_context(|| self.config.display().to_string())?;
        let runner = super::runner()?;
        let mut report = CheckReport {
            config: self.config.clone(),
            keys: config.keys.len(),
            key_checks: None,
            connections: connections
                .iter()
                .map(|c| {
                    format!(
                        "connection {}: {} ({} credential{})",
                        c.name,
                        c.shown_url(),
                        c.credential_kind(),
                        if c.allows_private_network() {
                            "; may reach private addresses"
                        } else {
                            ""
                        }
                    )
                })
                .collect(),
            plugins: Vec::new(),
            clients: Vec::new(),
        };
        for client in config.clients.values() {
            // A key given by reference must be readable now, not at the first request.
            client
                .key_hash()
                .with_context(|| self.config.display().to_string())?;
            report.clients.push(ClientCheck {
                name: client.name.clone(),
                key: client.key.clone(),
                client_key: match &client.client_key {
                    None => "none".to_owned(),
                    Some(crate::config::ClientKeyFrom::Hash(_)) => "hash".to_owned(),
                    Some(crate::config::ClientKeyFrom::Secret(source)) => source.to_string(),
                },
                expires: client.expires.map(level_api::clock::timestamp),
                requests_per_minute: client.requests_per_minute,
                requests_per_hour: client.requests_per_hour,
                grant_in_words: levelhost_gateway::describe(&client.grant),
            });
        }
        if !self.offline {
            let mut probes = Vec::new();
            for name in config.keys.keys() {
                probes.push(super::key::KeyProbe::run(&config, name).await?);
            }
            report.key_checks = Some(probes);
        }
        for plugin in config.plugins.values() {
            let (loaded, vetting) = crate::loader::load_installed(&runner, plugin, &config.trust)?;
            if !self.offline && plugin.grant.scopes.groups.is_some() {
                let client = crate::loader::client(&config, &plugin.key)?;
                if let Err(e) = resolve_scopes(&client, &plugin.grant).await {
                    return Err(match e {
                        HostError::Scope { error, .. } => {
                            plugin.scope_error(&error, &self.config).into()
                        }
                        other => other.into(),
                    });
                }
            }
            let mut warnings = PluginRunner::ungranted_imports(&loaded, &plugin.grant);
            let beyond = plugin.beyond_manifest();
            if !beyond.is_empty() {
                warnings.push(format!(
                    "the grant gives {}, which its manifest does not ask for; remove them from plugins.{}.capabilities unless you mean to widen it",
                    levelhost_core::capability::join(&beyond),
                    plugin.name
                ));
            }
            let not_granted = plugin.not_granted();
            if !not_granted.is_empty() {
                warnings.push(format!(
                    "its manifest also asks for {}, which the grant does not give; calls that need them are denied",
                    levelhost_core::capability::join(&not_granted)
                ));
            }
            let mut notes = Vec::new();
            if plugin.grant.scopes.groups.is_none()
                && plugin.grant.capabilities.iter().any(|c| c.is_write())
            {
                notes.push(
                    "the grant is not limited to any group: it may change devices anywhere in the organization"
                        .to_owned(),
                );
            }
            let (package, pinned, component) = match &plugin.source {
                PluginSource::Package { dir, pinned } => (Some(dir.clone()), pinned.clone(), None),
                PluginSource::Component(path) => (None, None, Some(path.clone())),
            };
            report.plugins.push(PluginCheck {
                name: plugin.name.clone(),
                version: plugin.manifest.version.clone(),
                description: plugin.manifest.description.clone(),
                key: plugin.key.clone(),
                digest: loaded.digest.to_string(),
                package,
                pinned,
                component,
                vetting: vetting.to_string(),
                grant: plugin.grant.clone(),
                grant_in_words: plugin.grant.describe(),
                approval: plugin.approval.clone(),
                approval_in_words: plugin.approval.as_ref().map(|p| p.in_words()),
                warnings,
                notes,
            });
        }
        let problems: Vec<String> = report
            .key_checks
            .iter()
            .flatten()
            .filter_map(super::key::KeyProbe::problem)
            .collect();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_report(&report);
        }
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        Ok(if problems.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        })
    }
}

/// The report in words, each plugin's grant as a person reads it.
fn print_report(report: &CheckReport) {
    println!(
        "{}: {} keys, {} plugins",
        report.config.display(),
        report.keys,
        report.plugins.len()
    );
    match &report.key_checks {
        None => println!("keys: not probed (--offline): whether Level accepts them is not known"),
        Some(probes) => {
            for probe in probes {
                println!("{}", probe.in_words());
            }
        }
    }
    for connection in &report.connections {
        println!("{connection}");
    }
    for plugin in &report.plugins {
        println!();
        println!(
            "{} {} ({}), key {}, component {}",
            plugin.name, plugin.version, plugin.description, plugin.key, plugin.digest
        );
        match (&plugin.package, &plugin.component) {
            (Some(dir), _) => println!(
                "  package {}, pinned to {}, {}",
                dir.display(),
                plugin.pinned.as_deref().unwrap_or("no digest"),
                plugin.vetting
            ),
            (None, Some(path)) => println!("  component {}, {}", path.display(), plugin.vetting),
            (None, None) => {}
        }
        for line in &plugin.grant_in_words {
            println!("  {line}");
        }
        if let Some(approval) = &plugin.approval_in_words {
            println!("  approval: {approval}");
        }
        for warning in &plugin.warnings {
            println!("  warning: {warning}");
        }
        for note in &plugin.notes {
            println!("  note: {note}");
        }
    }
    for client in &report.clients {
        println!();
        let key = match client.client_key.as_str() {
            "none" => format!(
                "no client key yet (refused until `levelhost client key {}`)",
                client.name
            ),
            "hash" => "its client key kept as a hash".to_owned(),
            source => format!("its client key from {source}"),
        };
        let expires = client
            .expires
            .as_deref()
            .map_or(String::new(), |at| format!(", expires {at}"));
        println!(
            "gateway client {}: key {}, {key}{expires}",
            client.name, client.key
        );
        for line in &client.grant_in_words {
            println!("  {line}");
        }
        for (rate, per) in [
            (client.requests_per_minute, "minute"),
            (client.requests_per_hour, "hour"),
        ] {
            if rate > 0 {
                println!("  at most {rate} requests per {per}");
            }
        }
    }
    let failed = report
        .key_checks
        .iter()
        .flatten()
        .filter(|p| p.problem().is_some())
        .count();
    match failed {
        0 => println!("\nOK"),
        n => println!("\nNOT OK: {n} keys do not work as the config declares"),
    }
}
