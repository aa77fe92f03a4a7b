//! A Level API simulator: a real HTTP server on loopback that answers the 30
//! operations of Level's v2 API the way Level does (reference §11): the raw
//! key in `Authorization`, a read-write and a read-only key, cursor paging
//! with limits 1 to 100, bare objects on show, `{"error": ...}` bodies with
//! 400/401/403/404/422, and a per-key rate limit answered with 429 and
//! `Retry-After`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), level_sim::SimError> {
//! use level_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default(), Simulator::seeded()).await?;
//! println!("Level simulator on {} (key {})", sim.base_url(), sim.read_write_key());
//! # Ok(()) }
//! ```

pub mod events;
mod http;
pub mod keys;
pub mod seed;
pub mod tenant;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use self::events::{Delivery, WebhookTarget};
pub use self::tenant::{Fixture, FixtureError, SimError, Tenant};

/// What the simulator counts of the requests it gets.
#[derive(Debug, Default)]
struct Counters {
    /// Every request, answered or refused.
    received: std::sync::atomic::AtomicU64,
    /// Requests answered 429.
    rate_limited: std::sync::atomic::AtomicU64,
}

/// How many requests a key may make per window before it gets 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window (the bucket's size).
    pub requests: u32,
    /// The window over which the bucket refills completely.
    pub per: Duration,
}

impl RateLimit {
    /// Level's measured limit: about 100 requests a minute (reference §4).
    pub const LEVEL: RateLimit = RateLimit {
        requests: 100,
        per: Duration::from_secs(60),
    };
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// The read-and-write key.
    pub read_write_key: String,
    /// The read-only key: writes with it get 403.
    pub read_only_key: String,
    /// The per-key rate limit; `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// The status of a successful create: 201, or 200.
    pub created_status: u16,
    /// Where to deliver Level's webhook events (alerts, devices, groups).
    pub webhooks: Vec<WebhookTarget>,
    /// How long a write waits, after its change is made, before it is
    /// answered: a slow Level, whose writes land before their answers do.
    pub write_delay: Duration,
    /// Which way to behave where Level's behaviour is not confirmed.
    pub variants: Variants,
}

/// Behaviours the reference marks as unconfirmed (§11), switchable so a
/// plugin can be tested against each (`levelhost sim --variant`, a test
/// case's `variants`). The defaults are the reference's suggestions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Variants {
    /// `GET /v2/groups?parent_id=null`.
    pub null_parent: NullParent,
    /// A `starting_after` or `ending_before` that names no object.
    pub unknown_cursor: UnknownCursor,
    /// Creating or renaming a tag or custom field to a name in use.
    pub duplicate_name: DuplicateName,
}

/// What `parent_id=null` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NullParent {
    /// The root groups.
    #[default]
    RootGroups,
    /// Nothing: 404, as for an unknown parent.
    NotFound,
}

/// What an unknown cursor gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownCursor {
    /// 400 with an error naming the cursor.
    #[default]
    BadRequest,
    /// An empty last page.
    EmptyPage,
}

/// What a name already in use gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicateName {
    /// 422 `Name has already been taken`.
    #[default]
    Unprocessable,
    /// Accepted: two objects share the name.
    Accepted,
}

impl Variants {
    /// Sets one variant from `NAME=VALUE`, as `levelhost sim --variant` takes it
    /// (`null-parent=not-found`, `unknown-cursor=empty-page`,
    /// `duplicate-name=accepted`, and the defaults' names).
    pub fn set(&mut self, setting: &str) -> Result<(), VariantError> {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| VariantError::NotNameValue(setting.to_owned()))?;
        let mut table = serde_json::to_value(*self).unwrap_or_default();
        let slot = table
            .get_mut(name)
            .ok_or_else(|| VariantError::UnknownName(name.to_owned()))?;
        *slot = serde_json::Value::String(value.to_owned());
        *self = serde_json::from_value(table).map_err(|source| VariantError::UnknownValue {
            setting: setting.to_owned(),
            source,
        })?;
        Ok(())
    }
}

/// Why a `--variant` setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    /// It has no `=`.
    #[error("{0:?} is not NAME=VALUE")]
    NotNameValue(String),
    /// No variant has this name.
    #[error("unknown variant {0:?}; known: null-parent, unknown-cursor, duplicate-name")]
    UnknownName(String),
    /// The variant has no such value.
    #[error("no such value")]
    UnknownValue {
        /// The setting as given.
        setting: String,
        /// Which values there are.
        #[source]
        source: serde_json::Error,
    },
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            read_write_key: random_key(),
            read_only_key: random_key(),
            rate_limit: Some(RateLimit::LEVEL),
            created_status: 201,
            webhooks: Vec::new(),
            write_delay: Duration::ZERO,
            variants: Variants::default(),
        }
    }
}

/// A fresh 24-character key, like the ones Level issues.
pub fn random_key() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    config: SimConfig,
    tenant: Arc<Mutex<Tenant>>,
    events: Arc<events::Events>,
    counters: Arc<Counters>,
    keys: Arc<Mutex<keys::Keys>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// The built-in organization: nested groups, 60 devices on three platforms, tags, custom fields, alerts and one automation webhook.
    pub fn seeded() -> Tenant {
        seed::seed(seed::DEFAULT_DEVICE_COUNT, chrono::Utc::now())
    }

    /// The built-in organization with `devices` devices.
    pub fn seeded_with(devices: usize) -> Tenant {
        seed::seed(devices, chrono::Utc::now())
    }

    /// Binds `config.addr` and serves `tenant` until dropped or [`Simulator::stop`]ped.
    pub async fn start(config: SimConfig, tenant: Tenant) -> Result<Self, SimError> {
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|e| SimError::new(0, format!("cannot listen on {}: {e}", config.addr)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SimError::new(0, e.to_string()))?;
        let mut tenant = tenant;
        tenant.variants = config.variants;
        let tenant = Arc::new(Mutex::new(tenant));
        let events = Arc::new(events::Events::new(config.webhooks.clone()));
        let counters = Arc::new(Counters::default());
        let keys = Arc::new(Mutex::new(keys::Keys::new(
            &config.read_write_key,
            &config.read_only_key,
        )));
        let app = http::router(
            config.clone(),
            tenant.clone(),
            events.clone(),
            counters.clone(),
            keys.clone(),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!("Level simulator stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            config,
            tenant,
            events,
            counters,
            keys,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The organization's API keys (Level's Settings -> API Keys page):
    /// create, regenerate and delete them, as an administrator would.
    pub fn keys(&self) -> MutexGuard<'_, keys::Keys> {
        lock(&self.keys)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a client, such as `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The read-and-write key.
    pub fn read_write_key(&self) -> &str {
        &self.config.read_write_key
    }

    /// The read-only key.
    pub fn read_only_key(&self) -> &str {
        &self.config.read_only_key
    }

    /// The organization as it is now, for inspection.
    pub fn tenant(&self) -> MutexGuard<'_, Tenant> {
        lock(&self.tenant)
    }

    /// How many requests were answered 429 so far.
    pub fn rate_limited_count(&self) -> u64 {
        self.counters
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many HTTP requests the simulator has received, answered or refused.
    pub fn received_count(&self) -> u64 {
        self.counters
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every webhook delivery attempt so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.events.deliveries()
    }

    /// Enrolls a new device, as Level's agent does on a machine, and delivers `device_created`.
    pub fn enroll_device(
        &self,
        hostname: &str,
        group_id: Option<&str>,
    ) -> Result<level_api::model::Device, SimError> {
        let device = lock(&self.tenant).enroll_device(hostname, group_id)?;
        self.events.emit(
            "device_created",
            serde_json::to_value(&device).unwrap_or_default(),
        );
        Ok(device)
    }

    /// Raises an alert on a device and delivers `alert_active`, as Level does when a monitor fires.
    pub fn raise_alert(
        &self,
        device_id: &str,
        name: &str,
        severity: &str,
    ) -> Result<level_api::model::Alert, SimError> {
        let alert = lock(&self.tenant).raise_alert(device_id, name, severity)?;
        self.events.emit(
            "alert_active",
            serde_json::to_value(&alert).unwrap_or_default(),
        );
        Ok(alert)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Locks the tenant; a panic in another request does not poison the simulator for good.
fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
