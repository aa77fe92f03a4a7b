//! Prometheus metrics of `serve` (`prometheus-client`), served as
//! OpenMetrics to a scraper that asks for it and in Prometheus' classic text
//! format (0.0.4) otherwise: runs, their durations, Level requests, 429s and
//! rate-budget waits per key, gate denials, limit hits, webhook deliveries
//! and schedule lateness.

use std::sync::Mutex;
use std::time::Duration;

use level_api::LevelClient;
use levelhost_core::capability::Operation;
use levelhost_runtime::runner::{RunFailure, RunReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    plugin: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    key: String,
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    plugin: String,
    connection: String,
    verdict: String,
    status: String,
}

/// What the gate made of a request to another system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Denied,
    Planned,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Planned => "planned",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    plugin: String,
    capability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    plugin: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    plugin: String,
    verdict: String,
}

type Histograms = Family<PluginLabels, Histogram, fn() -> Histogram>;

/// The `plugin` label of whatever is counted for a name no served plugin has
/// (a webhook delivery to a made-up path): one series, however many names.
pub const UNKNOWN_PLUGIN: &str = "(unknown)";

/// A label value as the text exposition needs it: `\`, `"` and line breaks
/// escaped. prometheus-client writes label values as they are, so every
/// label passes through here; a value can never end its quotes or its line.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The metrics of one `serve`.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    durations: Histograms,
    requests: Family<RequestLabels, Counter>,
    connection_requests: Family<ConnectionLabels, Counter>,
    rate_limited: Family<KeyLabels, Counter>,
    budget_wait: Family<KeyLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    denials: Family<DenialLabels, Counter>,
    limits: Family<LimitLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    lateness: Histograms,
    /// The clients whose counters are read at each scrape, by key name.
    clients: Mutex<Vec<(String, LevelClient)>>,
    /// Requests to other systems since start, by plugin and connection, for the console.
    connection_counts: Mutex<std::collections::BTreeMap<(String, String), ConnectionCounts>>,
    gateway_requests: Family<GatewayLabels, Counter>,
    /// The gateway's requests since start, by client, for the console.
    client_counts: Mutex<std::collections::BTreeMap<String, ClientCounts>>,
}

/// A gateway client's requests since `serve` started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounts {
    /// Answered by Level through the gate.
    pub allowed: u64,
    /// Refused by the gate (`403`).
    pub denied: u64,
    /// Refused before the gate, or failed.
    pub other: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabels {
    client: String,
    operation: String,
    verdict: String,
}

impl levelhost_gateway::Observer for Metrics {
    fn request(&self, client: &str, operation: &str, verdict: levelhost_gateway::Verdict) {
        self.gateway_requests
            .get_or_create(&GatewayLabels {
                client: client.to_owned(),
                operation: operation.to_owned(),
                verdict: verdict.as_str().to_owned(),
            })
            .inc();
        let mut counts = self
            .client_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(client.to_owned()).or_default();
        match verdict {
            levelhost_gateway::Verdict::Allowed => count.allowed += 1,
            levelhost_gateway::Verdict::Denied => count.denied += 1,
            levelhost_gateway::Verdict::Refused | levelhost_gateway::Verdict::Failed => {
                count.other += 1;
            }
        }
    }
}

/// A plugin's requests to one connection since `serve` started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Sent, whatever the answer.
    pub sent: u64,
    /// Sent and answered with a status of 400 or more, or not answered.
    pub failed: u64,
    /// Refused by the gate; nothing sent.
    pub denied: u64,
    /// Planned by a dry run; nothing sent.
    pub planned: u64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn duration_histogram() -> Histogram {
    // 10 ms to about 80 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// `plugin`'s requests to each connection since start, by connection name.
    pub fn connection_counts(&self, plugin: &str) -> Vec<(String, ConnectionCounts)> {
        self.connection_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|((p, _), _)| p == plugin)
            .map(|((_, c), counts)| (c.clone(), *counts))
            .collect()
    }

    /// A gateway client's requests since start.
    pub fn client_counts(&self, client: &str) -> ClientCounts {
        self.client_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(client)
            .copied()
            .unwrap_or_default()
    }

    /// Every metric, registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("levelhost");
        let m = Self {
            runs: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            requests: Family::default(),
            connection_requests: Family::default(),
            rate_limited: Family::default(),
            budget_wait: Family::default(),
            denials: Family::default(),
            limits: Family::default(),
            deliveries: Family::default(),
            lateness: Family::new_with_constructor(duration_histogram),
            clients: Mutex::default(),
            connection_counts: Mutex::default(),
            gateway_requests: Family::default(),
            client_counts: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "gateway_requests",
            "Requests to the gateway, by client (? when no client key), operation and verdict (allowed, denied, refused, failed)",
            m.gateway_requests.clone(),
        );
        registry.register(
            "runs",
            "Runs ended (or waiting), by plugin and status",
            m.runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "How long runs took, by plugin",
            m.durations.clone(),
        );
        registry.register(
            "level_requests",
            "Requests sent to Level, by key, operation and HTTP status (0: no answer)",
            m.requests.clone(),
        );
        registry.register(
            "connection_requests",
            "Requests plugins made to other systems, by plugin, connection, verdict (allowed, denied, planned) and HTTP status (0: no answer)",
            m.connection_requests.clone(),
        );
        registry.register(
            "level_rate_limited",
            "Answers from Level with status 429, by key",
            m.rate_limited.clone(),
        );
        registry.register(
            "rate_budget_wait_seconds",
            "Time spent waiting for a key's rate budget (its limit and Level's Retry-After), by key",
            m.budget_wait.clone(),
        );
        registry.register(
            "gate_denials",
            "Calls the gate denied, by plugin and capability",
            m.denials.clone(),
        );
        registry.register(
            "limit_hits",
            "Runs ended by a limit of their grant, by plugin and limit",
            m.limits.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries, by plugin and verdict",
            m.deliveries.clone(),
        );
        registry.register(
            "schedule_lateness_seconds",
            "How long after its planned time a scheduled run started, by plugin",
            m.lateness.clone(),
        );
        Self { registry, ..m }
    }

    /// Reads `client`'s request counters at each scrape, as key `key`.
    pub fn watch_client(&self, key: &str, client: &LevelClient) {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !clients
            .iter()
            .any(|(_, c)| std::sync::Arc::ptr_eq(c.stats(), client.stats()))
        {
            clients.push((key.to_owned(), client.clone()));
        }
    }

    /// Counts a run that ended (or waits) with `status`, and what its report shows.
    pub fn run(&self, plugin: &str, status: &str, report: Option<&RunReport>) {
        self.runs
            .get_or_create(&RunLabels {
                plugin: label(plugin),
                status: label(status),
            })
            .inc();
        let Some(report) = report else {
            return;
        };
        let labels = PluginLabels {
            plugin: label(plugin),
        };
        self.durations
            .get_or_create(&labels)
            .observe(report.duration.as_secs_f64());
        for record in report
            .audit
            .iter()
            .filter(|r| r.operation == levelhost_core::route::HTTP_OPERATION)
        {
            let connection =
                levelhost_core::route::connection_of(&record.targets).unwrap_or_default();
            let verdict = if !record.allowed {
                Verdict::Denied
            } else if record.dry_run {
                Verdict::Planned
            } else {
                Verdict::Allowed
            };
            {
                let mut counts = self
                    .connection_counts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let count = counts
                    .entry((plugin.to_owned(), connection.to_owned()))
                    .or_default();
                match verdict {
                    Verdict::Denied => count.denied += 1,
                    Verdict::Planned => count.planned += 1,
                    Verdict::Allowed => {
                        count.sent += 1;
                        let status = record.upstream_status.unwrap_or(0);
                        if status == 0 || status >= 400 {
                            count.failed += 1;
                        }
                    }
                }
            }
            self.connection_requests
                .get_or_create(&ConnectionLabels {
                    plugin: label(plugin),
                    connection: label(connection),
                    verdict: verdict.as_str().to_owned(),
                    status: record.upstream_status.unwrap_or(0).to_string(),
                })
                .inc();
        }
        for record in report.audit.iter().filter(|r| !r.allowed) {
            let capability = serde_json::from_value::<Operation>(serde_json::Value::String(
                record.operation.to_string(),
            ))
            .map(|op| op.capability().to_string())
            .unwrap_or_else(|_| record.operation.to_string());
            if record
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("denied"))
            {
                self.denials
                    .get_or_create(&DenialLabels {
                        plugin: label(plugin),
                        capability: label(&capability),
                    })
                    .inc();
            }
        }
        let limit = match &report.outcome {
            Err(RunFailure::LimitExceeded { limit, .. }) => Some(limit.clone()),
            Err(RunFailure::TimedOut(_)) => Some("timeout_secs".to_owned()),
            _ => None,
        };
        if let Some(limit) = limit {
            self.limits
                .get_or_create(&LimitLabels {
                    plugin: label(plugin),
                    limit: label(&limit),
                })
                .inc();
        }
    }

    /// Counts a webhook delivery and its verdict.
    pub fn delivery(&self, plugin: &str, verdict: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                plugin: label(plugin),
                verdict: label(verdict),
            })
            .inc();
    }

    /// Records how late a scheduled run started.
    pub fn lateness(&self, plugin: &str, late: Duration) {
        self.lateness
            .get_or_create(&PluginLabels {
                plugin: label(plugin),
            })
            .observe(late.as_secs_f64());
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (key, client) in clients {
            let stats = client.stats();
            for (operation, status, n) in stats.requests() {
                let counter = self.requests.get_or_create(&RequestLabels {
                    key: label(&key),
                    operation: label(operation),
                    status: status.to_string(),
                });
                counter.inc_by(n.saturating_sub(counter.get()));
            }
            let limited = self
                .rate_limited
                .get_or_create(&KeyLabels { key: label(&key) });
            limited.inc_by(stats.rate_limited().saturating_sub(limited.get()));
            let waited = self
                .budget_wait
                .get_or_create(&KeyLabels { key: label(&key) });
            let more = stats.budget_wait().as_secs_f64() - waited.get();
            if more > 0.0 {
                waited.inc_by(more);
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        out
    }

    /// The metrics in the format a scraper's `Accept` header asks for, with
    /// its content type: OpenMetrics when it names
    /// `application/openmetrics-text` (as Prometheus does), else the classic text format.
    pub fn negotiate(&self, accept: Option<&str>) -> (&'static str, String) {
        let open = self.render();
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            return (OPENMETRICS, open);
        }
        (CLASSIC, classic(&open))
    }
}

/// The content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus' classic text format.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as Prometheus' classic text format: no `# EOF` or
/// `# UNIT` lines, and a counter's `# HELP`/`# TYPE` name its `_total`
/// samples (OpenMetrics names the family without the suffix).
fn classic(open: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 23, point 3: a label value cannot end its quotes or its line.
    #[test]
    fn a_label_value_cannot_inject_a_series() {
        let m = Metrics::new();
        m.delivery("x\"} 1\nfake_series{a=\"", "accepted");
        let text = m.render();
        assert!(
            !text.lines().any(|l| l.starts_with("fake_series")),
            "{text}"
        );
        assert!(
            text.contains(r#"plugin="x\"} 1\nfake_series{a=\"""#),
            "{text}"
        );
    }

    /// Issue 23, point 12: the classic format names counters by their samples.
    #[test]
    fn the_classic_format_has_no_eof_and_names_counters_by_their_samples() {
        let m = Metrics::new();
        m.delivery("echo", "accepted");
        let (kind, text) = m.negotiate(Some("text/plain;version=0.0.4"));
        assert_eq!(kind, CLASSIC);
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("# TYPE levelhost_webhook_deliveries_total counter"),
            "{text}"
        );
        assert!(text.contains("webhook_deliveries_total{"), "{text}");
        let (kind, open) = m.negotiate(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ));
        assert_eq!(kind, OPENMETRICS);
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
}
