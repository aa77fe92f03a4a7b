//! Language-neutral test cases for a plugin project, in `tests.toml`, run by
//! `levelhost test`:
//!
//! ```toml
//! [[test]]
//! name = "tags the devices offline for 30 days"
//! input = { days = 30 }
//! # The organization: the simulator's seed (the default), or a fixture file
//! # (JSON, as `levelhost sim --fixture` takes), relative to tests.toml.
//! # fixture = "fixtures/small-org.json"
//! # Or a recorded run (`levelhost run --record`), replayed offline with its
//! # own input and grant:
//! # transcript = "recorded/last-tuesday.json"
//! # Where Level's behaviour is unconfirmed, the simulator can behave either way:
//! # variants = { null-parent = "not-found", unknown-cursor = "empty-page", duplicate-name = "accepted" }
//!
//! # What the other systems the plugin calls answer, one request each, in
//! # order; nothing is sent. A request without an answer here fails.
//! # [[test.http]]
//! # connection = "ticketing"
//! # request = "POST /api/Tickets"
//! # status = 201
//! # body = { id = 42 }                # JSON, or a text
//!
//! [test.expect]
//! status = "ok"                       # or "failed" (default "ok")
//! output = { tagged = 15 }            # the output contains this (objects by key, recursively)
//! writes = 1                          # writes made
//! denied = []                         # capabilities refused to the plugin (none here)
//! tagged = { stale = 15 }             # devices carrying each tag after the run
//! state = { cursor = "2025-03-15" }   # the plugin's whole state after the run (keys and text values)
//! requests = ["ticketing POST /api/Tickets"]  # requests to other systems, sent or planned, in order
//! ```
//!
//! A case may give the plugin's state before the run (`state = { cursor =
//! "2025-03-01" }`, beside `input`); the run's writes are kept only when it
//! ends `ok`, as `serve` keeps them.
//!
//! Each case runs the project's `plugin.wasm` against its own fresh simulator,
//! under a grant of exactly the manifest's capabilities and routes, as an
//! operator's least-privilege grant would be.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use level_sim::{Fixture, Tenant};
use levelhost_core::grant::Grant;
use levelhost_core::location::{FileError, Source};
use levelhost_core::manifest::PluginManifest;
use levelhost_core::route;
use levelhost_runtime::engine::LoadedPlugin;
use levelhost_runtime::outbound::{Connections, HttpExchange, HttpTape, RecordedBody};
use levelhost_runtime::runner::{PluginRunner, RunReport, RunRequest};
use levelhost_runtime::state::{MemoryState, StoredValue};
use serde::Deserialize;
use std::sync::Arc;

use crate::TestingError;

/// The file `levelhost test` reads in a project.
pub const TESTS_FILE: &str = "tests.toml";

/// A project's `tests.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The cases, in order.
    #[serde(rename = "test", default)]
    pub tests: Vec<TestCase>,
}

/// One test case: an input, an organization, and what the run must show.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What it checks, in words.
    pub name: String,
    /// The run's input (default `{}`).
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    /// A fixture file holding the organization, relative to `tests.toml`
    /// (default: the simulator's seeded organization).
    #[serde(default)]
    pub fixture: Option<PathBuf>,
    /// A transcript (`levelhost run --record`), relative to `tests.toml`:
    /// the plugin runs against Level's recorded answers, with the recorded
    /// input, grant, clocks and random numbers, offline. A run recorded on a
    /// real organization with a read-only key is a test of real data.
    #[serde(default)]
    pub transcript: Option<PathBuf>,
    /// The plugin's state before the run: keys and their text values (default: none).
    #[serde(default)]
    pub state: Option<BTreeMap<String, String>>,
    /// Plan writes instead of making them.
    #[serde(default)]
    pub dry_run: bool,
    /// How the simulator behaves where Level's behaviour is unconfirmed,
    /// such as `{ unknown-cursor = "empty-page" }`: test both ways.
    #[serde(default)]
    pub variants: level_sim::Variants,
    /// What the other systems answer, one request each, in order.
    #[serde(default)]
    pub http: Vec<StatedAnswer>,
    /// What the run must show.
    #[serde(default)]
    pub expect: Expect,
}

/// What a test says another system answers to one request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatedAnswer {
    /// The connection's name.
    pub connection: String,
    /// The request it answers: `METHOD /path?query` (any body).
    pub request: String,
    /// The status (default 200).
    #[serde(default = "ok_status")]
    pub status: u16,
    /// The answer's body: a text as it is, anything else as JSON.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

fn ok_status() -> u16 {
    200
}

impl StatedAnswer {
    fn exchange(&self) -> Result<HttpExchange, String> {
        let (method, path) = self
            .request
            .split_once(' ')
            .filter(|(m, p)| !m.is_empty() && p.starts_with('/'))
            .ok_or_else(|| {
                format!(
                    "request {:?} must be a method and a path, such as \"POST /api/Tickets\"",
                    self.request
                )
            })?;
        let (headers, body) = match &self.body {
            None => (Vec::new(), String::new()),
            Some(serde_json::Value::String(text)) => (Vec::new(), text.clone()),
            Some(json) => (
                vec![("content-type".to_owned(), "application/json".to_owned())],
                json.to_string(),
            ),
        };
        Ok(HttpExchange {
            connection: self.connection.clone(),
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            request: None,
            status: self.status,
            headers,
            body: RecordedBody::Text(body),
        })
    }
}

/// What a run must show; each absent field is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `ok` or `failed` (default `ok`).
    #[serde(default)]
    pub status: Option<Status>,
    /// A document the output must contain: objects by key, recursively;
    /// arrays and scalars equal.
    #[serde(default)]
    pub output: Option<serde_json::Value>,
    /// Text the failure must contain.
    #[serde(default)]
    pub error: Option<String>,
    /// How many writes the run made (or planned, in a dry run).
    #[serde(default)]
    pub writes: Option<u64>,
    /// The capabilities the host refused to the plugin; `[]` means none.
    #[serde(default)]
    pub denied: Option<Vec<String>>,
    /// How many devices carry each named tag after the run.
    #[serde(default)]
    pub tagged: Option<BTreeMap<String, usize>>,
    /// The plugin's whole state after the run: every key and its text value.
    #[serde(default)]
    pub state: Option<BTreeMap<String, String>>,
    /// The requests to other systems the run sent (or planned), in order,
    /// as `CONNECTION METHOD /path`.
    #[serde(default)]
    pub requests: Option<Vec<String>>,
}

/// How a run ended, as a test expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It returned an output.
    Ok,
    /// It failed, for any reason.
    Failed,
}

impl TestFile {
    /// Reads and checks `tests.toml`; errors name the file and line.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let source = Source::read(path)?;
        let file: Self = source.parse()?;
        if file.tests.is_empty() {
            return Err(source.error(None, "no [[test]] in the file"));
        }
        Ok(file)
    }
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// What did not hold; empty when the case passed.
    pub problems: Vec<String>,
    /// The run.
    pub report: RunReport,
}

impl CaseResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs one case of the file at `tests_path` with the loaded `plugin`.
pub async fn run_case(
    runner: &PluginRunner,
    plugin: &LoadedPlugin,
    manifest: &PluginManifest,
    tests_path: &Path,
    case: &TestCase,
) -> Result<CaseResult, TestingError> {
    let here = tests_path.parent().unwrap_or_else(|| Path::new("."));
    if let Some(file) = &case.transcript {
        return replay_case(runner, plugin, manifest, tests_path, case, &here.join(file)).await;
    }
    let tenant = match &case.fixture {
        None => level_sim::Simulator::seeded(),
        Some(file) => load_fixture(&here.join(file))?,
    };
    let input = case.input.clone().unwrap_or_else(|| serde_json::json!({}));
    if let Err(problem) = manifest.check_input(&input) {
        return Err(TestingError::Case {
            file: tests_path.to_owned(),
            case: case.name.clone(),
            problem: format!("the input does not match plugin.toml's input schema: {problem}"),
        });
    }
    let answers = case
        .http
        .iter()
        .map(StatedAnswer::exchange)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|problem| TestingError::Case {
            file: tests_path.to_owned(),
            case: case.name.clone(),
            problem,
        })?;
    let names: std::collections::BTreeSet<&String> = manifest
        .connections
        .keys()
        .chain(answers.iter().map(|a| &a.connection))
        .collect();
    let connections = Connections::stand_ins(names).map_err(TestingError::Connection)?;
    let http = HttpTape::answer(answers);
    let sim = crate::start_simulator_with(tenant, case.variants).await?;
    let client = crate::client_of(&sim)?;
    let state = MemoryState::default();
    state.seed(
        &plugin.name,
        case.state
            .iter()
            .flatten()
            .map(|(k, v)| {
                let value = StoredValue {
                    value: v.clone().into_bytes(),
                    version: 1,
                };
                (k.clone(), value)
            })
            .collect(),
    );
    let request = RunRequest {
        grant: Grant {
            connections: manifest.connections.clone(),
            ..Grant::exactly(&plugin.name, manifest.capabilities)
        },
        connections: Some(Arc::new(connections)),
        http_tape: Some(http.clone()),
        dry_run: case.dry_run,
        state: Some(Arc::new(state.clone())),
        ..RunRequest::manual(input.to_string())
    };
    let report = runner.run(plugin, client, request).await?;
    let after = sim.tenant().to_fixture();
    sim.stop().await;
    let mut problems = check(&case.expect, &report, &after);
    problems.extend(
        http.unanswered()
            .iter()
            .map(|r| format!("the plugin made a request the case states no answer for: {r}")),
    );
    if report.outcome.is_ok() && !case.dry_run {
        state.commit(&plugin.name, &report.state);
    }
    if let Some(expected) = &case.expect.state {
        let now: BTreeMap<String, String> = state
            .entries(&plugin.name)
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.value).into_owned()))
            .collect();
        if &now != expected {
            problems.push(format!(
                "expected the state after the run to be {expected:?}; it is {now:?}"
            ));
        }
    }
    Ok(CaseResult {
        name: case.name.clone(),
        problems,
        report,
    })
}

fn load_fixture(path: &Path) -> Result<Tenant, TestingError> {
    let fixture: Fixture = crate::read_json(path, "not an organization fixture")?;
    Tenant::from_fixture(fixture).map_err(|source| TestingError::Fixture {
        path: path.to_owned(),
        source,
    })
}

/// A case run against a transcript.
async fn replay_case(
    runner: &PluginRunner,
    plugin: &LoadedPlugin,
    manifest: &PluginManifest,
    tests_path: &Path,
    case: &TestCase,
    file: &Path,
) -> Result<CaseResult, TestingError> {
    let refuse = |what: &str| TestingError::Case {
        file: tests_path.to_owned(),
        case: case.name.clone(),
        problem: format!("a transcript case takes {what} from the transcript"),
    };
    if case.input.is_some() || case.fixture.is_some() || case.dry_run || !case.http.is_empty() {
        return Err(refuse(
            "its input, organization, dry_run and other systems' answers",
        ));
    }
    if case.expect.tagged.is_some() {
        return Err(refuse("the organization (so `tagged` cannot be checked):"));
    }
    if case.state.is_some() || case.expect.state.is_some() {
        return Err(refuse(
            "the state the run read (so `state` cannot be given or checked):",
        ));
    }
    let transcript = crate::transcript::Transcript::load(file)?;
    // The case runs under plugin.toml's capabilities, never the recorded
    // grant's: the recorded scopes and limits stay, so the answers fit.
    let grant = Grant {
        capabilities: manifest.capabilities,
        connections: manifest.connections.clone(),
        ..transcript.grant.clone()
    };
    let replay = crate::transcript::replay_under(runner, plugin, &transcript, grant).await?;
    let mut problems = wider_than(&transcript, manifest);
    problems.extend(check(&case.expect, &replay.report, &Fixture::default()));
    problems.extend(
        replay
            .unanswered
            .iter()
            .map(|r| format!("the plugin made a request the transcript has no answer for: {r}")),
    );
    Ok(CaseResult {
        name: case.name.clone(),
        problems,
        report: replay.report,
    })
}

/// The capabilities the recorded run used that plugin.toml does not ask
/// for, each a problem of the case: a transcript made under a wider grant
/// tests nothing the plugin will be granted.
fn wider_than(
    transcript: &crate::transcript::Transcript,
    manifest: &PluginManifest,
) -> Vec<String> {
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in transcript.calls.iter().filter(|c| c.allowed) {
        let Ok(op) = serde_json::from_value::<levelhost_core::capability::Operation>(
            serde_json::Value::String(call.operation.clone()),
        ) else {
            continue;
        };
        let cap = op.capability();
        if !manifest.capabilities.contains(&cap) {
            let ops = used.entry(cap.to_string()).or_default();
            if !ops.contains(&call.operation) {
                ops.push(call.operation.clone());
            }
        }
    }
    used.into_iter()
        .map(|(cap, ops)| {
            format!(
                "the transcript's run used {cap} ({}), which plugin.toml does not ask for: the case runs under plugin.toml's capabilities",
                ops.join(", ")
            )
        })
        .collect()
}

/// What of `expect` the run did not show.
pub fn check(expect: &Expect, report: &RunReport, after: &Fixture) -> Vec<String> {
    let mut problems = Vec::new();
    let status = expect.status.unwrap_or(Status::Ok);
    match (&report.outcome, status) {
        (Ok(_), Status::Ok) | (Err(_), Status::Failed) => {}
        (Ok(output), Status::Failed) => {
            problems.push(format!("expected the run to fail; it returned {output}"))
        }
        (Err(failure), Status::Ok) => problems.push(format!("the run failed: {failure}")),
    }
    if let Some(expected) = &expect.output {
        match &report.outcome {
            Ok(output) => {
                if let Some(at) = mismatch(expected, output, "") {
                    problems.push(format!(
                        "the output differs at {}: expected {}, got {output}",
                        if at.is_empty() { "the top" } else { &at },
                        expected
                    ));
                }
            }
            Err(_) if status == Status::Ok => {}
            Err(_) => problems.push("expected an output, but the run failed".to_owned()),
        }
    }
    if let Some(text) = &expect.error {
        match &report.outcome {
            Err(failure) if failure.to_string().contains(text.as_str()) => {}
            Err(failure) => problems.push(format!(
                "expected the failure to contain {text:?}; it was: {failure}"
            )),
            Ok(_) => problems.push(format!(
                "expected a failure containing {text:?}; the run succeeded"
            )),
        }
    }
    if let Some(writes) = expect.writes
        && report.writes != writes
    {
        problems.push(format!(
            "expected {writes} writes, the run made {}",
            report.writes
        ));
    }
    if let Some(expected) = &expect.denied {
        let denied: Vec<&str> = report
            .audit
            .iter()
            .filter(|r| !r.allowed)
            .filter_map(|r| r.reason.as_deref())
            .collect();
        if expected.is_empty() && !denied.is_empty() {
            problems.push(format!("expected no denial; the host refused: {denied:?}"));
        }
        for capability in expected {
            if !denied.iter().any(|r| r.contains(capability.as_str())) {
                problems.push(format!(
                    "expected a call refused for lack of {capability}; denials: {denied:?}"
                ));
            }
        }
    }
    if let Some(expected) = &expect.requests {
        let made = requests_made(report);
        if &made != expected {
            problems.push(format!(
                "expected the requests to other systems {expected:?}; the run made {made:?}"
            ));
        }
    }
    if let Some(tagged) = &expect.tagged {
        for (tag, count) in tagged {
            let carried = after
                .devices
                .iter()
                .filter(|d| d.tags.iter().any(|t| t == tag))
                .count();
            if carried != *count {
                problems.push(format!(
                    "expected {count} devices tagged {tag:?}, found {carried}"
                ));
            }
        }
    }
    problems
}

/// The requests to other systems a run sent or planned, in order, as
/// `CONNECTION METHOD /path`.
fn requests_made(report: &RunReport) -> Vec<String> {
    report
        .audit
        .iter()
        .filter(|r| r.operation == route::HTTP_OPERATION && r.allowed)
        .filter(|r| r.stage == levelhost_core::audit::Stage::Done)
        .map(|r| {
            format!(
                "{} {}",
                route::connection_of(&r.targets).unwrap_or_default(),
                route::request_of(&r.targets).unwrap_or_default()
            )
        })
        .collect()
}

/// Where `actual` does not contain `expected`, as a JSON pointer; `None` when it does.
fn mismatch(expected: &serde_json::Value, actual: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| {
            let here = format!("{at}/{key}");
            match have.get(key) {
                Some(found) => mismatch(value, found, &here),
                None => Some(here),
            }
        }),
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => want
            .iter()
            .zip(have)
            .enumerate()
            .find_map(|(i, (w, h))| mismatch(w, h, &format!("{at}/{i}"))),
        (Value::Number(want), Value::Number(have)) => {
            (want.as_f64() != have.as_f64()).then(|| at.to_owned())
        }
        _ => (expected != actual).then(|| at.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_output_contains_what_a_test_expects_by_key() {
        let output = json!({"devices": 60, "by_group": {"hq": 10, "lab": 5}, "ids": [1, 2]});
        assert_eq!(mismatch(&json!({"devices": 60}), &output, ""), None);
        assert_eq!(
            mismatch(&json!({"by_group": {"hq": 10}}), &output, ""),
            None
        );
        assert_eq!(mismatch(&json!({"devices": 60.0}), &output, ""), None);
        assert_eq!(
            mismatch(&json!({"by_group": {"hq": 11}}), &output, ""),
            Some("/by_group/hq".to_owned())
        );
        assert_eq!(
            mismatch(&json!({"missing": 1}), &output, ""),
            Some("/missing".to_owned())
        );
        assert_eq!(
            mismatch(&json!({"ids": [1]}), &output, ""),
            Some("/ids".to_owned())
        );
    }

    #[test]
    fn a_case_names_the_simulator_variants_it_runs_under() {
        let file: TestFile = toml::from_str(
            "[[test]]\nname = \"v\"\nvariants = { unknown-cursor = \"empty-page\" }\n",
        )
        .unwrap();
        assert_eq!(
            file.tests[0].variants.unknown_cursor,
            level_sim::UnknownCursor::EmptyPage
        );
        assert!(
            toml::from_str::<TestFile>(
                "[[test]]\nname = \"v\"\nvariants = { colour = \"blue\" }\n"
            )
            .is_err()
        );
    }

    #[test]
    fn a_tests_file_names_its_bad_line() {
        let dir = std::env::temp_dir().join(format!("levelhost-cases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(TESTS_FILE);
        std::fs::write(
            &path,
            "[[test]]\nname = \"counts\"\n\n[test.expect]\nstatus = \"ok\"\noutptu = {}\n",
        )
        .unwrap();
        let err = TestFile::load(&path).unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.to_string().contains("outptu"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
