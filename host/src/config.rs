//! `levelhost.toml`: Level's address, the API keys (by reference, never
//! inline) and each installed plugin's grant. See `examples/levelhost.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use level_api::ApiKey;
use levelhost_core::capability::{Capability, CapabilitySet};
use levelhost_core::grant::{Grant, Limits, Scopes, TagPatterns};
use levelhost_core::location::{FileError, Source};
use levelhost_core::manifest::PluginManifest;
use levelhost_core::plan::ApprovalPolicy;
pub use levelhost_packages::installed::PluginSource;
use levelhost_packages::trust::{PublicKey, TrustPolicy};
pub use levelhost_serve::{CatchUp, Overlap, Schedule};

/// The configuration file as written. Unknown fields are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    level: RawLevel,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    keys: BTreeMap<String, RawKey>,
    #[serde(default)]
    plugins: BTreeMap<String, Spanned<RawPlugin>>,
    #[serde(default)]
    serve: RawServe,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    console: RawConsole,
    #[serde(default)]
    history: RawHistory,
    #[serde(default)]
    connections: BTreeMap<String, Spanned<RawConnection>>,
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    clients: BTreeMap<String, Spanned<RawClient>>,
}

/// `[gateway]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    addr: Option<Spanned<String>>,
    #[serde(default)]
    allow_plain_http: bool,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    #[serde(default)]
    serve: bool,
}

/// `[clients.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    key: Spanned<String>,
    #[serde(default)]
    client_key: Option<Spanned<String>>,
    #[serde(default)]
    expires: Option<Spanned<String>>,
    #[serde(default)]
    capabilities: Vec<Spanned<String>>,
    #[serde(default)]
    scopes: RawScopes,
    #[serde(default)]
    requests_per_minute: u32,
    #[serde(default)]
    requests_per_hour: u32,
}

/// `[connections.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    url: Spanned<String>,
    #[serde(default)]
    auth: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    param: Option<String>,
    value: Option<Spanned<String>>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Spanned<String>>,
    scope: Option<String>,
    #[serde(default)]
    allow_private_network: bool,
}

/// Where a connection's URL comes from: written in the config, or (a
/// secret URL) read like a key.
#[derive(Debug, Clone)]
pub enum UrlFrom {
    /// Written in the config.
    Plain(String),
    /// A secret, read from its source.
    Secret(KeySource),
}

/// How the host authenticates to a connection, with its secrets by reference.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// Nothing.
    None,
    /// A bearer token.
    Bearer(KeySource),
    /// Basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: KeySource,
    },
    /// Headers with secret values.
    Headers(Vec<(String, KeySource)>),
    /// A query parameter.
    Query {
        /// Its name.
        param: String,
        /// Its value.
        value: KeySource,
    },
    /// OAuth 2.0 client credentials.
    OAuth2 {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: KeySource,
        /// The scope.
        scope: Option<String>,
    },
    /// The URL is the secret.
    SecretUrl,
}

/// A connection to another system, as configured (secrets by reference).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: UrlFrom,
    /// Its credential.
    pub auth: AuthConfig,
    /// Whether it may reach private and loopback addresses.
    pub allow_private_network: bool,
}

impl ConnectionConfig {
    /// Reads its secrets. The error says where it looked, never what it found.
    pub fn load(&self) -> Result<levelhost_runtime::outbound::ConnectionSpec, SecretError> {
        use levelhost_runtime::outbound::Credential;
        let what = format!("connection {}", self.name);
        let read = |s: &KeySource| load_secret(s, &what);
        let url = match &self.url {
            UrlFrom::Plain(url) => url.clone(),
            UrlFrom::Secret(source) => read(source)?,
        };
        let credential = match &self.auth {
            AuthConfig::None => Credential::None,
            AuthConfig::Bearer(token) => Credential::Bearer {
                token: read(token)?,
            },
            AuthConfig::Basic { username, password } => Credential::Basic {
                username: username.clone(),
                password: read(password)?,
            },
            AuthConfig::Headers(headers) => Credential::Headers(
                headers
                    .iter()
                    .map(|(name, source)| Ok((name.clone(), read(source)?)))
                    .collect::<Result<_, SecretError>>()?,
            ),
            AuthConfig::Query { param, value } => Credential::Query {
                param: param.clone(),
                value: read(value)?,
            },
            AuthConfig::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Credential::OAuth2 {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: read(client_secret)?,
                scope: scope.clone(),
            },
            AuthConfig::SecretUrl => Credential::SecretUrl,
        };
        Ok(levelhost_runtime::outbound::ConnectionSpec {
            name: self.name.clone(),
            url,
            credential,
            allow_private_network: self.allow_private_network,
        })
    }
}

/// `[connections.NAME]`: each connection's URL and credential, checked
/// where written (secrets by reference only).
fn parse_connections(
    source: &Source,
    raw: BTreeMap<String, Spanned<RawConnection>>,
) -> Result<BTreeMap<String, ConnectionConfig>, FileError> {
    let mut out = BTreeMap::new();
    for (name, spanned) in raw {
        let span = spanned.span();
        let raw = spanned.into_inner();
        let what = format!("connection {name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(source.error(
                Some(span),
                format!("{what}: a connection's name is the host plugins write in their URLs: lowercase letters, digits and -"),
            ));
        }
        let auth_name = raw
            .auth
            .as_ref()
            .map_or("none".to_owned(), |a| a.get_ref().clone());
        let auth_span = raw.auth.as_ref().map_or(span.clone(), |a| a.span());
        let secret = |field: &str,
                      value: &Option<Spanned<String>>|
         -> Result<KeySource, FileError> {
            match value {
                Some(v) => parse_source(source, &what, field, "secrets", v),
                None => Err(source.error(
                    Some(auth_span.clone()),
                    format!("{what}: auth = \"{auth_name}\" needs {field} = \"env:VARIABLE\" or \"file:PATH\""),
                )),
            }
        };
        let plain = |field: &str, value: &Option<String>| -> Result<String, FileError> {
            value.clone().ok_or_else(|| {
                source.error(
                    Some(auth_span.clone()),
                    format!("{what}: auth = \"{auth_name}\" needs {field}"),
                )
            })
        };
        let auth = match auth_name.as_str() {
            "none" => AuthConfig::None,
            "bearer" => AuthConfig::Bearer(secret("token", &raw.token)?),
            "basic" => AuthConfig::Basic {
                username: plain("username", &raw.username)?,
                password: secret("password", &raw.password)?,
            },
            "headers" => {
                if raw.headers.is_empty() {
                    return Err(source.error(
                        Some(auth_span),
                        format!("{what}: auth = \"headers\" needs headers = {{ Name = \"env:VARIABLE\", ... }}"),
                    ));
                }
                let mut headers = Vec::new();
                for (header, value) in &raw.headers {
                    if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        return Err(source.error(
                            Some(value.span()),
                            format!("{what}: {header:?} is not a header name"),
                        ));
                    }
                    headers.push((
                        header.clone(),
                        parse_source(source, &what, header, "secrets", value)?,
                    ));
                }
                AuthConfig::Headers(headers)
            }
            "query" => AuthConfig::Query {
                param: plain("param", &raw.param)?,
                value: secret("value", &raw.value)?,
            },
            "oauth2" => AuthConfig::OAuth2 {
                token_url: plain("token_url", &raw.token_url)?,
                client_id: plain("client_id", &raw.client_id)?,
                client_secret: secret("client_secret", &raw.client_secret)?,
                scope: raw.scope.clone(),
            },
            "secret-url" => AuthConfig::SecretUrl,
            other => {
                return Err(source.error(
                    Some(auth_span),
                    format!("{what}: auth = \"{other}\" is not one of none, bearer, basic, headers, query, oauth2, secret-url"),
                ));
            }
        };
        let url = if matches!(auth, AuthConfig::SecretUrl) {
            UrlFrom::Secret(parse_source(source, &what, "url", "secret URLs", &raw.url)?)
        } else {
            let text = raw.url.get_ref();
            levelhost_runtime::outbound::connection::check_url(text).map_err(|why| {
                source.error(Some(raw.url.span()), format!("{what}: {why}: {text:?}"))
            })?;
            UrlFrom::Plain(text.clone())
        };
        out.insert(
            name.clone(),
            ConnectionConfig {
                name,
                url,
                auth,
                allow_private_network: raw.allow_private_network,
            },
        );
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHistory {
    url: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    lease_secs: u64,
    audit: Option<Spanned<String>>,
}

impl Default for RawHistory {
    fn default() -> Self {
        Self {
            url: None,
            password: None,
            lease_secs: 10,
            audit: None,
        }
    }
}

/// A history in PostgreSQL (`[history] url`), shared by `serve` replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedHistory {
    /// `postgres://user@host:port/database`, without a password.
    pub url: String,
    /// Where the password comes from, if the server asks for one.
    pub password: Option<KeySource>,
    /// How long a replica may be silent before a survivor takes its runs as cut off.
    pub lease: Duration,
    /// Whether the audit is kept in the same database (`audit = "database"`,
    /// the default) rather than in each replica's file (`audit = "file"`).
    pub audit_in_database: bool,
}

impl SharedHistory {
    /// The password, read from its source now.
    pub fn password(&self) -> Result<Option<String>, SecretError> {
        self.password
            .as_ref()
            .map(|p| load_secret(p, "history password"))
            .transpose()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConsole {
    enabled: bool,
    addr: String,
    token: Option<Spanned<String>>,
    metrics_token: Option<Spanned<String>>,
}

impl Default for RawConsole {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: "127.0.0.1:8781".to_owned(),
            token: None,
            metrics_token: None,
        }
    }
}

/// The operator console of `serve` (`[console]`).
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Whether `serve` serves it (default: yes).
    pub enabled: bool,
    /// Where (default `127.0.0.1:8781`).
    pub addr: String,
    /// Where its token comes from; none: a random one kept in
    /// `levelhost-console-token` beside the history database.
    pub token: Option<KeySource>,
    /// Where a token that may read `/metrics` only comes from.
    pub metrics_token: Option<KeySource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    reviewers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    revoked: Vec<Spanned<String>>,
    #[serde(default)]
    allow_unsigned: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServe {
    addr: String,
    database: String,
    shutdown_grace_secs: u64,
    max_body_kb: u64,
    max_instances: u32,
    read_timeout_secs: u64,
    max_connections: usize,
}

impl Default for RawServe {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8780".to_owned(),
            database: "levelhost.db".to_owned(),
            shutdown_grace_secs: 30,
            max_body_kb: 256,
            max_instances: levelhost_runtime::engine::Pooling::default().instances,
            read_timeout_secs: 10,
            max_connections: 512,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: Spanned<String>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    input: Option<toml::Table>,
    #[serde(default)]
    overlap: Option<Spanned<String>>,
    #[serde(default)]
    catch_up: Option<Spanned<String>>,
    #[serde(default = "default_catch_up_window")]
    catch_up_window_secs: u64,
    #[serde(default)]
    jitter_secs: u64,
}

fn default_catch_up_window() -> u64 {
    3600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    secret: Spanned<String>,
    #[serde(default)]
    types: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    #[serde(default = "default_base_url")]
    base_url: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

impl Default for RawLevel {
    fn default() -> Self {
        Self {
            base_url: default_base_url(),
            timeout_secs: default_timeout(),
        }
    }
}

fn default_base_url() -> String {
    "https://api.level.io".to_owned()
}

fn default_timeout() -> u64 {
    30
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    source: Spanned<String>,
    access: Spanned<String>,
    #[serde(default = "default_rate")]
    rate_limit_per_minute: u32,
    #[serde(default)]
    rate_burst: Option<u32>,
}

/// Level's measured limit (reference §4): plugins sharing a key share this budget.
fn default_rate() -> u32 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    component: Option<Spanned<String>>,
    manifest: Option<String>,
    package: Option<Spanned<String>>,
    digest: Option<Spanned<String>>,
    key: Spanned<String>,
    #[serde(default)]
    capabilities: Vec<Spanned<String>>,
    #[serde(default)]
    scopes: RawScopes,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    input: Option<toml::Table>,
    #[serde(default)]
    schedules: Vec<RawSchedule>,
    #[serde(default)]
    events: Option<RawEvents>,
    #[serde(default)]
    approval: Option<ApprovalPolicy>,
    #[serde(default)]
    connections: BTreeMap<String, Spanned<levelhost_core::route::ConnectionGrant>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    groups: Option<Vec<Spanned<String>>>,
    tags: Option<Vec<Spanned<String>>>,
    custom_fields: Option<Vec<String>>,
    automations: Option<Vec<String>>,
}

/// What a key may do in Level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// View only.
    ReadOnly,
    /// View, create, update and delete.
    ReadWrite,
}

/// Where a key's (or another secret's) value comes from, and where the
/// config says so, so an error reading it later points at that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// The variable or file.
    pub from: SecretFrom,
    /// Where the reference is written: `levelhost.toml:12:10`.
    pub at: String,
}

/// An environment variable or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// An environment variable.
    Env(String),
    /// A file (its first line).
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    /// As written in the config: `env:NAME` or `file:PATH`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.from {
            SecretFrom::Env(name) => write!(f, "env:{name}"),
            SecretFrom::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// A named API key: where it comes from and what Level lets it do.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// The name in the config.
    pub name: String,
    /// Where the value is.
    pub source: KeySource,
    /// Its access level in Level.
    pub access: Access,
    /// Requests per minute every plugin using the key shares (0 = no client-side limit).
    pub rate_limit_per_minute: u32,
    /// How many of them may go at once (default: a minute's worth).
    pub rate_burst: u32,
}

/// How a plugin receives Level's webhook deliveries.
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// Where the webhook secret is.
    pub secret: KeySource,
    /// Event types it runs on; all when absent.
    pub types: Option<Vec<String>>,
}

/// `levelhost serve` settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the events endpoint and `/healthz` listen.
    pub addr: String,
    /// The run history database.
    pub database: PathBuf,
    /// How long shutdown waits for running plugins.
    pub shutdown_grace: Duration,
    /// Largest webhook body accepted.
    pub max_body_bytes: usize,
    /// Plugin instances that may be alive at once (the size of the instance pool).
    pub max_instances: u32,
    /// How long a client may take to send a request's headers, or its body.
    pub read_timeout: Duration,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
}

impl KeyConfig {
    /// Reads the key's value. The error says where it looked, never what it found.
    pub fn load(&self) -> Result<ApiKey, SecretError> {
        load_secret(&self.source, &format!("key {}", self.name)).map(ApiKey::new)
    }
}

/// An installed plugin: its component, manifest and grant.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The name in the config.
    pub name: String,
    /// Where its component comes from.
    pub source: PluginSource,
    /// Where the config names it (its `component` or `package` line):
    /// `levelhost.toml:40:13`, for errors found when it is read.
    pub source_at: String,
    /// `sha256:<hex>` of the manifest text read with the config, so a load
    /// can tell that the package it verifies is the one the config described.
    pub manifest_digest: String,
    /// The manifest.
    pub manifest: PluginManifest,
    /// Which key it uses.
    pub key: String,
    /// What it may do.
    pub grant: Grant,
    /// Its default input.
    pub input: serde_json::Value,
    /// Where each group scope entry is written, to point errors at it.
    pub group_locations: Vec<(String, FileError)>,
    /// Its schedules.
    pub schedules: Vec<Schedule>,
    /// Its Level events, if it takes them.
    pub events: Option<EventConfig>,
    /// When its plans wait for a person (`[plugins.NAME.approval]`).
    pub approval: Option<ApprovalPolicy>,
}

impl PluginConfig {
    /// The capabilities its manifest asks for that its grant does not give.
    /// They are not granted: the plugin runs with its grant, and calls that
    /// need them are denied, until the operator widens the grant.
    pub fn not_granted(&self) -> Vec<Capability> {
        self.manifest
            .capabilities
            .difference(&self.grant.capabilities)
            .copied()
            .collect()
    }

    /// The capabilities its grant gives that its manifest does not ask for:
    /// a grant wider than the plugin says it needs.
    pub fn beyond_manifest(&self) -> Vec<Capability> {
        self.grant
            .capabilities
            .difference(&self.manifest.capabilities)
            .copied()
            .collect()
    }

    /// A scope error, placed at the scope entry it is about when there is one.
    pub fn scope_error(
        &self,
        error: &levelhost_core::grant::ScopeError,
        config: &Path,
    ) -> FileError {
        use levelhost_core::grant::ScopeError;
        let named = match error {
            ScopeError::MissingGroup(name) | ScopeError::AmbiguousGroup(name, _) => Some(name),
            _ => None,
        };
        let located = named.and_then(|n| self.group_locations.iter().find(|(g, _)| g == n));
        let mut err = located.map(|(_, at)| at.clone()).unwrap_or(FileError {
            file: config.to_owned(),
            line: None,
            column: None,
            message: String::new(),
        });
        err.message = format!("plugin {}: {error}", self.name);
        err
    }
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditOpenError {
    /// The database password could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The database could not be reached.
    #[error(transparent)]
    Database(#[from] levelhost_serve::history::HistoryError),
    /// The file could not be opened.
    #[error(transparent)]
    File(#[from] levelhost_runtime::audit::AuditError),
}

/// Where a configuration keeps its records. `levelhost audit` and `runs`
/// read only these, so a plugin whose manifest is broken does not stop an
/// operator from reading what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPaths {
    /// The audit log file.
    pub audit: PathBuf,
    /// The run history database (SQLite), when there is no `[history] url`.
    pub database: PathBuf,
    /// The shared PostgreSQL history, when `[history] url` names one.
    pub shared: Option<SharedHistory>,
}

impl RecordPaths {
    /// How long a plugin's lease in the history lasts unless renewed (and a
    /// replica may be silent): `[history] lease_secs`, 10 s by default.
    pub fn lease(&self) -> Duration {
        self.shared
            .as_ref()
            .map_or(levelhost_serve::executor::DEFAULT_LEASE, |s| s.lease)
    }

    /// Reads the configuration file (all of it must be well-formed TOML of
    /// the right shape) without reading any plugin's manifest or package.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let source = Source::read(path)?;
        let raw: RawConfig = source.parse()?;
        Self::of(&source, &raw)
    }

    fn of(source: &Source, raw: &RawConfig) -> Result<Self, FileError> {
        let shared = match &raw.history.url {
            None => None,
            Some(url) => {
                let text = url.get_ref();
                let parsed = text
                    .strip_prefix("postgres://")
                    .or_else(|| text.strip_prefix("postgresql://"));
                let Some(rest) = parsed else {
                    return Err(source.error(
                        Some(url.span()),
                        "history: url must be postgres://user@host:port/database".to_owned(),
                    ));
                };
                let userinfo = rest.split(['/', '?']).next().unwrap_or_default();
                if userinfo
                    .split('@')
                    .next()
                    .is_some_and(|u| u.contains(':') && userinfo.contains('@'))
                {
                    return Err(source.error(
                        Some(url.span()),
                        "history: the url must not hold the password; write password = \"env:VARIABLE\" or \"file:PATH\"".to_owned(),
                    ));
                }
                let password = raw
                    .history
                    .password
                    .as_ref()
                    .map(|p| parse_source(source, "history", "password", "passwords", p))
                    .transpose()?;
                let audit_in_database = match &raw.history.audit {
                    None => true,
                    Some(place) => match place.get_ref().as_str() {
                        "database" => true,
                        "file" => false,
                        other => {
                            return Err(source.error(
                                Some(place.span()),
                                format!("history: audit = \"{other}\" is neither \"database\" nor \"file\""),
                            ));
                        }
                    },
                };
                Some(SharedHistory {
                    url: text.clone(),
                    password,
                    lease: Duration::from_secs(raw.history.lease_secs.max(2)),
                    audit_in_database,
                })
            }
        };
        Ok(Self {
            audit: source.resolve(raw.audit.path.as_deref().unwrap_or("levelhost-audit.jsonl")),
            database: source.resolve(&raw.serve.database),
            shared,
        })
    }

    /// Where the history is: PostgreSQL, its password read now, or the SQLite file.
    pub fn history(&self) -> Result<levelhost_serve::history::HistoryLocation, SecretError> {
        use levelhost_serve::history::HistoryLocation;
        Ok(match &self.shared {
            None => HistoryLocation::Sqlite(self.database.clone()),
            Some(shared) => HistoryLocation::Postgres {
                url: shared.url.clone(),
                password: shared.password()?,
            },
        })
    }

    /// Opens the audit log: the shared database's table, or the file.
    pub async fn open_audit(&self) -> Result<levelhost_runtime::audit::AuditLog, AuditOpenError> {
        use levelhost_runtime::audit::AuditLog;
        match &self.shared {
            Some(shared) if shared.audit_in_database => {
                let store = levelhost_serve::history::PgAudit::connect(
                    &shared.url,
                    shared.password()?.as_deref(),
                )
                .await?;
                Ok(AuditLog::with_store(std::sync::Arc::new(store)))
            }
            _ => Ok(AuditLog::open(&self.audit)?),
        }
    }

    /// Opens the history.
    pub async fn open_history(&self) -> anyhow::Result<levelhost_serve::history::History> {
        Ok(levelhost_serve::history::History::connect(&self.history()?).await?)
    }
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Level's base URL.
    pub base_url: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The audit log file.
    pub audit_path: PathBuf,
    /// Keys by name.
    pub keys: BTreeMap<String, KeyConfig>,
    /// Plugins by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// `levelhost serve` settings.
    pub serve: ServeConfig,
    /// Which packages may be installed and loaded.
    pub trust: TrustPolicy,
    /// Where the audit log and the history are.
    pub records: RecordPaths,
    /// The operator console.
    pub console: ConsoleConfig,
    /// Other systems plugins may be granted, by name.
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// `levelhost gateway` settings.
    pub gateway: GatewayConfig,
    /// The gateway's clients, by name.
    pub clients: BTreeMap<String, ClientConfig>,
}

/// `[gateway]`: where `levelhost gateway` listens.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The address, `127.0.0.1:8790` unless set.
    pub addr: String,
    /// Where `addr` is written (`levelhost.toml:12:8`), for errors about it.
    pub addr_at: String,
    /// Whether plain HTTP may listen on an address other than loopback.
    pub allow_plain_http: bool,
    /// HTTPS: the certificate chain and the private key (PEM files), re-read on SIGHUP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Whether `levelhost serve` runs the gateway too, on `addr`.
    pub in_serve: bool,
}

impl GatewayConfig {
    /// The address to listen on, refused (with where it is written) when it
    /// would carry clients' keys in plain HTTP off this machine unallowed.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, String> {
        let addr: std::net::SocketAddr = self.addr.parse().map_err(|_| {
            format!(
                "{}: [gateway] addr {:?} is not an address and port",
                self.addr_at, self.addr
            )
        })?;
        if self.tls.is_none() && !addr.ip().is_loopback() && !self.allow_plain_http {
            return Err(format!(
                "{}: [gateway] addr {addr} is not loopback: clients' keys would cross the network in plain HTTP. \
                 Give tls_cert and tls_key, put a TLS proxy in front and set allow_plain_http = true, or listen on 127.0.0.1",
                self.addr_at
            ));
        }
        Ok(addr)
    }
}

/// Where a client's key is known from: its hash, or a secret holding the key.
#[derive(Debug, Clone)]
pub enum ClientKeyFrom {
    /// `sha256:HEX`, as `levelhost client key` prints it.
    Hash(levelhost_gateway::KeyHash),
    /// `env:VARIABLE` or `file:PATH` holding the key itself.
    Secret(KeySource),
}

/// One `[clients.NAME]`: a script or tool's grant and key.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name, the principal of its audit records.
    pub name: String,
    /// The Level key the host uses for it.
    pub key: String,
    /// Its own key; none until `levelhost client key NAME` makes one (until
    /// then the client is refused).
    pub client_key: Option<ClientKeyFrom>,
    /// When its key stops working.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    /// What it may do (capabilities and scopes; limits per request).
    pub grant: Grant,
    /// Requests per minute (0: none of its own).
    pub requests_per_minute: u32,
    /// Requests per hour (0: none of its own).
    pub requests_per_hour: u32,
}

impl ClientConfig {
    /// The hash of its key (none yet), read from its secret if it is given by one.
    pub fn key_hash(&self) -> Result<Option<levelhost_gateway::KeyHash>, SecretError> {
        match &self.client_key {
            None => Ok(None),
            Some(ClientKeyFrom::Hash(hash)) => Ok(Some(*hash)),
            Some(ClientKeyFrom::Secret(source)) => {
                load_secret(source, &format!("client {}", self.name))
                    .map(|key| Some(levelhost_gateway::KeyHash::of(&key)))
            }
        }
    }
}

impl HostConfig {
    /// Reads and checks a configuration file. Every error names the file,
    /// the line and the problem. Keys are not read here, only checked for
    /// a well-formed source; [`HostConfig::check_keys`] reads them.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let source = Source::read(path)?;
        let raw: RawConfig = source.parse()?;
        let records = RecordPaths::of(&source, &raw)?;
        let keys = parse_keys(&source, raw.keys)?;
        let connections = parse_connections(&source, raw.connections)?;
        let clients = parse_clients(&source, raw.clients, &keys)?;
        let mut plugins = BTreeMap::new();
        for (name, spanned) in raw.plugins {
            let plugin = parse_plugin(&source, name, spanned, &keys, &connections)?;
            plugins.insert(plugin.name.clone(), plugin);
        }
        Ok(Self {
            path: path.to_owned(),
            base_url: parse_base_url(&source, raw.level.base_url)?,
            timeout: Duration::from_secs(raw.level.timeout_secs.max(1)),
            audit_path: records.audit.clone(),
            keys,
            plugins,
            serve: parse_serve(raw.serve, &records),
            trust: parse_trust(&source, raw.trust)?,
            records,
            console: parse_console(&source, &raw.console)?,
            gateway: parse_gateway(&source, raw.gateway)?,
            clients,
            connections,
        })
    }

    /// Every connection, its secrets read and its client built.
    pub fn load_connections(
        &self,
    ) -> Result<levelhost_runtime::outbound::Connections, ConnectionLoadError> {
        let mut specs = Vec::new();
        for connection in self.connections.values() {
            specs.push(connection.load()?);
        }
        Ok(levelhost_runtime::outbound::Connections::new(specs)?)
    }

    /// Reads every key, reporting the first that cannot be read.
    pub fn check_keys(&self) -> Result<(), SecretError> {
        for key in self.keys.values() {
            key.load()?;
        }
        Ok(())
    }

    /// The instance pool `levelhost serve` runs its plugins from: room for
    /// `max_instances`, each memory up to the largest `memory_mb` granted.
    pub fn pooling(&self) -> levelhost_runtime::engine::Pooling {
        levelhost_runtime::engine::Pooling {
            instances: self.serve.max_instances,
            max_memory_mb: self
                .plugins
                .values()
                .map(|p| p.grant.limits.memory_mb)
                .max()
                .unwrap_or(Limits::default().memory_mb),
        }
    }

    /// The plugin called `name`.
    pub fn plugin(&self, name: &str) -> Result<&PluginConfig, UnknownPlugin> {
        self.plugins.get(name).ok_or_else(|| UnknownPlugin {
            config: self.path.clone(),
            name: name.to_owned(),
            installed: self.plugins.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

/// `[keys]`: each key's source (checked, not read) and access.
fn parse_keys(
    source: &Source,
    raw_keys: BTreeMap<String, RawKey>,
) -> Result<BTreeMap<String, KeyConfig>, FileError> {
    let mut keys = BTreeMap::new();
    for (name, key) in raw_keys {
        let parsed = parse_source(
            source,
            &format!("key {name}"),
            "source",
            "keys",
            &key.source,
        )?;
        let access = match key.access.get_ref().as_str() {
            "read-only" => Access::ReadOnly,
            "read-write" => Access::ReadWrite,
            other => {
                return Err(source.error(
                    Some(key.access.span()),
                    format!("key {name}: access must be read-only or read-write, not {other:?}"),
                ));
            }
        };
        keys.insert(
            name.clone(),
            KeyConfig {
                name,
                source: parsed,
                access,
                rate_limit_per_minute: key.rate_limit_per_minute,
                rate_burst: key.rate_burst.unwrap_or(key.rate_limit_per_minute),
            },
        );
    }

    Ok(keys)
}

/// One `[plugins.NAME]`: its key, grant, source, manifest, input, schedules,
/// events and approval policy, each checked where it is written.
fn parse_plugin(
    source: &Source,
    name: String,
    spanned: Spanned<RawPlugin>,
    keys: &BTreeMap<String, KeyConfig>,
    connections: &BTreeMap<String, ConnectionConfig>,
) -> Result<PluginConfig, FileError> {
    let plugin_span = spanned.span();
    let raw_plugin = spanned.into_inner();
    let key_name = raw_plugin.key.get_ref();
    let capabilities = parse_capabilities(
        source,
        &format!("plugin {name}"),
        &raw_plugin.key,
        &raw_plugin.capabilities,
        keys,
    )?;
    let (plugin_source, manifest_path) = plugin_source(source, &name, &raw_plugin, &plugin_span)?;
    let source_at = source.place(
        raw_plugin
            .component
            .as_ref()
            .or(raw_plugin.package.as_ref())
            .map_or_else(|| plugin_span.clone(), Spanned::span),
    );
    let manifest_source = Source::read(&manifest_path)?;
    let manifest = PluginManifest::parse(&manifest_path, &manifest_source.text)?;
    let manifest_digest = levelhost_core::digest(manifest_source.text.as_bytes());
    let (scopes, group_locations) =
        parse_scopes(source, &format!("plugin {name}"), raw_plugin.scopes)?;
    raw_plugin.limits.check().map_err(|e| {
        let at = key_span(&source.text, &["plugins", name.as_str(), "limits", e.key])
            .unwrap_or_else(|| plugin_span.clone());
        source.error(Some(at), format!("plugin {name}: limits: {e}"))
    })?;
    let input = match raw_plugin.input {
        Some(table) => serde_json::to_value(table).map_err(|e| {
            source.error(
                Some(plugin_span.clone()),
                format!("plugin {name}: input: {e}"),
            )
        })?,
        None => serde_json::json!({}),
    };
    manifest.check_input(&input).map_err(|e| {
        source.error(
            Some(plugin_span.clone()),
            format!("plugin {name}: input does not match the manifest's schema: {e}"),
        )
    })?;
    let mut schedules = Vec::new();
    for raw_schedule in raw_plugin.schedules {
        schedules.push(parse_schedule(source, &name, raw_schedule)?);
    }
    let events = match raw_plugin.events {
        None => None,
        Some(ev) => Some(EventConfig {
            secret: parse_source(
                source,
                &format!("plugin {name}: events"),
                "secret",
                "secrets",
                &ev.secret,
            )?,
            types: ev.types,
        }),
    };
    if let Some(policy) = &raw_plugin.approval
        && policy.ttl_secs == 0
    {
        let at = key_span(
            &source.text,
            &["plugins", name.as_str(), "approval", "ttl_secs"],
        )
        .unwrap_or_else(|| plugin_span.clone());
        return Err(source.error(
            Some(at),
            format!("plugin {name}: approval: ttl_secs must be at least 1"),
        ));
    }
    let mut granted = levelhost_core::route::Connections::new();
    for (connection, routes) in raw_plugin.connections {
        if !connections.contains_key(&connection) {
            return Err(source.error(
                Some(routes.span()),
                format!(
                    "plugin {name}: connection {connection:?} is not defined under [connections] (defined: {})",
                    connections.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        granted.insert(connection, routes.into_inner());
    }
    let grant = Grant {
        plugin: name.clone(),
        connections: granted,
        capabilities,
        scopes,
        limits: raw_plugin.limits,
    };
    Ok(PluginConfig {
        name: name.clone(),
        source: plugin_source,
        source_at,
        manifest_digest,
        manifest,
        key: key_name.clone(),
        grant,
        input,
        group_locations,
        schedules,
        events,
        approval: raw_plugin.approval,
    })
}

/// `[gateway]`.
fn parse_gateway(source: &Source, raw: RawGateway) -> Result<GatewayConfig, FileError> {
    let (addr, addr_at) = match raw.addr {
        Some(addr) => {
            let at = source.place(addr.span());
            (addr.into_inner(), at)
        }
        None => (
            "127.0.0.1:8790".to_owned(),
            source.path.display().to_string(),
        ),
    };
    let tls = match (raw.tls_cert, raw.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            source.resolve(cert.get_ref()),
            source.resolve(key.get_ref()),
        )),
        (Some(one), None) | (None, Some(one)) => {
            return Err(source.error(
                Some(one.span()),
                "gateway: give both tls_cert and tls_key (PEM files), or neither",
            ));
        }
    };
    Ok(GatewayConfig {
        addr,
        addr_at,
        allow_plain_http: raw.allow_plain_http,
        tls,
        in_serve: raw.serve,
    })
}

/// `[clients]`: each client's key, grant, expiry and rates, checked where written.
fn parse_clients(
    source: &Source,
    raw: BTreeMap<String, Spanned<RawClient>>,
    keys: &BTreeMap<String, KeyConfig>,
) -> Result<BTreeMap<String, ClientConfig>, FileError> {
    let mut clients = BTreeMap::new();
    for (name, spanned) in raw {
        let raw = spanned.into_inner();
        let who = format!("client {name}");
        let capabilities = parse_capabilities(source, &who, &raw.key, &raw.capabilities, keys)?;
        let (scopes, _) = parse_scopes(source, &who, raw.scopes)?;
        let client_key = match &raw.client_key {
            None => None,
            Some(written) if written.get_ref().starts_with("sha256:") => {
                Some(ClientKeyFrom::Hash(written.get_ref().parse().map_err(
                    |e| source.error(Some(written.span()), format!("{who}: client_key: {e}")),
                )?))
            }
            Some(written) => Some(ClientKeyFrom::Secret(parse_source(
                source,
                &who,
                "client_key",
                "client keys",
                written,
            )?)),
        };
        let expires = match &raw.expires {
            None => None,
            Some(text) => Some(parse_expiry(text.get_ref()).ok_or_else(|| {
                source.error(
                    Some(text.span()),
                    format!(
                        "{who}: expires must be a date (2027-06-30) or a time (2027-06-30T12:00:00Z), not {:?}",
                        text.get_ref()
                    ),
                )
            })?),
        };
        let grant = Grant {
            plugin: who.clone(),
            connections: Default::default(),
            capabilities,
            scopes,
            limits: Limits::default(),
        };
        clients.insert(
            name.clone(),
            ClientConfig {
                name,
                key: raw.key.into_inner(),
                client_key,
                expires,
                grant,
                requests_per_minute: raw.requests_per_minute,
                requests_per_hour: raw.requests_per_hour,
            },
        );
    }
    Ok(clients)
}

/// A client key's expiry: a day (its start, UTC) or an RFC 3339 time.
fn parse_expiry(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The Level key a plugin or client names (`who`: `plugin NAME`, `client
/// NAME`) and the capabilities it is given, each checked where it is
/// written: a write needs a read-write key.
fn parse_capabilities(
    source: &Source,
    who: &str,
    key_name: &Spanned<String>,
    raw: &[Spanned<String>],
    keys: &BTreeMap<String, KeyConfig>,
) -> Result<CapabilitySet, FileError> {
    let key = keys.get(key_name.get_ref()).ok_or_else(|| {
        source.error(
            Some(key_name.span()),
            format!(
                "{who}: key {:?} is not defined under [keys] (defined: {})",
                key_name.get_ref(),
                keys.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let mut capabilities = CapabilitySet::new();
    for cap in raw {
        let parsed: Capability =
            cap.get_ref()
                .parse()
                .map_err(|e: levelhost_core::capability::UnknownCapability| {
                    source.error(Some(cap.span()), format!("{who}: {e}"))
                })?;
        if parsed.is_write() && key.access == Access::ReadOnly {
            return Err(source.error(
                Some(cap.span()),
                format!(
                    "{who}: {parsed} needs a read-write key, but key {} is read-only",
                    key_name.get_ref()
                ),
            ));
        }
        capabilities.insert(parsed);
    }
    Ok(capabilities)
}

/// A plugin's or client's scopes: each tag pattern checked where it is
/// written, and where each group is named (for the error when Level has no
/// such group).
fn parse_scopes(
    source: &Source,
    who: &str,
    raw: RawScopes,
) -> Result<(Scopes, Vec<(String, FileError)>), FileError> {
    let mut tag_patterns = Vec::new();
    for pattern in raw.tags.iter().flatten() {
        levelhost_core::grant::tag_pattern(pattern.get_ref())
            .map_err(|e| source.error(Some(pattern.span()), format!("{who}: {e}")))?;
        tag_patterns.push(pattern.get_ref().clone());
    }
    let group_locations = raw
        .groups
        .iter()
        .flatten()
        .map(|g| {
            (
                g.get_ref().clone(),
                source.error(Some(g.span()), String::new()),
            )
        })
        .collect();
    let scopes = Scopes {
        groups: raw
            .groups
            .map(|g| g.into_iter().map(Spanned::into_inner).collect()),
        tags: match raw.tags {
            // Each pattern was checked at its place above; all compiled once, here.
            Some(_) => Some(
                TagPatterns::parse(tag_patterns)
                    .map_err(|e| source.error(None, format!("{who}: scopes.tags: {e}")))?,
            ),
            None => None,
        },
        custom_fields: raw.custom_fields,
        automations: raw.automations,
    };
    Ok((scopes, group_locations))
}

/// `[level] base_url`, checked.
fn parse_base_url(source: &Source, url: String) -> Result<String, FileError> {
    if let Err(e) = level_api::base_url(&url) {
        let at = key_span(&source.text, &["level", "base_url"]);
        return Err(source.error(at, e.to_string()));
    }
    Ok(url)
}

/// `[serve]`, with the history database the records name.
fn parse_serve(raw: RawServe, records: &RecordPaths) -> ServeConfig {
    ServeConfig {
        addr: raw.addr,
        database: records.database.clone(),
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs),
        max_body_bytes: Limits::bytes(raw.max_body_kb.max(1)),
        max_instances: raw.max_instances.max(1),
        read_timeout: Duration::from_secs(raw.read_timeout_secs.max(1)),
        max_connections: raw.max_connections.max(1),
    }
}

/// `[console]`, its tokens' sources checked (not read).
fn parse_console(source: &Source, raw: &RawConsole) -> Result<ConsoleConfig, FileError> {
    let token = |field: &str, value: &Option<Spanned<String>>| {
        value
            .as_ref()
            .map(|t| parse_source(source, "console", field, "tokens", t))
            .transpose()
    };
    Ok(ConsoleConfig {
        enabled: raw.enabled,
        addr: raw.addr.clone(),
        token: token("token", &raw.token)?,
        metrics_token: token("metrics_token", &raw.metrics_token)?,
    })
}

/// Where a plugin's component and manifest are: exactly one of `component`
/// (with an optional `manifest`) or `package` (with an optional `digest` pin).
fn plugin_source(
    source: &Source,
    name: &str,
    raw: &RawPlugin,
    span: &std::ops::Range<usize>,
) -> Result<(PluginSource, PathBuf), FileError> {
    match (&raw.component, &raw.package) {
        (Some(component), None) => {
            if let Some(digest) = &raw.digest {
                return Err(source.error(
                    Some(digest.span()),
                    format!("plugin {name}: digest pins a package; a loose component has none"),
                ));
            }
            let at = component.span();
            let component = source.resolve(component.get_ref());
            if !component.is_file() {
                return Err(source.error(
                    Some(at),
                    format!(
                        "plugin {name}: component {} is not a file",
                        component.display()
                    ),
                ));
            }
            let manifest = match &raw.manifest {
                Some(m) => source.resolve(m),
                None => component.with_file_name("plugin.toml"),
            };
            Ok((PluginSource::Component(component), manifest))
        }
        (None, Some(package)) => {
            if raw.manifest.is_some() {
                return Err(source.error(
                    Some(span.clone()),
                    format!("plugin {name}: a package carries its own manifest; remove manifest"),
                ));
            }
            let pinned = match &raw.digest {
                None => None,
                Some(d) => Some(parse_digest(d.get_ref()).ok_or_else(|| {
                    source.error(
                        Some(d.span()),
                        format!(
                            "plugin {name}: digest must be sha256: and 64 hex digits, not {:?}",
                            d.get_ref()
                        ),
                    )
                })?),
            };
            let dir = source.resolve(package.get_ref());
            let manifest = dir.join(levelhost_packages::package::MANIFEST_FILE);
            Ok((PluginSource::Package { dir, pinned }, manifest))
        }
        (Some(_), Some(_)) => Err(source.error(
            Some(span.clone()),
            format!("plugin {name}: give component or package, not both"),
        )),
        (None, None) => Err(source.error(
            Some(span.clone()),
            format!(
                "plugin {name}: missing component (a .wasm file) or package (a package directory)"
            ),
        )),
    }
}

/// A `sha256:` and 64 hex digits, lower-cased; `None` if it is not one.
fn parse_digest(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

fn parse_trust(source: &Source, raw: RawTrust) -> Result<TrustPolicy, FileError> {
    let mut reviewers = BTreeMap::new();
    for (name, key) in raw.reviewers {
        let parsed: PublicKey = key
            .get_ref()
            .parse()
            .map_err(|e| source.error(Some(key.span()), format!("trust.reviewers.{name}: {e}")))?;
        reviewers.insert(name, parsed);
    }
    let mut revoked = BTreeSet::new();
    for entry in raw.revoked {
        let text = entry.get_ref().trim();
        let normalised = if text.starts_with("sha256:") {
            parse_digest(text).ok_or_else(|| {
                source.error(
                    Some(entry.span()),
                    format!("trust.revoked: {text:?} is not sha256: and 64 hex digits"),
                )
            })?
        } else {
            text.parse::<PublicKey>()
                .map_err(|e| {
                    source.error(
                        Some(entry.span()),
                        format!(
                            "trust.revoked: {e} (entries are reviewer keys or package digests)"
                        ),
                    )
                })?
                .to_string()
        };
        revoked.insert(normalised);
    }
    Ok(TrustPolicy {
        reviewers,
        revoked,
        allow_unsigned: raw.allow_unsigned,
    })
}

/// Parses an `env:VARIABLE` or `file:PATH` reference, placing errors at it.
fn parse_source(
    source: &Source,
    what: &str,
    field: &str,
    plural: &str,
    value: &Spanned<String>,
) -> Result<KeySource, FileError> {
    let text = value.get_ref();
    let parsed = if let Some(var) = text.strip_prefix("env:") {
        SecretFrom::Env(var.to_owned())
    } else if let Some(file) = text.strip_prefix("file:") {
        SecretFrom::File(source.resolve(file))
    } else {
        return Err(source.error(
            Some(value.span()),
            format!("{what}: {field} must be env:VARIABLE or file:PATH; {plural} are never written in this file"),
        ));
    };
    let names_nothing = match &parsed {
        SecretFrom::Env(var) => var.is_empty(),
        SecretFrom::File(_) => text == "file:",
    };
    if names_nothing {
        return Err(source.error(
            Some(value.span()),
            format!("{what}: the {field} names nothing"),
        ));
    }
    Ok(KeySource {
        from: parsed,
        at: source.place(value.span()),
    })
}

/// A plugin name the configuration does not have.
#[derive(Debug, thiserror::Error)]
#[error("{}: no plugin named {name:?} (installed: {installed})", config.display())]
pub struct UnknownPlugin {
    /// The configuration file.
    pub config: PathBuf,
    /// The name asked for.
    pub name: String,
    /// The names it has, comma-separated.
    pub installed: String,
}

/// A key or webhook secret that cannot be read. It says where levelhost
/// looked, never what it found.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not Unicode).
    #[error("{what}: environment variable {var} is not set")]
    EnvUnset {
        /// Whose secret (`key ops`, `plugin tagger: events`).
        what: String,
        /// The variable.
        var: String,
    },
    /// The file cannot be read.
    #[error("{what}: cannot read {}", path.display())]
    ReadFile {
        /// Whose secret.
        what: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The source holds nothing but white space.
    #[error("{what}: the value is empty")]
    Empty {
        /// Whose secret.
        what: String,
    },
}

/// A connection that cannot be set up: a secret that cannot be read, or a
/// URL or credential the runtime refuses.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionLoadError {
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The connection is refused.
    #[error(transparent)]
    Connection(#[from] levelhost_runtime::outbound::ConnectionError),
}

/// Reads a secret from its source: an environment variable, or the first line of a file.
pub fn load_secret(source: &KeySource, what: &str) -> Result<String, SecretError> {
    let what = &format!("{what} ({})", source.at);
    let value = match &source.from {
        SecretFrom::Env(var) => {
            crate::env_vars::EnvVars::var(var).ok_or_else(|| SecretError::EnvUnset {
                what: what.to_owned(),
                var: var.clone(),
            })?
        }
        SecretFrom::File(path) => std::fs::read_to_string(path)
            .map_err(|source| SecretError::ReadFile {
                what: what.to_owned(),
                path: path.clone(),
                source,
            })?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(SecretError::Empty {
            what: what.to_owned(),
        });
    }
    Ok(value)
}

fn parse_schedule(source: &Source, plugin: &str, raw: RawSchedule) -> Result<Schedule, FileError> {
    let pattern = raw.cron.get_ref().clone();
    // croner would take a seventh (year) field; levelhost documents 5, or 6 with seconds first.
    let fields = pattern.split_whitespace().count();
    if !matches!(fields, 5 | 6) {
        return Err(source.error(
            Some(raw.cron.span()),
            format!(
                "plugin {plugin}: schedule {pattern:?}: expected 5 fields (minute hour day month weekday), \
                 or 6 with seconds first; found {fields}"
            ),
        ));
    }
    let cron: croner::Cron = pattern.parse().map_err(|e: croner::errors::CronError| {
        let why = cron_field_problem(&pattern).unwrap_or_else(|| e.to_string());
        source.error(
            Some(raw.cron.span()),
            format!("plugin {plugin}: schedule {pattern:?}: {why}"),
        )
    })?;

    let timezone = match &raw.timezone {
        None => chrono_tz::UTC,
        Some(tz) => tz.get_ref().parse().map_err(|_| {
            source.error(
                Some(tz.span()),
                format!("plugin {plugin}: unknown time zone {:?}", tz.get_ref()),
            )
        })?,
    };
    let overlap = parse_choice(
        source,
        plugin,
        "overlap",
        raw.overlap.as_ref(),
        [("skip", Overlap::Skip), ("queue", Overlap::Queue)],
    )?;
    let catch_up = parse_choice(
        source,
        plugin,
        "catch_up",
        raw.catch_up.as_ref(),
        [("skip", CatchUp::Skip), ("once", CatchUp::Once)],
    )?;
    let input = match raw.input {
        Some(table) => Some(serde_json::to_value(table).map_err(|e| {
            source.error(
                Some(raw.cron.span()),
                format!("plugin {plugin}: schedule input: {e}"),
            )
        })?),
        None => None,
    };
    let schedule = Schedule {
        pattern,
        cron,
        timezone,
        input,
        overlap,
        catch_up,
        catch_up_window: Duration::from_secs(raw.catch_up_window_secs),
        jitter: Duration::from_secs(raw.jitter_secs),
    };
    if schedule.next_after(chrono::Utc::now()).is_none() {
        return Err(source.error(
            Some(raw.cron.span()),
            format!(
                "plugin {plugin}: schedule {:?} never fires: no date matches it (such as day 30 of February)",
                schedule.pattern
            ),
        ));
    }
    Ok(schedule)
}

/// Which field of a cron pattern (5 fields, or 6 with seconds first) holds
/// a number outside its range, in words: `the minute field has 61; minutes
/// are 0-59`. `None` when every number is within range (the problem is elsewhere).
fn cron_field_problem(pattern: &str) -> Option<String> {
    const FIELDS: [(&str, &str, u32, u32); 6] = [
        ("second", "seconds", 0, 59),
        ("minute", "minutes", 0, 59),
        ("hour", "hours", 0, 23),
        ("day-of-month", "days of the month", 1, 31),
        ("month", "months", 1, 12),
        ("weekday", "weekdays", 0, 7),
    ];
    let values: Vec<&str> = pattern.split_whitespace().collect();
    let names = if values.len() == 6 {
        &FIELDS[..]
    } else {
        &FIELDS[1..]
    };
    for (value, (field, plural, low, high)) in values.iter().zip(names) {
        for number in value
            .split([',', '-', '/'])
            .filter_map(|part| part.parse::<u32>().ok())
        {
            let is_step = value
                .split_once('/')
                .is_some_and(|(_, step)| step == number.to_string());
            if !is_step && !(*low..=*high).contains(&number) {
                return Some(format!(
                    "the {field} field has {number}; {plural} are {low}-{high}"
                ));
            }
        }
    }
    None
}

/// One of a field's named choices; the first is the default when the field is absent.
fn parse_choice<T: Copy, const N: usize>(
    source: &Source,
    plugin: &str,
    field: &str,
    value: Option<&Spanned<String>>,
    choices: [(&str, T); N],
) -> Result<T, FileError> {
    let Some(value) = value else {
        return Ok(choices[0].1);
    };
    choices
        .iter()
        .find(|(name, _)| *name == value.get_ref())
        .map(|(_, choice)| *choice)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            source.error(
                Some(value.span()),
                format!(
                    "plugin {plugin}: {field} must be {}, not {:?}",
                    names.join(" or "),
                    value.get_ref()
                ),
            )
        })
}

/// Where the value at `path` (table keys, outermost first) is in `text`, for
/// errors found after parsing (a limit of zero, ...).
fn key_span(text: &str, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let doc = text.parse::<toml_edit::Document<String>>().ok()?;
    let mut item = doc.as_item();
    for key in path {
        item = item.get(key)?;
    }
    item.span()
}
