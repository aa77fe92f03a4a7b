//! Requests to other systems: `wasi:http/outgoing-handler`, through the gate.
//!
//! Every plugin links `wasi:http`, so each language's ordinary HTTP client
//! works, and every request it makes leaves through one hook,
//! [`Outbound::send_request`] (wasmtime-wasi-http's own sender is not
//! built in). A plugin names a connection as the host of its URL
//! (`https://ticketing/api/Tickets`), never the real address or a secret
//! URL. Before anything is sent the run's [`Gate`] decides: the grant must
//! name the connection and a route matching the method and the normalised
//! path, within the run's budgets; headers the host sets (credentials,
//! method overrides) are refused. Then the host adds the credential, sends
//! it to an address its resolver checked (no private or metadata address
//! unless the connection allows it), follows no redirect, reads at most
//! `max_response_kb` of the answer and scrubs every form of the credential
//! from it. Every request has an audit record; a write has one more before
//! it leaves, and is recorded as cut off if the run ends first. A dry run
//! sends reads and plans writes; a run holding an approved plan may only
//! send the writes it holds (same method, path and body).

pub mod connection;
pub mod scrub;
pub mod tape;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use levelhost_core::audit::Stage;
use levelhost_core::gate::Refusal;
use levelhost_core::plan::PlanEntry;
use levelhost_core::route::{self, HTTP_OPERATION, RequestPath};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::audit::{AuditLog, AuditRecord};
use crate::level::{RunInfo, SharedGate};
pub use connection::{Connection, ConnectionError, ConnectionSpec, Connections, Credential};
pub use tape::{HttpExchange, HttpTape, RecordedBody};

/// What a run's requests to other systems left behind, shared with the
/// tasks their answers arrive on.
#[derive(Debug, Default)]
pub struct Exchanges {
    /// Every request's audit record, in the order they ended.
    pub records: Vec<AuditRecord>,
    /// Writes planned by a dry run.
    pub plan: Vec<PlanEntry>,
    /// Requests out with their connection, by number: recorded as cut off
    /// if the run ends first.
    in_flight: BTreeMap<u64, AuditRecord>,
    next: u64,
}

/// The `wasi:http` hooks of one run.
pub struct Outbound {
    connections: Arc<Connections>,
    gate: SharedGate,
    run: Arc<RunInfo>,
    audit: Option<AuditLog>,
    dry_run: bool,
    deadline: tokio::time::Instant,
    /// Made at the first request: most runs call no other system.
    exchanges: std::sync::OnceLock<Arc<Mutex<Exchanges>>>,
    tape: Option<HttpTape>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("run", &self.run.run_id)
            .finish_non_exhaustive()
    }
}

/// A request the gate allowed, with everything its task needs.
struct Allowed {
    connection: Arc<Connection>,
    method: String,
    path: RequestPath,
    headers: http::HeaderMap,
    record: AuditRecord,
    timeout: Duration,
    gate: SharedGate,
    audit: Option<AuditLog>,
    dry_run: bool,
    exchanges: Arc<Mutex<Exchanges>>,
    tape: Option<HttpTape>,
    max_call: usize,
    max_response: usize,
    started: Instant,
}

impl Outbound {
    /// The hooks of one run.
    pub fn new(
        connections: Arc<Connections>,
        gate: SharedGate,
        run: impl Into<Arc<RunInfo>>,
        audit: Option<AuditLog>,
        dry_run: bool,
        deadline: tokio::time::Instant,
    ) -> Self {
        Self {
            connections,
            gate,
            run: run.into(),
            audit,
            dry_run,
            deadline,
            exchanges: std::sync::OnceLock::new(),
            tape: None,
        }
    }

    /// Records the run's exchanges on `tape`, or answers them from it.
    #[must_use]
    pub fn with_tape(mut self, tape: Option<HttpTape>) -> Self {
        self.tape = tape;
        self
    }

    /// The exchanges of the run's requests, shared with the tasks their
    /// answers arrive on.
    fn exchanges(&self) -> &Arc<Mutex<Exchanges>> {
        self.exchanges.get_or_init(Arc::default)
    }

    /// What the run's requests left behind: every request's record, in the
    /// order they ended, and the writes a dry run planned.
    pub fn take_exchanges(&self) -> (Vec<AuditRecord>, Vec<PlanEntry>) {
        let Some(exchanges) = self.exchanges.get() else {
            return (Vec::new(), Vec::new());
        };
        let mut ex = lock(exchanges);
        (
            std::mem::take(&mut ex.records),
            std::mem::take(&mut ex.plan),
        )
    }

    /// The synchronous half of a request: which connection, which route,
    /// which headers, and the gate's answer. Nothing is sent yet.
    fn decide(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<&RequestOptions>,
    ) -> Result<(Allowed, WasiBody), Box<AuditRecord>> {
        let (parts, body) = request.into_parts();
        let method = parts.method.as_str().to_ascii_uppercase();
        let name = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let mut record = self.run.record(
            HTTP_OPERATION,
            vec![route::connection_target(&name)],
            None,
            Duration::ZERO,
        );
        let deny = |record: &mut AuditRecord, why: String| {
            record.allowed = false;
            record.reason = Some(format!("denied: {why}"));
            Err(Box::new(record.clone()))
        };
        if name.contains('@') || name.contains(':') {
            return deny(
                &mut record,
                format!(
                    "the host of a request must be a connection's name alone, not {name:?} (no user, password or port)"
                ),
            );
        }
        let Some(connection) = self.connections.get(&name).cloned() else {
            return deny(
                &mut record,
                format!(
                    "{name:?} is not a connection of this host; a plugin names a connection as the host of its URL (https://NAME/path)"
                ),
            );
        };
        let path = match RequestPath::parse(&target) {
            Ok(p) => p,
            Err(e) => return deny(&mut record, e.to_string()),
        };
        record.targets.push(route::request_target(&method, &path));
        // The connection's URL decides the transport. A plugin asking for
        // https is sent over plain http only where the operator allowed the
        // private network (an intranet system, a stand-in on loopback).
        if parts.uri.scheme_str() == Some("https")
            && connection.is_plain_http()
            && !connection.allows_private_network()
        {
            return deny(
                &mut record,
                format!(
                    "connection {name} is plain http on a public network; a request asking for https is never sent over http"
                ),
            );
        }
        let injected = connection.injected_headers();
        for header in parts.headers.keys() {
            let lower = header.as_str();
            if route::REFUSED_HEADERS.contains(&lower) || injected.iter().any(|h| h == lower) {
                return deny(
                    &mut record,
                    format!(
                        "a plugin may not send the header {lower:?} (credentials and method overrides are the host's)"
                    ),
                );
            }
        }
        if let Err(why) = connection.check_literal_address() {
            return deny(&mut record, why);
        }
        let (http_timeout, max_call_kb, max_response_kb) = {
            let mut gate = self.gate.lock();
            if let Err(refusal) = gate.authorize_request(&name, &method, &path) {
                record.allowed = false;
                record.reason = Some(refusal.to_string());
                return Err(Box::new(record));
            }
            let limits = &gate.grant().limits;
            (
                limits.http_timeout(),
                limits.max_call_kb,
                limits.max_response_kb,
            )
        };
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        let mut timeout = http_timeout.min(left);
        if let Some(options) = options {
            for t in [options.connect_timeout, options.first_byte_timeout]
                .into_iter()
                .flatten()
            {
                timeout = timeout.min(t);
            }
        }
        Ok((
            Allowed {
                connection,
                method,
                path,
                headers: parts.headers,
                record,
                timeout,
                gate: self.gate.clone(),
                audit: self.audit.clone(),
                dry_run: self.dry_run,
                exchanges: self.exchanges().clone(),
                tape: self.tape.clone(),
                max_call: levelhost_core::grant::Limits::bytes(max_call_kb),
                max_response: levelhost_core::grant::Limits::bytes(max_response_kb),
                started: Instant::now(),
            },
            body,
        ))
    }

    /// Records every request still out as cut off (the run ended first).
    pub async fn record_cut_off(&self) -> Vec<AuditRecord> {
        let Some(exchanges) = self.exchanges.get() else {
            return Vec::new();
        };
        let cut = std::mem::take(&mut lock(exchanges).in_flight);
        let mut out = Vec::with_capacity(cut.len());
        for record in cut.into_values() {
            let record = crate::level::cut_off(record, "the other system");
            if let Some(audit) = &self.audit
                && let Err(e) = audit.append(&record).await
            {
                tracing::error!("{}", levelhost_core::Chain(&e));
            }
            out.push(record);
        }
        out
    }
}

fn lock(exchanges: &Mutex<Exchanges>) -> std::sync::MutexGuard<'_, Exchanges> {
    exchanges
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

type Answer = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for Outbound {
    fn set_host_header(&mut self) -> bool {
        // The host header would name the connection; the client sets the real one.
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Answer> + Send> {
        let decided = self.decide(request, options.as_ref());
        let audit = self.audit.clone();
        let exchanges = self.exchanges().clone();
        Box::new(async move {
            match decided {
                Err(record) => {
                    let why = record.reason.clone();
                    finish(&audit, &exchanges, None, *record).await;
                    Err(HttpError::InternalError(why))
                }
                Ok((allowed, body)) => allowed.send(body).await,
            }
        })
    }
}

/// Keeps a request's last record with the run and in the audit log; a
/// request already recorded as cut off keeps that record instead.
async fn finish(
    audit: &Option<AuditLog>,
    exchanges: &Mutex<Exchanges>,
    id: Option<u64>,
    record: AuditRecord,
) {
    if let Some(id) = id
        && lock(exchanges).in_flight.remove(&id).is_none()
    {
        return;
    }
    if let Some(audit) = audit
        && let Err(e) = audit.append(&record).await
    {
        tracing::error!("{}", levelhost_core::Chain(&e));
    }
    lock(exchanges).records.push(record);
}

fn body_of(bytes: Vec<u8>) -> WasiBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl Allowed {
    async fn send(self, request_body: WasiBody) -> Answer {
        let mut record = self.record.clone();
        let body = match read_body(request_body, self.max_call).await {
            Ok(body) => body,
            Err(why) => {
                record.allowed = false;
                record.reason = Some(why.clone());
                finish(&self.audit, &self.exchanges, None, record).await;
                return Err(HttpError::InternalError(Some(why)));
            }
        };
        let writes = !route::reads_only(&self.method);
        let query = self.path.query.clone();
        if writes {
            let planned = serde_json::json!({
                "method": self.method,
                "path": self.path.raw,
                "query": query,
                "body": body_json(&body),
            });
            if self.dry_run {
                record.dry_run = true;
                record.latency_ms = elapsed_ms(self.started);
                lock(&self.exchanges).plan.push(PlanEntry {
                    operation: HTTP_OPERATION.to_owned(),
                    targets: record.targets.clone(),
                    request: planned,
                    names: Default::default(),
                    needs: Vec::new(),
                });
                finish(&self.audit, &self.exchanges, None, record).await;
                let response = http::Response::builder()
                    .status(202)
                    .header("levelhost-dry-run", "planned, not sent")
                    .body(body_of(Vec::new()))
                    .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
                return Ok((response, Box::new(async { Ok(()) })));
            }
            let checked =
                self.gate
                    .lock()
                    .check_planned_named(HTTP_OPERATION, &record.targets, &planned);
            if let Err(refusal) = checked {
                return self.refused(record, refusal).await;
            }
        }
        let spent = self.gate.lock().spend_http_bytes(body.len() as u64);
        if let Err(refusal) = spent {
            return self.refused(record, refusal).await;
        }
        record.requests = 1;
        let id = {
            let mut ex = lock(&self.exchanges);
            ex.next += 1;
            let id = ex.next;
            ex.in_flight.insert(
                id,
                AuditRecord {
                    stage: Stage::CutOff,
                    ..record.clone()
                },
            );
            id
        };
        if writes && let Some(audit) = &self.audit {
            let sending = AuditRecord {
                stage: Stage::Sending,
                ..record.clone()
            };
            if let Err(e) = audit.append(&sending).await {
                lock(&self.exchanges).in_flight.remove(&id);
                let why = levelhost_core::Chain(&e).to_string();
                return Err(HttpError::InternalError(Some(why)));
            }
        }
        let sent = body.len();
        let result = self.exchange(body).await;
        record.latency_ms = elapsed_ms(self.started);
        match result {
            Ok((status, headers, answer)) => {
                let bytes = (sent + answer.len()) as u64;
                record.upstream_status = Some(status.as_u16());
                record.bytes = Some(bytes);
                let over = self.gate.lock().spend_http_bytes(answer.len() as u64);
                if let Err(refusal) = over {
                    record.reason = Some(refusal.to_string());
                    finish(&self.audit, &self.exchanges, Some(id), record).await;
                    return Err(HttpError::InternalError(Some(refusal.to_string())));
                }
                finish(&self.audit, &self.exchanges, Some(id), record).await;
                let mut response = http::Response::builder().status(status);
                if let Some(h) = response.headers_mut() {
                    *h = headers;
                }
                let response = response
                    .body(body_of(answer))
                    .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
                Ok((response, Box::new(async { Ok(()) })))
            }
            Err((error, why)) => {
                // The resolver refused the address: nothing left the host.
                record.allowed = !why.starts_with("denied:");
                record.upstream_status = Some(0);
                record.reason = Some(why);
                record.bytes = Some(sent as u64);
                finish(&self.audit, &self.exchanges, Some(id), record).await;
                Err(error)
            }
        }
    }

    async fn refused(&self, mut record: AuditRecord, refusal: Refusal) -> Answer {
        record.allowed = false;
        let why = refusal.to_string();
        record.reason = Some(why.clone());
        finish(&self.audit, &self.exchanges, None, record).await;
        Err(HttpError::InternalError(Some(why)))
    }

    /// Sends the request with the credential and reads the answer, scrubbed.
    async fn exchange(
        &self,
        body: Vec<u8>,
    ) -> Result<(http::StatusCode, http::HeaderMap, Vec<u8>), (HttpError, String)> {
        let shown_path = match &self.path.query {
            Some(query) => format!("{}?{query}", self.path.raw),
            None => self.path.raw.clone(),
        };
        if let Some(tape) = self.tape.as_ref().filter(|t| t.answers()) {
            return self.answered(tape, &shown_path, &body);
        }
        let request_json = self.tape.is_some().then(|| body_json(&body));
        let connection = &self.connection;
        let url = connection.url_for(&self.path.raw, self.path.query.as_deref());
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).map_err(|_| {
            (
                HttpError::HttpRequestMethodInvalid,
                "invalid method".to_owned(),
            )
        })?;
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let mut request = connection
                .client()
                .request(method.clone(), url.clone())
                .timeout(self.timeout)
                .body(body.clone());
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            let request = connection
                .authorize(request, self.timeout)
                .await
                .map_err(|why| (HttpError::InternalError(Some(why.clone())), why))?;
            let response = request
                .send()
                .await
                .map_err(|e| describe_send(e, connection))?;
            // An OAuth token the connection no longer takes is fetched again, once.
            if response.status() == http::StatusCode::UNAUTHORIZED
                && connection.credential_kind() == "oauth2"
                && attempt == 1
            {
                connection.forget_token().await;
                continue;
            }
            break response;
        };
        let status = response.status();
        let secrets = connection.secrets().await;
        let mut headers = http::HeaderMap::new();
        for (name, value) in response.headers() {
            if matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "content-encoding" | "connection"
            ) {
                continue;
            }
            let (clean, _) = secrets.scrub(value.as_bytes());
            if let Ok(value) = http::HeaderValue::from_bytes(&clean) {
                headers.append(name.clone(), value);
            }
        }
        let mut answer = Vec::new();
        let mut response = response;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    answer.extend_from_slice(&chunk);
                    if answer.len() > self.max_response {
                        let why = format!(
                            "limit max_response_kb exceeded: the answer is over {} bytes; it was cut there and not handed to the plugin",
                            self.max_response
                        );
                        return Err((
                            HttpError::HttpResponseBodySize(Some(self.max_response as u64)),
                            why,
                        ));
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(describe_send(e, connection)),
            }
        }
        let (answer, _) = secrets.scrub(&answer);
        if let Some(tape) = &self.tape {
            tape.keep(HttpExchange {
                connection: connection.name.clone(),
                method: self.method.clone(),
                path: shown_path,
                request: request_json,
                status: status.as_u16(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
                body: RecordedBody::of(&answer),
            });
        }
        Ok((status, headers, answer))
    }

    /// The recorded answer to this request, sent nowhere.
    fn answered(
        &self,
        tape: &HttpTape,
        path: &str,
        body: &[u8],
    ) -> Result<(http::StatusCode, http::HeaderMap, Vec<u8>), (HttpError, String)> {
        let name = &self.connection.name;
        let Some(exchange) = tape.find(name, &self.method, path, &body_json(body)) else {
            let why = format!(
                "levelhost replay: no recorded answer for {name} {} {path}",
                self.method
            );
            return Err((HttpError::InternalError(Some(why.clone())), why));
        };
        let status =
            http::StatusCode::from_u16(exchange.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        let mut headers = http::HeaderMap::new();
        for (n, v) in &exchange.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                headers.append(n, v);
            }
        }
        Ok((status, headers, exchange.body.bytes()))
    }
}

/// The plugin's request body, up to `max_call` bytes.
async fn read_body(mut body: WasiBody, max_call: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the request body could not be read: {e}"))?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
            if out.len() > max_call {
                return Err(format!(
                    "limit max_call_kb exceeded: the request body is over {max_call} bytes"
                ));
            }
        }
    }
    Ok(out)
}

/// A failed send in words, and the `wasi:http` error the plugin gets.
fn describe_send(e: reqwest::Error, connection: &Connection) -> (HttpError, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<connection::DestinationRefused>() {
            let why = format!("denied: {refused}");
            return (HttpError::InternalError(Some(why.clone())), why);
        }
        source = s.source();
    }
    let text = levelhost_core::Chain(&e).to_string();
    // reqwest names the URL, which may be the secret one: say the connection instead.
    let text = match e.url() {
        Some(url) => text.replace(url.as_str(), &connection.name),
        None => text,
    };
    let code = if e.is_timeout() {
        HttpError::ConnectionTimeout
    } else if e.is_connect() {
        HttpError::ConnectionRefused
    } else if e.is_decode() || e.is_body() {
        HttpError::HttpResponseContentCoding(Some(text.clone()))
    } else {
        HttpError::InternalError(Some(text.clone()))
    };
    (code, format!("{} failed: {text}", connection.name))
}

/// A request body as a plan shows it: JSON when it is, else text, else base64.
fn body_json(body: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    if body.is_empty() {
        return serde_json::Value::Null;
    }
    if let Ok(v) = serde_json::from_slice(body) {
        return v;
    }
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::Value::String(text.to_owned()),
        Err(_) => serde_json::json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(body)
        }),
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
