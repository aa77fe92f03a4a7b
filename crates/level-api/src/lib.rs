//! The Level API client: the only code in levelhost that talks to Level.
//!
//! [`LevelClient`] sends the raw key in `Authorization` (Level rejects a
//! `Bearer` prefix), bounds every request in time and every response in
//! size, and retries with backoff and jitter where that is safe: a 429 is
//! retried for every method (Level did not act on it), honouring
//! `Retry-After`; a 5xx or a network failure only for `GET`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), level_api::ClientError> {
//! use level_api::{ApiKey, ClientConfig, LevelClient, PageParams, DeviceQuery};
//! let client = LevelClient::new(ClientConfig::new("https://api.level.io"), ApiKey::new("key"))?;
//! let page = client.list_devices(&DeviceQuery::default(), &PageParams::default()).await?;
//! println!("{} devices, more: {}", page.data.len(), page.has_more);
//! # Ok(()) }
//! ```

mod budget;
pub mod clock;
pub mod model;
mod resources;
mod retry;
pub mod stats;
pub mod transcript;
pub mod webhook;

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

pub use self::budget::{BoxFuture, RateBudget, SharedBudget, SharedBudgetError};
use self::model::*;
pub use self::retry::RetryPolicy;

/// A Level API key. It is held by the host only: `Debug` and `Display`
/// print a placeholder, and the value leaves this module only as a
/// sensitive HTTP header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Box<str>);

/// What a key is replaced with wherever it would be shown.
pub const REDACTED: &str = "[redacted]";

/// `bytes` with every occurrence of `secret` replaced by `[redacted]`: the
/// one scrubber for text from outside (Level's answers, webhook deliveries)
/// that may echo a key or a webhook secret.
pub fn scrub(bytes: Vec<u8>, secret: &[u8]) -> Vec<u8> {
    if secret.is_empty() || bytes.len() < secret.len() {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes.as_slice();
    while let Some(at) = rest.windows(secret.len()).position(|w| w == secret)
        && let Some((before, after)) = rest.split_at_checked(at)
    {
        out.extend_from_slice(before);
        out.extend_from_slice(REDACTED.as_bytes());
        rest = after.get(secret.len()..).unwrap_or_default();
    }
    if out.is_empty() {
        return bytes;
    }
    out.extend_from_slice(rest);
    out
}

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into().into_boxed_str())
    }

    /// `bytes` with every occurrence of the key replaced by `[redacted]`.
    /// Every response body passes through this before anything reads it, so
    /// an upstream that echoes the key (in an error message, or in any field
    /// of an object) hands it to no plugin, log, audit record or history.
    fn scrub(&self, bytes: Vec<u8>) -> Vec<u8> {
        scrub(bytes, self.0.as_bytes())
    }

    fn header(&self) -> Result<HeaderValue, ClientError> {
        let mut value = HeaderValue::from_str(&self.0).map_err(|_| ClientError::InvalidKey)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Largest response body the client reads by default. A Level page of 100
/// devices with every section included is well under 2 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Default time allowed for one HTTP request, including reading the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the client reaches Level.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Level's address, such as `https://api.level.io` (a trailing `/v2` is accepted).
    pub base_url: String,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Largest response body read.
    pub max_response_bytes: usize,
    /// When and how long to retry.
    pub retry: RetryPolicy,
    /// A rate budget shared with every other client of the same key.
    pub budget: Option<std::sync::Arc<RateBudget>>,
    /// How the key is named where it is configured, such as `key automation
    /// (env:LEVEL_RW_KEY)`: a 401 or 403 names it, so an operator knows which
    /// key Level refused. Never the key itself.
    pub key_label: Option<String>,
    /// Where to record every request and its answer, for replaying the run.
    pub recorder: Option<transcript::Recorder>,
}

impl ClientConfig {
    /// Defaults for the given base URL.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            retry: RetryPolicy::default(),
            budget: None,
            key_label: None,
            recorder: None,
        }
    }
}

/// Why a Level call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Level answered with an error status; `message` is its `error` field.
    #[error("Level answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Level's message.
        message: String,
        /// For 429, how long Level asked the client to wait.
        retry_after: Option<Duration>,
    },
    /// No answer arrived: connection refused, DNS failure or timeout.
    #[error("could not reach Level: {0}")]
    Transport(String),
    /// The response body was larger than the configured cap.
    #[error("Level's response was larger than {limit} bytes")]
    ResponseTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The response was not the JSON the operation returns.
    #[error("Level's response to {operation} was not valid: {message}")]
    Decode {
        /// The operation, such as `listDevices`.
        operation: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The base URL could not be parsed.
    #[error("invalid Level base URL {url:?}: {message}")]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// The key contains characters that cannot be sent in a header.
    #[error("the API key contains characters that cannot be sent in an HTTP header")]
    InvalidKey,
    /// An id cannot name one object: it is empty, `.` or `..`, which a URL
    /// path would drop or resolve to another resource. Nothing was sent.
    #[error("{id:?} is not an id: it cannot name one object")]
    InvalidId {
        /// The id given.
        id: String,
    },
}

/// Level's base URL as the client uses it (a trailing `/` or `/v2` is
/// accepted); refuses anything but an absolute `http(s)` URL.
pub fn base_url(url: &str) -> Result<Url, ClientError> {
    let invalid = |message: String| ClientError::InvalidBaseUrl {
        url: url.to_owned(),
        message,
    };
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/v2").unwrap_or(trimmed);
    let base = Url::parse(&format!("{trimmed}/")).map_err(|e| invalid(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err(invalid("expected an http:// or https:// URL".to_owned()));
    }
    Ok(base)
}

/// Refuses an id that cannot name one object (`""`, `.`, `..`): in a path a
/// URL would drop or resolve it, and as a filter it would match nothing
/// or everything.
pub fn check_id(id: &str) -> Result<(), ClientError> {
    if matches!(id, "" | "." | "..") {
        return Err(ClientError::InvalidId { id: id.to_owned() });
    }
    Ok(())
}

impl ClientError {
    /// The HTTP status, when Level answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Paging parameters common to every list operation (reference §3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageParams {
    /// 1 to 100; Level's default is 20.
    pub limit: Option<u32>,
    /// Cursor: the page after this id.
    pub starting_after: Option<String>,
    /// Cursor: the page before this id.
    pub ending_before: Option<String>,
}

/// Filters of `GET /v2/devices` and the `include_*` flags of the device calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Devices directly in this group; `Some("null")` lists ungrouped devices.
    pub group_id: Option<String>,
    /// Devices anywhere below this group.
    pub ancestor_group_id: Option<String>,
    /// Devices carrying this tag id.
    pub tag_id: Option<String>,
    /// Devices with this hostname.
    pub hostname: Option<String>,
    /// Devices with this serial number.
    pub serial_number: Option<String>,
    /// Sections to include.
    pub include: DeviceIncludes,
}

/// The `include_*` flags of the device calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceIncludes {
    /// `include_operating_system`
    pub operating_system: bool,
    /// `include_cpus`
    pub cpus: bool,
    /// `include_memory`
    pub memory: bool,
    /// `include_disks`
    pub disks: bool,
    /// `include_disk_partitions`
    pub disk_partitions: bool,
    /// `include_network_interfaces`
    pub network_interfaces: bool,
    /// `include_motherboard`
    pub motherboard: bool,
    /// `include_security`
    pub security: bool,
}

impl DeviceIncludes {
    fn push_query(&self, query: &mut Vec<(&'static str, String)>) {
        let flags = [
            ("include_operating_system", self.operating_system),
            ("include_cpus", self.cpus),
            ("include_memory", self.memory),
            ("include_disks", self.disks),
            ("include_disk_partitions", self.disk_partitions),
            ("include_network_interfaces", self.network_interfaces),
            ("include_motherboard", self.motherboard),
            ("include_security", self.security),
        ];
        for (name, on) in flags {
            if on {
                query.push((name, "true".to_owned()));
            }
        }
    }
}

/// Filters of `GET /v2/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// Alerts of this device.
    pub device_id: Option<String>,
    /// `active` or `resolved`.
    pub status: Option<String>,
}

/// Filters of `GET /v2/custom_field_values`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueQuery {
    /// Device or group id; none for organization-level values.
    pub assigned_to_id: Option<String>,
    /// One field only.
    pub custom_field_id: Option<String>,
}

/// What a key may do, as Level answers ([`LevelClient::probe_access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAccess {
    /// View only.
    ReadOnly,
    /// View, create, update and delete.
    ReadWrite,
}

impl fmt::Display for KeyAccess {
    /// As Level's settings page and levelhost's config name it: `read-only`, `read-write`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadOnly => "read-only",
            Self::ReadWrite => "read-write",
        })
    }
}

/// A client for one Level organization, holding one API key.
///
/// Cloning it is one reference count: every run and every call takes a clone.
#[derive(Debug, Clone)]
pub struct LevelClient {
    inner: std::sync::Arc<Client>,
}

/// What a [`LevelClient`] and its clones share.
#[derive(Debug, Clone)]
struct Client {
    http: reqwest::Client,
    base: Url,
    key: ApiKey,
    config: ClientConfig,
    stats: std::sync::Arc<stats::ClientStats>,
}

type Query = Vec<(&'static str, String)>;

/// An answer as read, before it is taken for a body or an error.
struct Raw {
    status: StatusCode,
    retry_after: Option<String>,
    body: Vec<u8>,
}

fn page_query(page: &PageParams) -> Query {
    let mut query = Query::new();
    if let Some(limit) = page.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(after) = &page.starting_after {
        query.push(("starting_after", after.clone()));
    }
    if let Some(before) = &page.ending_before {
        query.push(("ending_before", before.clone()));
    }
    query
}

fn push_opt(query: &mut Query, name: &'static str, value: &Option<String>) {
    if let Some(value) = value {
        query.push((name, value.clone()));
    }
}

impl LevelClient {
    /// Builds a client. Fails on a base URL that is not an absolute `http(s)` URL.
    pub fn new(config: ClientConfig, key: ApiKey) -> Result<Self, ClientError> {
        let base = base_url(&config.base_url)?;
        key.header()?;
        #[expect(
            clippy::disallowed_methods,
            reason = "this is the client every request to Level goes through"
        )]
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("levelhost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self {
            inner: std::sync::Arc::new(Client {
                http,
                base,
                key,
                config,
                stats: std::sync::Arc::default(),
            }),
        })
    }

    /// Whether the key works, and whether it may write, asking Level
    /// without changing anything: a read (`GET /devices?limit=1`; 401 means
    /// the key is not one), then a rename of a tag that does not exist to an
    /// empty name. Level checks a key's access before the request, so a
    /// read-only key gets 403; a read-write key gets 404 or 422, for the
    /// request, never a change (an empty name is refused even if the id existed).
    pub async fn probe_access(&self) -> Result<KeyAccess, ClientError> {
        self.list_devices(
            &DeviceQuery::default(),
            &PageParams {
                limit: Some(1),
                ..PageParams::default()
            },
        )
        .await?;
        let probe = TagName {
            name: String::new(),
        };
        match self.update_tag("levelhost-key-probe", &probe).await {
            Err(ClientError::Status { status: 403, .. }) => Ok(KeyAccess::ReadOnly),
            Err(ClientError::Status {
                status: 400 | 404 | 409 | 422,
                ..
            })
            | Ok(_) => Ok(KeyAccess::ReadWrite),
            Err(e) => Err(e),
        }
    }

    /// What this client and its clones have sent, for metrics.
    pub fn stats(&self) -> &std::sync::Arc<stats::ClientStats> {
        &self.inner.stats
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// This client, recording every request it sends and every answer in `recorder`.
    pub fn recording(mut self, recorder: transcript::Recorder) -> Self {
        std::sync::Arc::make_mut(&mut self.inner).config.recorder = Some(recorder);
        self
    }

    /// The URL of `segments` under `/v2`. Each segment is percent-encoded
    /// (`/`, `?`, `#` and `%` cannot leave it); a segment that URL
    /// normalisation would drop or resolve (`""`, `.`, `..`) is refused, so
    /// an id always names one object of the operation's resource.
    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        for segment in segments {
            check_id(segment)?;
        }
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidBaseUrl {
                url: self.inner.config.base_url.clone(),
                message: "cannot be a base".to_owned(),
            })?
            .pop_if_empty()
            .push("v2")
            .extend(segments);
        Ok(url)
    }

    /// Sends one request with retries and returns the raw body.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        query: &Query,
        body: Option<&(dyn erased::Body + Sync)>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut url = self.url(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let body = body
            .map(|b| b.to_json())
            .transpose()
            .map_err(|e| ClientError::Decode {
                operation,
                message: format!("could not encode the request: {e}"),
            })?;
        let safe = method == Method::GET;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if let Some(budget) = &self.inner.config.budget {
                let waiting = std::time::Instant::now();
                budget.acquire().await;
                self.inner.stats.waited(waiting.elapsed());
            }
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, self.inner.key.header()?)
                .header(ACCEPT, "application/json");
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => self.read(response).await,
                Err(e) => Err(ClientError::Transport(describe_transport(&e))),
            };
            if let Some(recorder) = &self.inner.config.recorder {
                recorder.push(self.exchange(&method, &url, body.as_deref(), &outcome));
            }
            self.inner.stats.request(
                operation,
                match &outcome {
                    Ok(raw) => raw.status.as_u16(),
                    Err(e) => e.status().unwrap_or(0),
                },
            );
            let outcome = outcome.and_then(|raw| self.answer(raw));
            let retry_in = match &outcome {
                Ok(_) => return outcome,
                Err(err) => self.inner.config.retry.delay(attempt, safe, err),
            };
            if let (
                Some(budget),
                Err(ClientError::Status {
                    status: 429,
                    retry_after,
                    ..
                }),
            ) = (&self.inner.config.budget, &outcome)
            {
                budget
                    .pause(retry_after.unwrap_or(Duration::from_secs(1)))
                    .await;
            }
            match retry_in {
                Some(delay) => {
                    tracing::debug!(operation, attempt, ?delay, "retrying Level call");
                    tokio::time::sleep(delay).await;
                }
                None => return outcome,
            }
        }
    }

    /// Reads an answer's status, `Retry-After` and body (the key scrubbed from it).
    async fn read(&self, mut response: reqwest::Response) -> Result<Raw, ClientError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(|v| self.scrub_text(v));
        let limit = self.inner.config.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(ClientError::ResponseTooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::Transport(describe_transport(&e)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(ClientError::ResponseTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Raw {
            status,
            retry_after,
            body: self.inner.key.scrub(body),
        })
    }

    /// The body of a successful answer, or the error an unsuccessful one means.
    fn answer(&self, raw: Raw) -> Result<Vec<u8>, ClientError> {
        let Raw {
            status,
            retry_after,
            body,
        } = raw;
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| {
                let text = String::from_utf8_lossy(&body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_owned()
                } else {
                    text.chars().take(200).collect()
                }
            });
        let message = match (&self.inner.config.key_label, status.as_u16()) {
            (Some(label), 401) => format!("{message} (Level refused {label})"),
            (Some(label), 403) => format!("{message} (with {label})"),
            _ => message,
        };
        Err(ClientError::Status {
            status: status.as_u16(),
            message,
            retry_after: (status == StatusCode::TOO_MANY_REQUESTS)
                .then(|| retry_after.as_deref().and_then(retry::parse_retry_after))
                .flatten(),
        })
    }

    /// One attempt as a transcript keeps it.
    fn exchange(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        outcome: &Result<Raw, ClientError>,
    ) -> transcript::Exchange {
        let base = self.inner.base.path().trim_end_matches('/');
        let path = url.path().strip_prefix(base).unwrap_or(url.path());
        let path = match url.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        let (status, retry_after, response) = match outcome {
            Ok(raw) => (
                raw.status.as_u16(),
                raw.retry_after.clone(),
                String::from_utf8_lossy(&raw.body).into_owned(),
            ),
            Err(e) => (0, None, e.to_string()),
        };
        // Every field is scrubbed, not only the answer's body: a header,
        // a path or an error message may echo the key as well.
        transcript::Exchange {
            method: method.to_string(),
            path: self.scrub_text(&path),
            body: body.map(|b| self.scrub_text(&String::from_utf8_lossy(b))),
            status,
            retry_after: retry_after.map(|v| self.scrub_text(&v)),
            response: self.scrub_text(&response),
        }
    }

    /// `text` with the key replaced by `[redacted]`.
    fn scrub_text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.inner.key.scrub(text.as_bytes().to_vec())).into_owned()
    }

    async fn json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        query: &Query,
        body: Option<&(dyn erased::Body + Sync)>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(operation, method, segments, query, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            operation,
            message: e.to_string(),
        })
    }

    async fn empty(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        query: &Query,
        body: Option<&(dyn erased::Body + Sync)>,
    ) -> Result<(), ClientError> {
        // Level does not document these bodies (reference §9.10): ignore them.
        self.send(operation, method, segments, query, body)
            .await
            .map(drop)
    }
}

fn describe_transport(e: &reqwest::Error) -> String {
    // reqwest's Display includes the URL but never headers, so the key cannot leak here.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut message = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Object-safe JSON encoding, so `send` is not generic over every body type.
mod erased {
    pub trait Body {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> Body for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}
