//! Record a run, and replay it offline: `levelhost run ... --record FILE`
//! writes a [`Transcript`]; `levelhost replay FILE [--component NEW]` runs
//! the component again against it and says where the two runs part.
//!
//! A transcript holds the input, the component's digest, the grant, every
//! request the host sent to Level with Level's answer (no headers, so no key;
//! answers are kept as the client read them, with the key scrubbed), every
//! request to another system with the answer the plugin was handed
//! (scrubbed of the connection's credential), every
//! host call with its verdict, the clock readings and the random seed the
//! guest saw, and the run's output, failure and plan.
//!
//! Replaying starts a loopback server that answers each request with the
//! answer recorded for the same method, path, query and body (in order, when
//! the same request was made more than once), so the gate, the host
//! functions and the plugin run exactly as they did, and no request reaches
//! Level; requests to other systems are answered the same way, by connection,
//! method, path and body, and none is sent. A request the transcript has no answer for is answered 400 and
//! named in the report: that is where a changed component left the recorded
//! run's path.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use level_api::transcript::{Exchange, Recorder};
use level_api::{ApiKey, ClientConfig, LevelClient};
use levelhost_core::grant::Grant;
use levelhost_runtime::engine::LoadedPlugin;
use levelhost_runtime::outbound::{Connections, HttpExchange, HttpTape};
use levelhost_runtime::runner::{PluginRunner, RunReport, RunRequest};
use levelhost_runtime::state::{ReadState, StateRecorder};
use levelhost_runtime::tape::{SavedTape, Tape};
use serde::{Deserialize, Serialize};

use crate::TestingError;

/// The version of the transcript format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Everything needed to run a recorded run again, and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// The format's version ([`FORMAT`]).
    pub levelhost_transcript: u32,
    /// The plugin's name.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// The component's digest.
    pub digest: String,
    /// Where the component was when it was recorded: `levelhost replay`
    /// runs it from there unless told another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<std::path::PathBuf>,
    /// The run's input.
    pub input: serde_json::Value,
    /// Whether writes were planned instead of sent.
    pub dry_run: bool,
    /// The grant the run had.
    pub grant: Grant,
    /// The clock readings and random seed the guest saw.
    pub tape: SavedTape,
    /// Every request to Level and its answer, in order.
    pub exchanges: Vec<Exchange>,
    /// Every request to another system and its answer, in the order they ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpExchange>,
    /// Every host call, in order.
    pub calls: Vec<Call>,
    /// The output, when the run succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The writes a dry run planned.
    #[serde(default)]
    pub plan: Vec<PlannedWrite>,
    /// What the run read of its plugin's committed state, answered again on replay.
    #[serde(default, skip_serializing_if = "ReadState::is_empty")]
    pub state: ReadState,
}

/// One host call, as the audit saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The WIT function.
    pub operation: String,
    /// The objects it named or reached.
    pub targets: Vec<String>,
    /// Whether the gate allowed it.
    pub allowed: bool,
    /// Why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One write a dry run planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedWrite {
    /// The WIT function.
    pub operation: String,
    /// The objects it would change.
    pub targets: Vec<String>,
    /// What it would send.
    pub request: serde_json::Value,
}

/// What a run needs to be recorded: a client that keeps its exchanges and a
/// tape for the guest's clocks. Run with them, then make the transcript with
/// [`Recording::finish`].
#[derive(Debug, Clone)]
pub struct Recording {
    recorder: Recorder,
    /// The guest's clocks and random numbers, for the run request.
    pub tape: Tape,
    /// What the run reads of its committed state: wrap the run's state store with it.
    pub state: StateRecorder,
    /// The run's requests to other systems: give it to the run request.
    pub http: HttpTape,
}

impl Recording {
    /// A recording about to start.
    pub fn start() -> Self {
        Self {
            recorder: Recorder::new(),
            tape: Tape::record(),
            state: StateRecorder::default(),
            http: HttpTape::record(),
        }
    }

    /// `client`, recording into this recording.
    pub fn client(&self, client: LevelClient) -> LevelClient {
        client.recording(self.recorder.clone())
    }

    /// The transcript of the run that `report` describes.
    pub fn finish(
        &self,
        report: &RunReport,
        input: serde_json::Value,
        grant: Grant,
        version: &str,
        dry_run: bool,
    ) -> Transcript {
        Transcript {
            levelhost_transcript: FORMAT,
            plugin: report.plugin.to_string(),
            version: version.to_owned(),
            digest: report.digest.to_string(),
            component: None,
            input,
            dry_run,
            grant,
            tape: self.tape.saved(),
            exchanges: self.recorder.exchanges(),
            http: self.http.recorded(),
            calls: calls(report),
            output: report.outcome.as_ref().ok().cloned(),
            failure: report.outcome.as_ref().err().map(ToString::to_string),
            plan: plan(report),
            state: self.state.read(),
        }
    }
}

fn calls(report: &RunReport) -> Vec<Call> {
    report
        .audit
        .iter()
        // The run's own end record: its outcome is compared on its own.
        .filter(|r| r.operation != "run")
        .map(|r| Call {
            operation: r.operation.to_string(),
            targets: r.targets.clone(),
            allowed: r.allowed,
            reason: r.reason.clone(),
        })
        .collect()
}

fn plan(report: &RunReport) -> Vec<PlannedWrite> {
    report
        .plan
        .iter()
        .map(|p| PlannedWrite {
            operation: p.operation.clone(),
            targets: p.targets.clone(),
            request: p.request.clone(),
        })
        .collect()
}

impl Transcript {
    /// Reads a transcript file; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Self, TestingError> {
        let transcript: Self = crate::read_json(path, "not a levelhost transcript")?;
        if transcript.levelhost_transcript != FORMAT {
            return Err(TestingError::TranscriptFormat {
                path: path.to_owned(),
                found: transcript.levelhost_transcript,
            });
        }
        Ok(transcript)
    }

    /// Checks, before a run, that a transcript can be written at `path`, so a
    /// run with effects is not left without its recording.
    pub fn check_writable(path: &Path) -> Result<(), TestingError> {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, b"")
            .and_then(|()| std::fs::remove_file(&partial))
            .map_err(|source| TestingError::File {
                path: path.to_owned(),
                doing: "write the transcript there",
                source,
            })
    }

    /// Writes the transcript as JSON, whole or not at all.
    pub fn save(&self, path: &Path) -> Result<(), TestingError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| TestingError::Json {
            path: path.to_owned(),
            what: "the transcript cannot be encoded",
            source,
        })?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|source| TestingError::File {
                path: path.to_owned(),
                doing: "write",
                source,
            })
    }
}

/// A replayed run and how it compares with the recorded one.
#[derive(Debug)]
pub struct Replay {
    /// The replayed run.
    pub report: RunReport,
    /// Requests the transcript had no answer for, as `METHOD /path?query`.
    pub unanswered: Vec<String>,
    /// Where the replayed run differs from the recorded one, in words; empty
    /// when it did exactly the same.
    pub differences: Vec<String>,
}

/// Runs `plugin` again against `transcript`: same input, grant, clocks and
/// random numbers, and Level's recorded answers. No request leaves this machine.
pub async fn replay(
    runner: &PluginRunner,
    plugin: &LoadedPlugin,
    transcript: &Transcript,
) -> Result<Replay, TestingError> {
    replay_under(runner, plugin, transcript, transcript.grant.clone()).await
}

/// [`replay`] under another grant than the recorded one: `levelhost test`
/// replays under the capabilities of the project's `plugin.toml`, so a
/// transcript recorded under a wider grant proves nothing beyond it.
pub async fn replay_under(
    runner: &PluginRunner,
    plugin: &LoadedPlugin,
    transcript: &Transcript,
    grant: Grant,
) -> Result<Replay, TestingError> {
    let server = ReplayServer::start(transcript.exchanges.clone()).await?;
    let mut config = ClientConfig::new(format!("http://{}", server.addr));
    // The recorded answers hold every retry the recorded run made: retry
    // them in the same order, without waiting again.
    config.retry = level_api::RetryPolicy {
        base_delay: std::time::Duration::ZERO,
        max_delay: std::time::Duration::ZERO,
        ..level_api::RetryPolicy::default()
    };
    let client =
        LevelClient::new(config, ApiKey::new("replayed-no-key")).map_err(TestingError::Client)?;
    let connections =
        Connections::stand_ins(grant.connections.keys()).map_err(TestingError::Connection)?;
    let http = HttpTape::answer(transcript.http.clone());
    let request = RunRequest {
        connections: Some(Arc::new(connections)),
        http_tape: Some(http.clone()),
        grant: Grant {
            plugin: plugin.name.to_string(),
            ..grant
        },
        dry_run: transcript.dry_run,
        version: transcript.version.clone(),
        tape: Some(Tape::replay(transcript.tape.clone())),
        state: Some(Arc::new(transcript.state.clone())),
        ..RunRequest::manual(transcript.input.to_string())
    };
    let report = runner.run(plugin, client, request).await?;
    let mut unanswered = server.unanswered();
    unanswered.extend(http.unanswered());
    server.stop();
    let differences = compare(transcript, &report, &unanswered);
    Ok(Replay {
        report,
        unanswered,
        differences,
    })
}

/// Where `report` differs from what `transcript` recorded.
fn compare(transcript: &Transcript, report: &RunReport, unanswered: &[String]) -> Vec<String> {
    let mut differences = Vec::new();
    if *report.digest != *transcript.digest {
        differences.push(format!(
            "the component is {}, the recorded run's was {}",
            report.digest, transcript.digest
        ));
    }
    let replayed = calls(report);
    let first = transcript
        .calls
        .iter()
        .zip(&replayed)
        .position(|(recorded, now)| recorded != now);
    match first {
        Some(at) => differences.push(format!(
            "the host calls part at call {}: recorded {}, replayed {}",
            at + 1,
            describe(&transcript.calls[at]),
            describe(&replayed[at])
        )),
        None if transcript.calls.len() != replayed.len() => differences.push(format!(
            "the recorded run made {} host calls, the replayed run {}",
            transcript.calls.len(),
            replayed.len()
        )),
        None => {}
    }
    for request in unanswered {
        differences.push(format!(
            "a request the recorded run did not make: {request}"
        ));
    }
    let output = report.outcome.as_ref().ok();
    if output != transcript.output.as_ref() {
        differences.push(format!(
            "the output differs: recorded {}, replayed {}",
            shown(transcript.output.as_ref()),
            shown(output)
        ));
    }
    let failure = report.outcome.as_ref().err().map(ToString::to_string);
    if failure != transcript.failure {
        differences.push(format!(
            "the failure differs: recorded {}, replayed {}",
            transcript.failure.as_deref().unwrap_or("none"),
            failure.as_deref().unwrap_or("none")
        ));
    }
    let planned = plan(report);
    for write in transcript.plan.iter().filter(|w| !planned.contains(w)) {
        differences.push(format!(
            "the replayed plan lacks {} {}",
            write.operation, write.request
        ));
    }
    for write in planned.iter().filter(|w| !transcript.plan.contains(w)) {
        differences.push(format!(
            "the replayed plan adds {} {}",
            write.operation, write.request
        ));
    }
    differences
}

fn describe(call: &Call) -> String {
    format!(
        "{}({}){}",
        call.operation,
        call.targets.join(", "),
        if call.allowed { "" } else { " denied" }
    )
}

fn shown(value: Option<&serde_json::Value>) -> String {
    value.map_or_else(|| "none".to_owned(), ToString::to_string)
}

/// A loopback server answering requests from recorded exchanges.
struct ReplayServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Default)]
struct ServerState {
    /// The recorded exchanges, each with whether it was answered already.
    exchanges: Mutex<Vec<(Exchange, bool)>>,
    unanswered: Mutex<Vec<String>>,
}

impl ReplayServer {
    async fn start(exchanges: Vec<Exchange>) -> Result<Self, TestingError> {
        let state = Arc::new(ServerState {
            exchanges: Mutex::new(exchanges.into_iter().map(|e| (e, false)).collect()),
            unanswered: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(TestingError::ReplayServer)?;
        let addr = listener.local_addr().map_err(TestingError::ReplayServer)?;
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
            let state = shared.clone();
            async move { state.answer(&method, &uri, &body) }
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::warn!("the replay server stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(shutdown),
        })
    }

    fn unanswered(&self) -> Vec<String> {
        self.state
            .unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl ServerState {
    fn answer(&self, method: &Method, uri: &Uri, body: &[u8]) -> Response {
        let path = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), ToString::to_string);
        let body = (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned());
        let mut exchanges = self
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let found = exchanges.iter_mut().find(|(e, used)| {
            !*used && e.method == method.as_str() && e.path == path && e.body == body
        });
        let Some((exchange, used)) = found else {
            self.unanswered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("{method} {path}"));
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({
                    "error": "levelhost replay: the recorded run made no such request"
                })),
            )
                .into_response();
        };
        *used = true;
        // A recorded run that got no answer gets none it can use now either.
        let status = StatusCode::from_u16(exchange.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut response = (status, exchange.response.clone()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(retry) = exchange
            .retry_after
            .as_deref()
            .and_then(|r| HeaderValue::from_str(r).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, retry);
        }
        response
    }
}
