//! A connection: another system a plugin may call by name, its address and
//! the credential only the host holds, applied after the gate allowed a request.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::scrub::Secrets;

/// How the host proves itself to a connection.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing is added.
    None,
    /// `Authorization: Bearer TOKEN`.
    Bearer {
        /// The token.
        token: String,
    },
    /// `Authorization: Basic base64(USER:PASSWORD)`.
    Basic {
        /// The user name (not a secret).
        username: String,
        /// The password.
        password: String,
    },
    /// Headers with secret values (Autotask's `ApiIntegrationCode`, `UserName`, `Secret`).
    Headers(Vec<(String, String)>),
    /// A query parameter holding the secret (`?api_key=...`).
    Query {
        /// The parameter's name.
        param: String,
        /// Its value.
        value: String,
    },
    /// OAuth 2.0 client credentials: the host fetches a token at
    /// `token_url` and sends it as a bearer token, fetching a new one before
    /// it expires or when the connection answers 401.
    OAuth2 {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
        /// The scope asked for, if any.
        scope: Option<String>,
    },
    /// The whole URL is the secret (a Teams or Slack incoming webhook).
    SecretUrl,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl Credential {
    /// The kind, as written in the config (never the secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Bearer { .. } => "bearer",
            Credential::Basic { .. } => "basic",
            Credential::Headers(_) => "headers",
            Credential::Query { .. } => "query",
            Credential::OAuth2 { .. } => "oauth2",
            Credential::SecretUrl => "secret-url",
        }
    }

    /// The header names the host sets itself, which a plugin may not send.
    pub fn injected_headers(&self) -> Vec<String> {
        match self {
            Credential::Bearer { .. } | Credential::Basic { .. } | Credential::OAuth2 { .. } => {
                vec!["authorization".to_owned()]
            }
            Credential::Headers(h) => h.iter().map(|(n, _)| n.to_ascii_lowercase()).collect(),
            _ => Vec::new(),
        }
    }

    /// The secret texts this credential is made of, as they could come back.
    fn secrets(&self, url: &reqwest::Url) -> Vec<String> {
        match self {
            Credential::None => Vec::new(),
            Credential::Bearer { token } => vec![token.clone()],
            Credential::Basic { username, password } => vec![
                password.clone(),
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
            ],
            Credential::Headers(h) => h.iter().map(|(_, v)| v.clone()).collect(),
            Credential::Query { value, .. } => vec![value.clone()],
            Credential::OAuth2 { client_secret, .. } => vec![client_secret.clone()],
            Credential::SecretUrl => {
                let mut out = vec![url.as_str().trim_end_matches('/').to_owned()];
                if url.path().len() > 1 {
                    out.push(url.path().trim_end_matches('/').to_owned());
                }
                if let Some(q) = url.query() {
                    out.push(q.to_owned());
                }
                out
            }
        }
    }
}

/// What a connection is, as the operator configured it.
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    /// Its name, which plugins use as the host of their URLs.
    pub name: String,
    /// Its base URL (for [`Credential::SecretUrl`], the secret URL itself).
    pub url: String,
    /// Its credential.
    pub credential: Credential,
    /// Whether it may reach private, loopback and link-local addresses
    /// (tests, an intranet PSA). Off by default.
    pub allow_private_network: bool,
}

/// A connection that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The URL is not an absolute http(s) URL.
    #[error("connection {name}: {why}")]
    Url {
        /// The connection.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The HTTP client could not be built.
    #[error("connection {name}: cannot build its HTTP client")]
    Client {
        /// The connection.
        name: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
}

/// The shortest secret the host accepts: a shorter one could not be told
/// apart from ordinary text, so it could not be kept out of answers.
pub const MIN_SECRET_CHARS: usize = 8;

/// A connection, ready to send: its client connects only to addresses the
/// guarded resolver checked, follows no redirect, and (for an https base)
/// speaks nothing but https.
pub struct Connection {
    /// Its name.
    pub name: String,
    base: reqwest::Url,
    credential: Credential,
    allow_private_network: bool,
    client: reqwest::Client,
    /// The credential's forms to scrub from answers.
    secrets: Arc<Secrets>,
    /// The OAuth token, until when it is used, and the secrets with it
    /// (built once per token, not per answer).
    token: tokio::sync::Mutex<Option<(String, Instant, Arc<Secrets>)>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Checks `spec` and builds its client.
    pub fn new(spec: ConnectionSpec) -> Result<Self, ConnectionError> {
        let bad = |why: String| ConnectionError::Url {
            name: spec.name.clone(),
            why,
        };
        let base = check_url(&spec.url).map_err(|why| {
            bad(match spec.credential {
                // The secret URL's text is never repeated in a message.
                Credential::SecretUrl => why,
                _ => format!("{why}: {:?}", spec.url),
            })
        })?;
        for secret in spec.credential.secrets(&base) {
            if secret.chars().count() < MIN_SECRET_CHARS {
                return Err(bad(format!(
                    "a secret of its {} credential is shorter than {MIN_SECRET_CHARS} characters, too short to keep out of answers",
                    spec.credential.kind()
                )));
            }
        }
        let https = base.scheme() == "https";
        #[expect(
            clippy::disallowed_methods,
            reason = "a connection's client is the one road to other systems, built here with its guarded resolver"
        )]
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(https)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private_network: spec.allow_private_network,
            }))
            .user_agent(concat!("levelhost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ConnectionError::Client {
                name: spec.name.clone(),
                source,
            })?;
        let secrets = Arc::new(Secrets::new(spec.credential.secrets(&base)));
        Ok(Self {
            name: spec.name,
            base,
            credential: spec.credential,
            allow_private_network: spec.allow_private_network,
            client,
            secrets,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The kind of credential, for `check` and the console.
    pub fn credential_kind(&self) -> &'static str {
        self.credential.kind()
    }

    /// Where it points, safe to show: scheme and host only for a secret URL.
    pub fn shown_url(&self) -> String {
        match self.credential {
            Credential::SecretUrl => format!(
                "{}://{}/[secret]",
                self.base.scheme(),
                self.base.host_str().unwrap_or_default()
            ),
            _ => self.base.to_string(),
        }
    }

    /// Whether it may reach private, loopback and link-local addresses.
    pub fn allows_private_network(&self) -> bool {
        self.allow_private_network
    }

    /// Whether it is a plain-http connection.
    pub fn is_plain_http(&self) -> bool {
        self.base.scheme() == "http"
    }

    pub(super) fn injected_headers(&self) -> Vec<String> {
        self.credential.injected_headers()
    }

    pub(super) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The URL a request for `path` (raw, as allowed) and `query` goes to.
    pub(super) fn url_for(&self, path: &str, query: Option<&str>) -> reqwest::Url {
        let mut url = self.base.clone();
        let base_path = self.base.path().trim_end_matches('/');
        if path != "/" || base_path.is_empty() {
            url.set_path(&format!("{base_path}{path}"));
        }
        let mut pairs: Vec<String> = url.query().map(str::to_owned).into_iter().collect();
        pairs.extend(query.filter(|q| !q.is_empty()).map(str::to_owned));
        if let Credential::Query { param, value } = &self.credential {
            let encoded: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(param, value)
                .finish();
            pairs.push(encoded);
        }
        let query = pairs.join("&");
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        url
    }

    /// Checks the connection's host when it is an IP address (a name is
    /// checked by the resolver as it is looked up).
    pub(super) fn check_literal_address(&self) -> Result<(), String> {
        let host = self.base.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => check_address(host, ip, self.allow_private_network),
            Err(_) => Ok(()),
        }
    }

    /// The secrets to scrub from an answer: the credential's, and the
    /// current OAuth token.
    pub(super) async fn secrets(&self) -> Arc<Secrets> {
        match self.token.lock().await.as_ref() {
            Some((_, _, with_token)) => with_token.clone(),
            None => self.secrets.clone(),
        }
    }

    /// Adds the credential to `request`.
    pub(super) async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(match &self.credential {
            Credential::None | Credential::SecretUrl | Credential::Query { .. } => request,
            Credential::Bearer { token } => request.bearer_auth(token),
            Credential::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
            Credential::Headers(headers) => headers
                .iter()
                .fold(request, |r, (name, value)| r.header(name, value)),
            Credential::OAuth2 { .. } => request.bearer_auth(self.oauth_token(timeout).await?),
        })
    }

    /// Forgets the OAuth token (the connection answered 401 with it).
    pub(super) async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// A valid OAuth token: the cached one until a minute before it
    /// expires, else a new one from the token endpoint.
    async fn oauth_token(&self, timeout: Duration) -> Result<String, String> {
        let Credential::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
        } = &self.credential
        else {
            return Err("not an OAuth2 connection".to_owned());
        };
        let mut cached = self.token.lock().await;
        if let Some((token, until, _)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.as_str()));
        }
        let answer = self
            .client
            .post(token_url)
            .form(&form)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("the token endpoint of {} did not answer: {e}", self.name))?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        let Some(token) = body.get("access_token").and_then(|t| t.as_str()) else {
            return Err(format!(
                "the token endpoint of {} answered {status} without an access_token",
                self.name
            ));
        };
        let lifetime = body
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(300);
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(1));
        let mut with_token = Secrets::clone(&self.secrets);
        with_token.add(token);
        *cached = Some((token.to_owned(), until, Arc::new(with_token)));
        Ok(token.to_owned())
    }
}

/// Checks a connection's URL: absolute, `http` or `https`, with a host and
/// without a user or password. The error does not repeat the URL, which
/// may be a secret; the configuration places it.
pub fn check_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("its URL is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("its URL must be http:// or https:// with a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("its URL must not hold a user or password; use auth = \"basic\"".to_owned());
    }
    Ok(url)
}

/// Every connection the host knows, by name.
#[derive(Debug, Default, Clone)]
pub struct Connections(BTreeMap<String, Arc<Connection>>);

impl Connections {
    /// Sets up every connection; the first that cannot be is the error.
    pub fn new(specs: impl IntoIterator<Item = ConnectionSpec>) -> Result<Self, ConnectionError> {
        let mut out = BTreeMap::new();
        for spec in specs {
            out.insert(spec.name.clone(), Arc::new(Connection::new(spec)?));
        }
        Ok(Self(out))
    }

    /// Stand-ins for the connections called `names`, for a run whose
    /// requests are answered from a recording and never sent: no address,
    /// no credential.
    pub fn stand_ins<'a>(
        names: impl IntoIterator<Item = &'a String>,
    ) -> Result<Self, ConnectionError> {
        Self::new(names.into_iter().map(|name| ConnectionSpec {
            name: name.clone(),
            url: format!("https://{name}.invalid/"),
            credential: Credential::None,
            allow_private_network: false,
        }))
    }

    /// The connection called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Connection>> {
        self.0.get(name)
    }

    /// Every connection.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Connection>> {
        self.0.values()
    }
}

/// Refusing an address: what it is and how to allow it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DestinationRefused(pub String);

/// Looks a name up once and hands the client only the addresses that pass
/// [`check_address`], so it connects to what was checked (no second lookup
/// for a DNS rebinding to answer differently).
#[derive(Debug)]
struct GuardedResolver {
    allow_private_network: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private_network;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match check_address(&host, a.ip(), allow) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{host} has no address"));
                return Err(
                    Box::new(DestinationRefused(why)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` (what `host` resolved to) may be reached: private,
/// loopback, link-local (cloud metadata), shared, multicast and unspecified
/// addresses only with `allow_private_network`.
pub fn check_address(host: &str, ip: IpAddr, allow_private_network: bool) -> Result<(), String> {
    if allow_private_network {
        return Ok(());
    }
    let kind = match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_kind(v4),
            None => {
                let s = v6.segments();
                if v6.is_loopback() {
                    Some("loopback")
                } else if v6.is_unspecified() {
                    Some("unspecified")
                } else if s[0] & 0xfe00 == 0xfc00 {
                    Some("private (unique local)")
                } else if s[0] & 0xffc0 == 0xfe80 {
                    Some("link-local")
                } else if v6.is_multicast() {
                    Some("multicast")
                } else if s[0] == 0x64 && s[1] == 0xff9b {
                    let v4 = std::net::Ipv4Addr::new(
                        (s[6] >> 8) as u8,
                        s[6] as u8,
                        (s[7] >> 8) as u8,
                        s[7] as u8,
                    );
                    v4_kind(v4)
                } else {
                    None
                }
            }
        },
    };
    match kind {
        None => Ok(()),
        Some(kind) => Err(format!(
            "{host} resolves to {ip}, a {kind} address; the connection must set allow_private_network = true to reach it"
        )),
    }
}

fn v4_kind(ip: std::net::Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if o[0] == 169 && o[1] == 254 {
        Some("link-local (cloud metadata)")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_need_the_switch() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(check_address("h", ip, false).is_err(), "{ip}");
            assert!(check_address("h", ip, true).is_ok(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(check_address("h", ip.parse().unwrap(), false).is_ok());
        }
        let why = check_address("meta", "169.254.169.254".parse().unwrap(), false).unwrap_err();
        assert!(
            why.contains("cloud metadata") && why.contains("allow_private_network"),
            "{why}"
        );
    }

    fn spec(url: &str, credential: Credential) -> ConnectionSpec {
        ConnectionSpec {
            name: "c".into(),
            url: url.into(),
            credential,
            allow_private_network: false,
        }
    }

    #[test]
    fn urls_join_the_base_path_and_add_the_query_credential() {
        let c = Connection::new(spec(
            "https://psa.example/api/",
            Credential::Query {
                param: "api_key".into(),
                value: "s3cret-value".into(),
            },
        ))
        .unwrap();
        assert_eq!(
            c.url_for("/Tickets/1", Some("a=1")).as_str(),
            "https://psa.example/api/Tickets/1?a=1&api_key=s3cret-value"
        );
        let hook = Connection::new(spec(
            "https://hooks.example/services/T000/B000/XXXXXXXXXXXX",
            Credential::SecretUrl,
        ))
        .unwrap();
        assert_eq!(
            hook.url_for("/", None).as_str(),
            "https://hooks.example/services/T000/B000/XXXXXXXXXXXX"
        );
        assert_eq!(hook.shown_url(), "https://hooks.example/[secret]");
    }

    #[test]
    fn bad_connections_say_why_without_the_secret() {
        let short = Connection::new(spec(
            "https://psa.example",
            Credential::Bearer {
                token: "abc".into(),
            },
        ))
        .unwrap_err()
        .to_string();
        assert!(short.contains("shorter than 8"), "{short}");
        let userinfo = Connection::new(spec("https://u:p@psa.example", Credential::None))
            .unwrap_err()
            .to_string();
        assert!(userinfo.contains("user or password"), "{userinfo}");
        let secret = Connection::new(spec("not a url secret-part", Credential::SecretUrl))
            .unwrap_err()
            .to_string();
        assert!(!secret.contains("secret-part"), "{secret}");
    }
}
