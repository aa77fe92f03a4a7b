//! `levelhost sim`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use super::ExitStatus;
use level_sim::{
    Fixture, RateLimit, SimConfig, Simulator, Tenant, Variants, WebhookTarget, random_key,
};

/// Arguments of `levelhost sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Where to listen (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub addr: SocketAddr,
    /// Load the organization from this JSON fixture instead of the built-in one.
    #[arg(long)]
    pub fixture: Option<PathBuf>,
    /// Devices in the built-in organization.
    #[arg(long, default_value_t = level_sim::seed::DEFAULT_DEVICE_COUNT, conflicts_with = "fixture")]
    pub devices: usize,
    /// Requests per minute each key may make before getting 429 (0 turns the limit off).
    #[arg(long, default_value_t = 100)]
    pub rate_limit: u32,
    /// Answer each write this many milliseconds after making its change (a slow Level).
    #[arg(long, default_value_t = 0)]
    pub write_delay_ms: u64,
    /// The read-and-write key (random when absent).
    #[arg(long)]
    pub read_write_key: Option<String>,
    /// The read-only key (random when absent).
    #[arg(long)]
    pub read_only_key: Option<String>,
    /// Deliver Level's webhook events (alert_active, alert_resolved, device_updated, …) to this URL.
    #[arg(long, requires = "webhook_secret")]
    pub webhook: Option<String>,
    /// The secret deliveries to --webhook are signed with.
    #[arg(long)]
    pub webhook_secret: Option<String>,
    /// Print the organization as a fixture on stdout and exit.
    #[arg(long)]
    pub dump_fixture: bool,
    /// Behave one way where Level's behaviour is unconfirmed (repeatable):
    /// `null-parent=root-groups|not-found`, `unknown-cursor=bad-request|empty-page`,
    /// `duplicate-name=unprocessable|accepted`, `create-status=201|200`.
    #[arg(long, value_name = "NAME=VALUE")]
    pub variant: Vec<String>,
}

impl SimArgs {
    /// Serves until Ctrl-C.
    pub async fn execute(self) -> anyhow::Result<ExitStatus> {
        let tenant = match &self.fixture {
            Some(path) => load_fixture(path)?,
            None => Simulator::seeded_with(self.devices),
        };
        if self.dump_fixture {
            println!("{}", serde_json::to_string_pretty(&tenant.to_fixture())?);
            return Ok(ExitStatus::Success);
        }
        let mut variants = Variants::default();
        let mut created_status = 201;
        for setting in &self.variant {
            match setting.split_once('=') {
                Some(("create-status", "200")) => created_status = 200,
                Some(("create-status", "201")) => created_status = 201,
                Some(("create-status", other)) => {
                    anyhow::bail!("--variant create-status={other}: it is 201 or 200")
                }
                _ => variants
                    .set(setting)
                    .with_context(|| format!("--variant {setting}"))?,
            }
        }
        let config = SimConfig {
            addr: self.addr,
            read_write_key: self.read_write_key.unwrap_or_else(random_key),
            read_only_key: self.read_only_key.unwrap_or_else(random_key),
            rate_limit: (self.rate_limit > 0).then_some(RateLimit {
                requests: self.rate_limit,
                per: RateLimit::LEVEL.per,
            }),
            created_status,
            webhooks: match (self.webhook, self.webhook_secret) {
                (Some(url), Some(secret)) => vec![WebhookTarget { url, secret }],
                _ => Vec::new(),
            },
            write_delay: std::time::Duration::from_millis(self.write_delay_ms),
            variants,
        };
        let sim = Simulator::start(config, tenant).await?;
        println!("Level simulator listening on {}", sim.base_url());
        println!("  read-write key: {}", sim.read_write_key());
        println!("  read-only key:  {}", sim.read_only_key());
        println!(
            "Try: curl -H 'Authorization: {}' {}/v2/devices?limit=2",
            sim.read_only_key(),
            sim.base_url()
        );
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        sim.stop().await;
        Ok(ExitStatus::Success)
    }
}

fn load_fixture(path: &std::path::Path) -> anyhow::Result<Tenant> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read fixture {}", path.display()))?;
    let fixture: Fixture = serde_json::from_str(&text)
        .with_context(|| format!("fixture {} is not valid", path.display()))?;
    Tenant::from_fixture(fixture).map_err(|e| anyhow::anyhow!("fixture {}: {e}", path.display()))
}
