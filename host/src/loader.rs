//! From configuration to running parts: the one way `run`, `check` and
//! `serve` load an installed plugin and build the Level client of a key.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use level_api::{ApiKey, ClientConfig, ClientError, KeyAccess, LevelClient, RateBudget};
use levelhost_packages::installed::{self, InstalledError, PluginSource};
use levelhost_packages::trust::{TrustPolicy, Vetting};
use levelhost_runtime::engine::LoadedPlugin;
use levelhost_runtime::error::HostError;
use levelhost_runtime::runner::PluginRunner;
use levelhost_serve::console::ConsoleOptions;
use levelhost_serve::history::PgRateBudgets;
use levelhost_serve::{Events, Handle, ServeError, ServeOptions, ServedPlugin, Service};

use crate::config::{Access, HostConfig, KeyConfig, PluginConfig, SecretError, load_secret};

/// Why a configured plugin, key or service could not be put to use.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The gateway's settings cannot be used (its address, its certificate).
    #[error("{0}")]
    Gateway(String),
    /// The plugin's component could not be read or verified.
    #[error(transparent)]
    Installed(#[from] InstalledError),
    /// A plugin's component could not be read, verified or compiled; `at`
    /// is where the config names it.
    #[error("{at}")]
    Component {
        /// `levelhost.toml:40:13`.
        at: String,
        /// Why.
        #[source]
        source: Box<LoadError>,
    },
    /// The component could not be compiled, or does not fit its grant.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A key or a webhook secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A connection could not be set up.
    #[error(transparent)]
    Connection(#[from] crate::config::ConnectionLoadError),
    /// A plugin names a key the configuration does not have.
    #[error("plugin {plugin}: unknown key {key}")]
    UnknownKey {
        /// The plugin.
        plugin: String,
        /// The key it names.
        key: String,
    },
    /// A Level client could not be built.
    #[error("key {key}: cannot build its Level client")]
    Client {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// `serve` could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The audit log cannot be opened.
    #[error("cannot open the audit log")]
    Audit(#[source] Box<crate::config::AuditOpenError>),
    /// The shared history (where the keys' budgets are kept) cannot be used.
    #[error(transparent)]
    History(#[from] levelhost_serve::history::HistoryError),
    /// A new or changed key did not pass its check at Level, so the reload was refused.
    #[error("key {key}: the new key was refused: {why}")]
    KeyRefused {
        /// The key's name.
        key: String,
        /// Why.
        why: String,
    },
    /// The console's token file could not be made.
    #[error("cannot keep the console token in {}", path.display())]
    ConsoleToken {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The console's options: its token from its source, or a random one kept
/// in `levelhost-console-token` beside the history (made once, owner-only).
fn console_options(config: &HostConfig) -> Result<Option<ConsoleOptions>, LoadError> {
    let console = &config.console;
    if !console.enabled {
        return Ok(None);
    }
    let token = match &console.token {
        Some(source) => load_secret(source, "console token")?,
        None => {
            let path = config
                .serve
                .database
                .parent()
                .unwrap_or_else(|| std::path::Path::new("."))
                .join("levelhost-console-token");
            let kept = |source| LoadError::ConsoleToken {
                path: path.clone(),
                source,
            };
            match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
                _ => {
                    let token: String = rand::random::<[u8; 24]>()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    let kept_token = keep_once(&path, &token).map_err(kept)?;
                    if kept_token == token {
                        tracing::info!(file = %path.display(), "made a console token");
                    }
                    kept_token
                }
            }
        }
    };
    let metrics_token = match &console.metrics_token {
        Some(source) => Some(load_secret(source, "console metrics_token")?),
        None => None,
    };
    Ok(Some(ConsoleOptions {
        addr: console.addr.clone(),
        token,
        metrics_token,
    }))
}

/// Keeps `text` in `path` (owner-only) unless another process kept its own
/// there first, and returns what the file holds. The file appears whole or
/// not at all (written beside it, then linked into place, which fails if it
/// exists), so two `serve`s starting at once agree on one token.
fn keep_once(path: &std::path::Path, text: &str) -> std::io::Result<String> {
    use std::io::Write as _;
    let draft = path.with_extension(format!(
        "{}.{:08x}.new",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&draft).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    });
    let kept = written.and_then(|()| match std::fs::hard_link(&draft, path) {
        Ok(()) => Ok(text.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match std::fs::read_to_string(path)?.trim() {
                // Left empty by a crash (or a person): replaced whole.
                "" => std::fs::rename(&draft, path).map(|()| text.to_owned()),
                token => Ok(token.to_owned()),
            }
        }
        Err(e) => Err(e),
    });
    let _ = std::fs::remove_file(&draft);
    kept
}

/// Loads a plugin installed in the config: its component read and verified
/// ([`installed::verified_component`]) and compiled from those very bytes.
/// Imports its grant does not cover do not stop it (their calls answer
/// `denied`); [`PluginRunner::ungranted_imports`] names them for a warning.
pub fn load_installed(
    runner: &PluginRunner,
    plugin: &PluginConfig,
    trust: &TrustPolicy,
) -> Result<(LoadedPlugin, Vetting), LoadError> {
    let at = |e: LoadError| LoadError::Component {
        at: plugin.source_at.clone(),
        source: Box::new(e),
    };
    let (bytes, vetting) =
        installed::verified_component(&plugin.name, &plugin.source, &plugin.manifest_digest, trust)
            .map_err(|e| at(e.into()))?;
    let loaded = runner
        .load(&plugin.name, &bytes)
        .map_err(|e| at(e.into()))?;
    Ok((loaded, vetting))
}

/// The Level client of key `name`: the config's base URL and timeout, and
/// the key's rate budget. Every plugin on a key shares one client, and so
/// one budget, within a process.
pub fn client(config: &HostConfig, name: &str) -> Result<LevelClient, LoadError> {
    let key = config.keys.get(name).ok_or_else(|| LoadError::UnknownKey {
        plugin: String::new(),
        key: name.to_owned(),
    })?;
    client_with(config, name, key, key.load()?)
}

/// The Level client of `config`'s key `name` (`key`), with its value `secret` already read.
fn client_with(
    config: &HostConfig,
    name: &str,
    key: &KeyConfig,
    secret: ApiKey,
) -> Result<LevelClient, LoadError> {
    let mut client_config = ClientConfig::new(&config.base_url);
    client_config.timeout = config.timeout;
    client_config.key_label = Some(format!("key {name} ({})", key.source));
    if key.rate_limit_per_minute > 0 {
        let mut budget = RateBudget::new(key.rate_limit_per_minute, key.rate_burst);
        if let Some(shared) = &config.records.shared {
            let store = PgRateBudgets::new(&shared.url, shared.password()?.as_deref())?;
            budget = budget.shared(Arc::new(store), name);
        }
        client_config.budget = Some(Arc::new(budget));
    }
    LevelClient::new(client_config, secret).map_err(|source| LoadError::Client {
        key: name.to_owned(),
        source,
    })
}

/// The Level client of each key of a config, with what it was built from,
/// so a reload can tell which keys changed.
#[derive(Clone, Default)]
pub struct Clients {
    by_key: BTreeMap<String, (String, LevelClient)>,
    /// The connections to other systems, their secrets read.
    pub connections: Arc<levelhost_runtime::outbound::Connections>,
}

impl Clients {
    /// A client per key of `config`. With `before` (a reload), a key built
    /// from the same value and settings keeps its client (and so its rate
    /// budget); a new or changed one is first probed at Level
    /// ([`LevelClient::probe_access`]) and refused unless it works with the
    /// access the config declares.
    pub async fn of(config: &HostConfig, before: Option<&Clients>) -> Result<Self, LoadError> {
        let mut by_key = BTreeMap::new();
        for (name, key) in &config.keys {
            let value = load_secret(&key.source, &format!("key {name}"))?;
            let fingerprint = levelhost_core::digest(
                format!(
                    "{}\n{}\n{}\n{}\n{value}",
                    config.base_url, key.rate_limit_per_minute, key.rate_burst, key.source
                )
                .as_bytes(),
            );
            let kept = before
                .and_then(|b| b.by_key.get(name))
                .filter(|(old, _)| *old == fingerprint);
            let built = match kept {
                Some((_, client)) => client.clone(),
                None => {
                    let built = client_with(config, name, key, ApiKey::new(value))?;
                    if before.is_some() {
                        verify(name, key.access, &built).await?;
                    }
                    built
                }
            };
            by_key.insert(name.clone(), (fingerprint, built));
        }
        let connections = Arc::new(config.load_connections()?);
        Ok(Self {
            by_key,
            connections,
        })
    }

    fn get(&self, key: &str) -> Option<LevelClient> {
        self.by_key.get(key).map(|(_, c)| c.clone())
    }

    /// The gateway's clients of `config`, each on the Level client of its
    /// key (the one the plugins on that key share), and the values of the
    /// real Level keys, which the gateway refuses on sight. A client without
    /// a key yet is left out.
    pub fn gateway(
        &self,
        config: &HostConfig,
    ) -> Result<(Vec<levelhost_gateway::ClientSpec>, Vec<String>), LoadError> {
        let mut specs = Vec::new();
        for client in config.clients.values() {
            let Some(key) = client.key_hash()? else {
                tracing::warn!(
                    "client {} has no client_key yet (levelhost client key {}): refused until it has",
                    client.name,
                    client.name
                );
                continue;
            };
            let level = self.get(&client.key).ok_or_else(|| LoadError::UnknownKey {
                plugin: format!("client {}", client.name),
                key: client.key.clone(),
            })?;
            specs.push(levelhost_gateway::ClientSpec {
                name: client.name.clone(),
                grant: client.grant.clone(),
                key,
                expires: client.expires,
                requests_per_minute: client.requests_per_minute,
                requests_per_hour: client.requests_per_hour,
                level,
            });
        }
        let mut level_keys = Vec::new();
        for (name, key) in &config.keys {
            level_keys.push(load_secret(&key.source, &format!("key {name}"))?);
        }
        Ok((specs, level_keys))
    }
}

/// Asks Level whether a new key works with the access the config declares.
async fn verify(name: &str, declared: Access, client: &LevelClient) -> Result<(), LoadError> {
    let refuse = |why: String| LoadError::KeyRefused {
        key: name.to_owned(),
        why,
    };
    let access = client
        .probe_access()
        .await
        .map_err(|e| refuse(levelhost_core::Chain(&e).to_string()))?;
    let expected = match declared {
        Access::ReadOnly => KeyAccess::ReadOnly,
        Access::ReadWrite => KeyAccess::ReadWrite,
    };
    if access != expected {
        return Err(refuse(format!(
            "Level treats it as {access}, the config declares {expected}"
        )));
    }
    Ok(())
}

/// Starts `serve` for every plugin of `config`, with `runner` (one from the
/// config's pool settings when `None`).
pub async fn serve(config: HostConfig, runner: Option<PluginRunner>) -> Result<Handle, LoadError> {
    let runner = match runner {
        Some(runner) => runner,
        None => PluginRunner::with_options(None, Some(config.pooling()))?,
    };
    let clients = Clients::of(&config, None).await?;
    serve_with(config, runner, &clients).await
}

/// Starts `serve` for every plugin of `config`, with `runner` and the keys' `clients`.
pub async fn serve_with(
    config: HostConfig,
    runner: PluginRunner,
    clients: &Clients,
) -> Result<Handle, LoadError> {
    let plugins = served_plugins(&config, &runner, clients)?;
    let options = ServeOptions {
        addr: config.serve.addr.clone(),
        database: config.serve.database.clone(),
        history: config.records.history()?,
        lease: config.records.lease(),
        audit: config
            .records
            .open_audit()
            .await
            .map_err(|e| LoadError::Audit(Box::new(e)))?,
        shutdown_grace: config.serve.shutdown_grace,
        max_body_bytes: config.serve.max_body_bytes,
        read_timeout: config.serve.read_timeout,
        max_connections: config.serve.max_connections,
        console: console_options(&config)?,
        gateway: gateway_options(&config, clients).await?,
    };
    Ok(Service::start(options, plugins, runner).await?)
}

/// The gateway `serve` runs when `[gateway] serve = true`, with its clients
/// on the keys' `clients` and its audit in the config's audit log.
async fn gateway_options(
    config: &HostConfig,
    clients: &Clients,
) -> Result<Option<levelhost_serve::GatewayOptions>, LoadError> {
    if !config.gateway.in_serve {
        return Ok(None);
    }
    config.gateway.listen_addr().map_err(LoadError::Gateway)?;
    let tls = match &config.gateway.tls {
        Some((cert, key)) => Some(levelhost_gateway::tls::Certificates::new(
            levelhost_gateway::tls::server_config(cert, key)
                .map_err(|e| LoadError::Gateway(e.to_string()))?,
        )),
        None => None,
    };
    let (specs, level_keys) = clients.gateway(config)?;
    let audit = config
        .records
        .open_audit()
        .await
        .map_err(|e| LoadError::Audit(Box::new(e)))?;
    let gateway = Arc::new(levelhost_gateway::Gateway::new(
        specs,
        &level_keys.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(audit),
    ));
    Ok(Some(levelhost_serve::GatewayOptions {
        gateway,
        addr: config.gateway.addr.clone(),
        tls,
    }))
}

/// Reloads a running `serve` from `config` (read again): keys (a new or
/// changed one is verified first), grants and plugins. Anything wrong
/// refuses the whole reload, and the old configuration stays in use.
/// Returns the clients now in use, for the next reload.
pub async fn reload(
    handle: &Handle,
    config: &HostConfig,
    runner: &PluginRunner,
    before: &Clients,
) -> Result<Clients, LoadError> {
    let clients = Clients::of(config, Some(before)).await?;
    let plugins = served_plugins(config, runner, &clients)?;
    let gateway = match handle.gateway() {
        Some(_) => {
            let tls = match (&config.gateway.tls, handle.gateway_tls()) {
                (Some((cert, key)), Some(_)) => Some(
                    levelhost_gateway::tls::server_config(cert, key)
                        .map_err(|e| LoadError::Gateway(e.to_string()))?,
                ),
                _ => None,
            };
            Some((clients.gateway(config)?, tls))
        }
        None => None,
    };
    handle.reload(plugins);
    if let (Some(running), Some(((specs, level_keys), tls))) = (handle.gateway(), gateway) {
        running.replace(
            specs,
            &level_keys.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        if let (Some(certificates), Some(tls)) = (handle.gateway_tls(), tls) {
            certificates.replace(tls);
        }
    }
    Ok(clients)
}

/// Every plugin of `config`, loaded and verified, with its key's client.
fn served_plugins(
    config: &HostConfig,
    runner: &PluginRunner,
    clients: &Clients,
) -> Result<Vec<ServedPlugin>, LoadError> {
    let mut plugins = Vec::new();
    // Plugins of one component (one per customer, each with its own grant)
    // read and verify it once.
    let mut read: HashMap<(&PluginSource, &str), (LoadedPlugin, Vetting)> = HashMap::new();
    for (name, plugin) in &config.plugins {
        let client = clients
            .get(&plugin.key)
            .ok_or_else(|| LoadError::UnknownKey {
                plugin: name.clone(),
                key: plugin.key.clone(),
            })?;
        let (loaded, vetting) = match read.entry((&plugin.source, &plugin.manifest_digest)) {
            Entry::Occupied(same) => same.get().clone(),
            Entry::Vacant(new) => new
                .insert(load_installed(runner, plugin, &config.trust)?)
                .clone(),
        };
        let (mut served, warnings) = serve_loaded(
            plugin,
            loaded.named(&plugin.name),
            vetting,
            client,
            clients.connections.clone(),
        );
        tracing::info!(plugin = %name, digest = %served.plugin.digest, "loaded, {}", served.vetting);
        for warning in warnings {
            tracing::warn!(plugin = %name, "{warning}");
        }
        served.schedules = plugin.schedules.clone();
        served.events = match &plugin.events {
            Some(events) => Some(Events {
                secret: load_secret(&events.secret, &format!("plugin {name}: events"))?,
                types: events.types.clone(),
            }),
            None => None,
        };
        plugins.push(served);
    }
    Ok(plugins)
}

/// A configured plugin, loaded and verified, with `client`, as a run by hand
/// needs it: no schedules and no events (those are `serve`'s). Returns it
/// with the warnings about imports its grant does not cover.
pub fn served_plugin(
    runner: &PluginRunner,
    plugin: &PluginConfig,
    trust: &TrustPolicy,
    client: LevelClient,
    connections: Arc<levelhost_runtime::outbound::Connections>,
) -> Result<(ServedPlugin, Vec<String>), LoadError> {
    let (loaded, vetting) = load_installed(runner, plugin, trust)?;
    Ok(serve_loaded(plugin, loaded, vetting, client, connections))
}

/// `plugin` as [`served_plugin`] gives it, its component already loaded.
fn serve_loaded(
    plugin: &PluginConfig,
    loaded: LoadedPlugin,
    vetting: Vetting,
    client: LevelClient,
    connections: Arc<levelhost_runtime::outbound::Connections>,
) -> (ServedPlugin, Vec<String>) {
    let warnings = PluginRunner::ungranted_imports(&loaded, &plugin.grant);
    (
        ServedPlugin {
            name: plugin.name.clone(),
            version: plugin.manifest.version.clone(),
            plugin: loaded,
            client,
            key: plugin.key.clone(),
            vetting: vetting.to_string(),
            grant: plugin.grant.clone(),
            input: plugin.input.clone(),
            schedules: Vec::new(),
            events: None,
            approval: plugin.approval.clone(),
            connections,
        },
        warnings,
    )
}

#[cfg(test)]
mod tests {
    use super::keep_once;

    #[test]
    fn processes_making_the_console_token_at_once_all_keep_the_first_one() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("levelhost-console-token");
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let makers: Vec<_> = (0..4)
                .map(|n| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        keep_once(&path, &format!("token-{n}")).unwrap()
                    })
                })
                .collect();
            let kept: Vec<String> = makers.into_iter().map(|m| m.join().unwrap()).collect();
            let file = std::fs::read_to_string(&path).unwrap();
            assert!(
                kept.iter().all(|token| *token == file.trim()),
                "round {round}: {kept:?} but the file holds {file:?}"
            );
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(left.len(), 1, "round {round}: drafts left behind");
        }
    }

    #[test]
    fn an_empty_token_file_is_replaced_and_a_kept_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("levelhost-console-token");
        std::fs::write(&path, "").unwrap();
        assert_eq!(keep_once(&path, "new").unwrap(), "new");
        assert_eq!(keep_once(&path, "other").unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
