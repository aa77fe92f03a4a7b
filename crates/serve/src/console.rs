//! The operator console of `serve`: server-rendered HTML (maud) with one
//! stylesheet compiled into the binary, and `/metrics` for Prometheus.
//!
//! Every page needs the console token: `Authorization: Bearer TOKEN`, or the
//! cookie `GET /login?token=TOKEN` sets. Approving and rejecting are POSTs
//! carrying a CSRF token derived from the console token (and a same-origin
//! check); every answer has a strict Content-Security-Policy. Keys and
//! webhook secrets are never rendered: a plugin's key appears by its name.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use maud::{DOCTYPE, Markup, html};
use sha2::{Digest, Sha256};

use crate::approvals::{Decision, decide};
use crate::history::{RunRow, RunStatus};
use crate::service::Service;
use levelhost_core::plan::PlanEntry;
use levelhost_runtime::audit::{AuditFilter, AuditRecord};

/// Where the console listens and who may see it.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The address (default `127.0.0.1:8781`).
    pub addr: String,
    /// The token every page needs.
    pub token: String,
    /// Another token that may read `/metrics` only (for a Prometheus scraper).
    pub metrics_token: Option<String>,
}

const CSS: &str = include_str!("../assets/console.css");
const COOKIE: &str = "levelhost_console";
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's state.
pub(crate) struct Console {
    service: Arc<Service>,
    token: [u8; 32],
    metrics_token: Option<[u8; 32]>,
    csrf: String,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Compares two digests in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Console {
    pub(crate) fn new(service: Arc<Service>, options: &ConsoleOptions) -> Self {
        Self {
            service,
            token: digest(&options.token),
            metrics_token: options.metrics_token.as_deref().map(digest),
            csrf: hex::encode(digest(&format!("levelhost-csrf:{}", options.token))),
        }
    }

    /// The audit records matching `filter`; `None` when there is no audit
    /// or it cannot be read.
    async fn audit(&self, filter: AuditFilter) -> Option<Vec<AuditRecord>> {
        let audit = self.service.executor().audit()?;
        audit.read(&filter).await.ok().map(|(records, _)| records)
    }

    /// The token a request carries, by header or cookie.
    fn presented(headers: &HeaderMap) -> Option<String> {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return Some(bearer.trim().to_owned());
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.to_owned())
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        Self::presented(headers).is_some_and(|t| same(&digest(&t), &self.token))
    }
}

/// The console's routes.
pub(crate) fn router(console: Arc<Console>) -> Router {
    let pages = Router::new()
        .route("/", get(overview_page))
        .route("/plugins", get(plugins_page))
        .route("/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/plugins/{name}/state", get(state_page))
        .route("/denials", get(denials_page))
        .route("/clients", get(clients_page))
        .route("/approvals", get(approvals_page))
        .route("/approvals/{id}/{decision}", post(decide_form))
        .route("/assets/console.css", get(css))
        .route_layer(axum::middleware::from_fn_with_state(console.clone(), guard));
    Router::new()
        .merge(pages)
        .route("/login", get(login))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(secure_headers))
        .with_state(console)
}

async fn guard(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    if console.admits(request.headers()) {
        next.run(request).await
    } else {
        unauthorized()
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "the levelhost console needs its token: open /login?token=... or send Authorization: Bearer ...\n",
    )
        .into_response()
}

async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
    /// A console page to go to once logged in.
    next: Option<String>,
}

async fn login(State(console): State<Arc<Console>>, Query(login): Query<Login>) -> Response {
    if !same(&digest(&login.token), &console.token) {
        return unauthorized();
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        login.token
    );
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => {
            // Only a path of this console: never another site.
            let next = login
                .next
                .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
                .unwrap_or_else(|| "/".to_owned());
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        Err(_) => (StatusCode::BAD_REQUEST, "the token cannot be a cookie\n").into_response(),
    }
}

async fn metrics(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let metrics_token = Console::presented(&headers).is_some_and(|t| {
        console
            .metrics_token
            .as_ref()
            .is_some_and(|m| same(&digest(&t), m))
    });
    if !console.admits(&headers) && !metrics_token {
        return unauthorized();
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (kind, text) = console.service.metrics().negotiate(accept);
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// How many plans wait for a person, however long ago they were made.
async fn waiting_plans(console: &Console) -> usize {
    history(console, |h| async move {
        Ok(h.list(None, Some(RunStatus::AwaitingApproval), 1000)
            .await?
            .len())
    })
    .await
    .unwrap_or(0)
}

/// A page of the console, its navigation showing how many plans wait.
async fn page(console: &Console, title: &str, body: Markup) -> Response {
    layout(
        title,
        waiting_plans(console).await,
        console.service.gateway().is_some(),
        body,
    )
}

/// A page; `clients` says whether the navigation links the gateway's clients.
fn layout(title: &str, waiting: usize, clients: bool, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · levelhost" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                header {
                    strong { "levelhost" }
                    a href="/" { "Overview" }
                    a href="/plugins" { "Plugins" }
                    a href="/runs" { "Runs" }
                    a href="/denials" { "Denials and limits" }
                    @if clients { a href="/clients" { "Clients" } }
                    a href="/approvals" {
                        "Approvals"
                        @if waiting > 0 { " " span.badge title="plans waiting for approval" { (waiting) } }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

fn failure(status: StatusCode, what: String) -> Response {
    let mut response = layout("Error", 0, false, html! { p { (what) } });
    *response.status_mut() = status;
    response
}

/// Asks the history with `f`; a failure is the error page.
async fn history<'a, T, F>(
    console: &'a Console,
    f: impl FnOnce(&'a crate::history::History) -> F,
) -> Result<T, Response>
where
    F: Future<Output = Result<T, crate::history::HistoryError>> + 'a,
{
    f(&console.service.history).await.map_err(|e| {
        failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            levelhost_core::Chain(&e).to_string(),
        )
    })
}

fn status(s: &str) -> Markup {
    html! { span class={ "status status-" (s) } { (s) } }
}

/// A run id as the tables show it: its last eight characters (the full id
/// on hover and in the link).
fn short_id(id: &str) -> Markup {
    let tail: String = {
        let chars: Vec<char> = id.chars().collect();
        chars[chars.len().saturating_sub(8)..].iter().collect()
    };
    html! { code title=(id) { "…" (tail) } }
}

/// A time as "3 min ago", the exact time on hover.
fn when(at: &str) -> Markup {
    let ago = chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| ago(Utc::now().signed_duration_since(t.with_timezone(&Utc))))
        .unwrap_or_else(|_| at.to_owned());
    html! { time datetime=(at) title=(at) { (ago) } }
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 days ago`, or `in 5 min` ahead.
fn ago(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds();
    let (n, unit) = match secs.abs() {
        s if s < 60 => (s, "s"),
        s if s < 3600 => (s / 60, "min"),
        s if s < 172_800 => (s / 3600, "h"),
        s => (s / 86_400, "days"),
    };
    if secs < 0 {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

fn origin(r: &RunRow) -> String {
    match r.trigger.as_str() {
        "schedule" => format!("schedule {}", r.planned_at.as_deref().unwrap_or("?")),
        "event" => format!("event {}", r.event_type.as_deref().unwrap_or("?")),
        other => other.to_owned(),
    }
}

/// How far back the overview looks.
const OVERVIEW_HOURS: usize = 24;

/// Statuses of runs that did not do their job.
const FAILING: [&str; 6] = [
    "failed",
    "denied",
    "timed-out",
    "limit-exceeded",
    "interrupted",
    "diverged",
];

/// `/`: what happened in the last day at a glance: runs per hour drawn as
/// bars, failures, denials, plans waiting, and each key's Level requests.
async fn overview_page(State(console): State<Arc<Console>>) -> Response {
    let now = Utc::now();
    let since = (now - chrono::TimeDelta::hours(OVERVIEW_HOURS as i64))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let from = since.clone();
    let runs = match history(&console, |h| async move {
        Ok(h.list(None, None, 5000)
            .await?
            .into_iter()
            .filter(|r| r.started_at >= from)
            .collect::<Vec<_>>())
    })
    .await
    {
        Ok(runs) => runs,
        Err(page) => return page,
    };
    let denied = console
        .audit(AuditFilter {
            denied: true,
            ..AuditFilter::default()
        })
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.time >= since)
        .count();
    let waiting = waiting_plans(&console).await;
    let failing: Vec<&RunRow> = runs
        .iter()
        .filter(|r| FAILING.contains(&r.status.as_str()))
        .collect();
    // Runs per hour, oldest first: (ok, failing, other).
    let mut hours = [(0u32, 0u32, 0u32); OVERVIEW_HOURS];
    for r in &runs {
        let Ok(started) = chrono::DateTime::parse_from_rfc3339(&r.started_at) else {
            continue;
        };
        let back = usize::try_from(now.signed_duration_since(started).num_hours()).unwrap_or(0);
        let Some(slot) = OVERVIEW_HOURS
            .checked_sub(back + 1)
            .and_then(|i| hours.get_mut(i))
        else {
            continue;
        };
        match r.status.as_str() {
            "ok" => slot.0 += 1,
            s if FAILING.contains(&s) => slot.1 += 1,
            _ => slot.2 += 1,
        }
    }
    let tallest = hours
        .iter()
        .map(|(a, b, c)| a + b + c)
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = |n: u32| f64::from(n) * 56.0 / f64::from(tallest);
    // Each key's Level requests in this process, from its shared client.
    let mut keys: Vec<(String, u64, u64, f64)> = Vec::new();
    for installed in console.service.plugins().values() {
        let p = &installed.served;
        if keys.iter().any(|(k, ..)| *k == p.key) {
            continue;
        }
        let stats = p.client.stats();
        let sent = stats.requests().iter().map(|(_, _, n)| n).sum();
        keys.push((
            p.key.clone(),
            sent,
            stats.rate_limited(),
            stats.budget_wait().as_secs_f64(),
        ));
    }
    let busiest = keys.iter().map(|k| k.1).max().unwrap_or(0).max(1);
    let body = html! {
        div.tiles {
            a.tile href="/runs" { span.big { (runs.len()) } " runs in the last day" }
            a.tile.bad[!failing.is_empty()] href="/runs" { span.big { (failing.len()) } " did not end well" }
            a.tile.bad[denied > 0] href="/denials" { span.big { (denied) } " calls denied" }
            a.tile.warn[waiting > 0] href="/approvals" { span.big { (waiting) } " plans waiting" }
        }
        section.card {
            h2 { "Runs per hour" }
            svg.chart viewBox="0 0 240 60" role="img" aria-label="runs per hour over the last day" {
                @for (i, (ok, bad, other)) in hours.iter().enumerate() {
                    @let x = i * 10;
                    @let (h_ok, h_bad, h_other) = (bar(*ok), bar(*bad), bar(*other));
                    g {
                        title { (ok) " ok, " (bad) " did not end well, " (other) " other, " (OVERVIEW_HOURS - i) " h ago" }
                        rect.ok x=(x) y=(60.0 - h_ok) width="8" height=(h_ok) {}
                        rect.bad x=(x) y=(60.0 - h_ok - h_bad) width="8" height=(h_bad) {}
                        rect.other x=(x) y=(60.0 - h_ok - h_bad - h_other) width="8" height=(h_other) {}
                    }
                }
            }
            p.axis { span { "24 h ago" } span { "now" } }
            p.muted.legend { span.key-ok { "■" } " ok  " span.key-bad { "■" } " did not end well  " span.key-other { "■" } " skipped, waiting or running" }
        }
        section.card {
            h2 { "Keys" }
            @if keys.is_empty() { p.muted { "no plugin uses a key" } }
            @else {
                div.wrap { table {
                    thead { tr { th { "Key" } th { "Level requests" } th.wide { "" } th { "429s" } th { "Waited" } } }
                    tbody { @for (key, sent, limited, waited) in &keys { tr {
                        td { (key) }
                        td { (sent) }
                        td.wide { svg.meter viewBox="0 0 100 8" role="img" aria-label={ (sent) " requests" } {
                            rect.ok x="0" y="0" height="8" width=(*sent as f64 * 100.0 / busiest as f64) {}
                        } }
                        td { span.denied[*limited > 0] { (limited) } }
                        td { (format!("{waited:.1} s")) }
                    } } }
                } }
                p.muted { "Since this serve started; a key shared by several plugins is one budget." }
            }
        }
        section.card {
            h2 { "Did not end well" }
            @if failing.is_empty() { p.muted { "every run of the last day ended well" } }
            @else {
                div.wrap { table {
                    thead { tr { th { "Run" } th { "Plugin" } th { "Status" } th { "Started" } th.wide { "Why" } } }
                    tbody { @for r in failing.iter().take(8) { tr {
                        td { a href={ "/runs/" (r.id) } { (short_id(&r.id)) } }
                        td { (r.plugin) }
                        td { (status(&r.status)) }
                        td { (when(&r.started_at)) }
                        td.wide { (r.error.as_deref().map(|e| e.chars().take(100).collect::<String>()).unwrap_or_default()) }
                    } } }
                } }
            }
        }
    };
    layout(
        "Overview",
        waiting,
        console.service.gateway().is_some(),
        body,
    )
}

/// A plugin's state: its keys, their sizes and versions (never the values,
/// which may hold what the plugin keeps from other systems).
async fn state_page(State(console): State<Arc<Console>>, Path(name): Path<String>) -> Response {
    if !console.service.plugins().contains_key(&name) {
        return failure(StatusCode::NOT_FOUND, format!("no plugin {name}"));
    }
    let found = history(&console, |h| async {
        let entries = h.state_entries(&name, "", None, STATE_SHOWN).await?;
        let usage = h.state_usage(&name).await?;
        Ok((entries, usage))
    })
    .await;
    let (entries, usage) = match found {
        Ok(found) => found,
        Err(page) => return page,
    };
    let body = html! {
        p {
            (usage.keys) " keys, " (usage.bytes) " bytes of keys and values. Change it with "
            code { "levelhost state set|delete " (name) } " (audited)."
        }
        @if entries.is_empty() {
            p.muted { "No state." }
        } @else {
            table {
                thead { tr { th { "Key" } th { "Bytes" } th { "Version" } } }
                tbody {
                    @for (key, value) in &entries {
                        tr { td { code { (key) } } td { (value.value.len()) } td { (value.version) } }
                    }
                }
            }
            @if usage.keys > entries.len() as u64 {
                p.muted { "The first " (entries.len()) " keys, in byte order." }
            }
        }
    };
    page(&console, &format!("State of {name}"), body).await
}

/// The most keys the state page lists.
const STATE_SHOWN: u32 = 500;

async fn plugins_page(State(console): State<Arc<Console>>) -> Response {
    let plugins = console.service.plugins();
    let names: Vec<String> = plugins.keys().cloned().collect();
    let last = match history(&console, |h| async move {
        let mut last = Vec::with_capacity(names.len());
        for name in names {
            let run = h.list(Some(&name), None, 1).await?.into_iter().next();
            let usage = h.state_usage(&name).await?;
            last.push((name, (run, usage)));
        }
        Ok(last)
    })
    .await
    {
        Ok(last) => last,
        Err(page) => return page,
    };
    let body = html! {
        @for (name, installed) in plugins.iter() {
            @let p = &installed.served;
            @let found = last.iter().find(|(n, _)| n == name).map(|(_, found)| found);
            @let usage = found.map(|(_, usage)| *usage).unwrap_or_default();
            @let last = found.and_then(|(r, _)| r.as_ref());
            section.card {
                h2 { (name) " " span.muted { (p.version) } }
                dl {
                    dt { "Package" } dd { code { (p.plugin.digest) } }
                    dt { "Vetted" } dd { (p.vetting) }
                    dt { "Key" } dd { (p.key) }
                    dt { "Last run" } dd {
                        @match last {
                            Some(r) => { a href={ "/runs/" (r.id) } { (when(&r.started_at)) } " " (status(&r.status)) }
                            None => { "never ran" }
                        }
                    }
                    dt { "Schedules" } dd {
                        @if p.schedules.is_empty() { "none" }
                        @for s in &p.schedules {
                            @let next = s.next_after(Utc::now())
                                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                            div { code { (s.pattern) } " (" (s.timezone) "), next " (next.unwrap_or_else(|| "never".to_owned())) }
                        }
                    }
                    dt { "Events" } dd { @if p.events.is_some() { "takes Level's webhook events" } @else { "no" } }
                    dt { "State" } dd {
                        a href={ "/plugins/" (name) "/state" } { (usage.keys) " keys, " (usage.bytes) " bytes" }
                    }
                    @if let Some(policy) = &p.approval {
                        dt { "Approval" } dd { (policy.in_words()) }
                    }
                }
                h3 { "Grant" }
                ul { @for line in p.grant.describe() { li { (line) } } }
                @if !p.grant.connections.is_empty() {
                    @let counts = console.service.metrics().connection_counts(name);
                    h3 { "Connections since start" }
                    table {
                        thead { tr { th { "connection" } th { "sent" } th { "failed (no answer, 4xx, 5xx)" } th { "denied" } th { "planned" } } }
                        tbody {
                            @for connection in p.grant.connections.keys() {
                                @let c = counts.iter().find(|(n, _)| n == connection).map(|(_, c)| *c).unwrap_or_default();
                                tr { td { code { (connection) } } td { (c.sent) } td { (c.failed) } td { (c.denied) } td { (c.planned) } }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&console, "Plugins", body).await
}

#[derive(serde::Deserialize, Default)]
struct RunFilter {
    plugin: Option<String>,
    status: Option<String>,
    origin: Option<String>,
    /// Runs started on or after this day or time (ISO-8601, UTC).
    since: Option<String>,
}

async fn runs_page(
    State(console): State<Arc<Console>>,
    Query(filter): Query<RunFilter>,
) -> Response {
    let plugin = filter.plugin.clone().filter(|p| !p.is_empty());
    let status_filter: Option<RunStatus> = filter
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok());
    let wanted_origin = filter.origin.clone().filter(|o| !o.is_empty());
    let since = filter.since.clone().filter(|s| !s.is_empty());
    let runs = match history(&console, |h| h.list(plugin.as_deref(), status_filter, 500)).await {
        Ok(runs) => runs,
        Err(page) => return page,
    };
    let runs: Vec<RunRow> = runs
        .into_iter()
        .filter(|r| wanted_origin.as_ref().is_none_or(|o| *o == r.trigger))
        .filter(|r| {
            since
                .as_ref()
                .is_none_or(|s| r.started_at.as_str() >= s.as_str())
        })
        .take(200)
        .collect();
    let selected = |value: &Option<String>, option: &str| value.as_deref() == Some(option);
    let body = html! {
        form.filters method="get" action="/runs" {
            select name="plugin" aria-label="plugin" {
                option value="" { "every plugin" }
                @for name in console.service.plugins().keys() {
                    option value=(name) selected[selected(&filter.plugin, name)] { (name) }
                }
            }
            select name="status" aria-label="status" {
                option value="" { "every status" }
                @for s in RunStatus::ALL {
                    option value=(s.as_str()) selected[selected(&filter.status, s.as_str())] { (s.as_str()) }
                }
            }
            select name="origin" aria-label="origin" {
                option value="" { "every origin" }
                @for o in ["manual", "schedule", "event"] {
                    option value=(o) selected[selected(&filter.origin, o)] { (o) }
                }
            }
            input type="date" name="since" aria-label="started on or after" value=[filter.since.as_deref()];
            button type="submit" { "Filter" }
        }
        div.wrap { table {
            thead { tr { th { "Run" } th { "Plugin" } th { "Status" } th.wide { "Origin" } th { "Started" } th.wide { "Calls" } th.wide { "Writes" } th.wide { "Error" } } }
            tbody {
                @for r in &runs {
                    tr {
                        td { a href={ "/runs/" (r.id) } { (short_id(&r.id)) } }
                        td { (r.plugin) }
                        td { (status(&r.status)) @if r.dry_run { " " span.muted { "(dry run)" } } }
                        td.wide { (origin(r)) }
                        td { (when(&r.started_at)) }
                        td.wide { (r.api_calls) }
                        td.wide { (r.writes) }
                        td.wide { (r.error.as_deref().map(|e| e.chars().take(120).collect::<String>()).unwrap_or_default()) }
                    }
                }
            }
        } }
        p.muted { (runs.len()) " runs" }
    };
    page(&console, "Runs", body).await
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn plan_of(value: &Option<serde_json::Value>) -> Vec<PlanEntry> {
    value
        .clone()
        .and_then(|p| serde_json::from_value(p).ok())
        .unwrap_or_default()
}

fn calls_table(calls: &[AuditRecord]) -> Markup {
    html! {
        div.wrap { table {
            thead { tr { th { "Time" } th { "Call" } th { "Verdict" } th.wide { "Targets" } th { "Level" } th { "Why" } } }
            tbody {
                @for c in calls {
                    tr {
                        td { (when(&c.time)) }
                        td { code { (c.operation) } @if c.dry_run { " " span.muted { "(planned)" } } }
                        td { @if c.allowed { "allowed" } @else { span.denied { "denied" } } }
                        td.wide { (c.targets_in_words(8)) }
                        td { (c.upstream_status.map(|s| s.to_string()).unwrap_or_default()) }
                        td { (c.reason.as_deref().unwrap_or_default()) }
                    }
                }
            }
        } }
    }
}

async fn run_page(State(console): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    let run = match history(&console, |h| h.get(&id)).await {
        Ok(Some(run)) => run,
        Ok(None) => return failure(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(page) => return page,
    };
    let calls = console
        .audit(AuditFilter {
            run_id: Some(id.clone()),
            ..AuditFilter::default()
        })
        .await
        .unwrap_or_default();
    let plan = plan_of(&run.plan);
    let body = html! {
        section.card { dl {
            dt { "Plugin" } dd { (run.plugin) " " (run.version) }
            dt { "Status" } dd { (status(&run.status)) @if run.dry_run { " (dry run)" } }
            dt { "Origin" } dd { (origin(&run)) @if let Some(e) = &run.event_id { " · event " code { (e) } } }
            dt { "Started" } dd { (when(&run.started_at)) }
            dt { "Ended" } dd { @match &run.ended_at { Some(t) => (when(t)), None => "-" } }
            dt { "Level calls" } dd { (run.api_calls) ", " (run.writes) " writes, " (run.devices_changed) " devices changed" }
            dt { "Component" } dd { code { (run.digest) } }
        } }
        @if let Some(error) = &run.error {
            h2 { "Why it failed" }
            pre { (error) }
        }
        @if let Some(input) = &run.input { h2 { "Input" } pre { (pretty(input)) } }
        @if let Some(output) = &run.output {
            h2 { "Output" }
            pre { (serde_json::from_str::<serde_json::Value>(output).map(|v| pretty(&v)).unwrap_or_else(|_| output.clone())) }
        }
        @if let Some(logs) = &run.logs {
            h2 { "Logs" }
            pre {
                @for line in logs["log"].as_array().into_iter().flatten() {
                    (line["level"].as_str().unwrap_or("info")) " " (line["message"].as_str().unwrap_or_default()) "\n"
                }
                @for stream in ["stdout", "stderr"] {
                    @for text in logs[stream].as_str().unwrap_or_default().lines() { (stream) " " (text) "\n" }
                }
            }
        }
        @if !plan.is_empty() {
            h2 { "Plan" }
            ul { @for line in levelhost_core::plan::in_words(&plan) { li { (line) } } }
        }
        @if let Some(a) = &run.approval {
            h2 { "Approval" }
            dl {
                dt { "Waited because" } dd { (a.needed.join("; ")) }
                dt { "Expires" } dd { (a.expires_at) }
                @if let Some(d) = &a.decision { dt { "Decision" } dd { (d) " by " (a.decided_by.as_deref().unwrap_or("?")) " at " (a.decided_at.as_deref().unwrap_or("?")) } }
                @if let Some(r) = &a.reason { dt { "Why" } dd { (r) } }
            }
        }
        @if let Some(d) = &run.divergence { h2 { "Divergence from the approved plan" } pre { (pretty(d)) } }
        h2 { "Host calls" }
        @if calls.is_empty() { p.muted { "no host call on record" } } @else { (calls_table(&calls)) }
    };
    page(&console, &format!("Run {id}"), body).await
}

/// The gateway's clients: each grant in words, last use, expiry, and its
/// requests and denials since start.
async fn clients_page(State(console): State<Arc<Console>>) -> Response {
    let clients = console
        .service
        .gateway()
        .map(levelhost_gateway::Gateway::status)
        .unwrap_or_default();
    let body = html! {
        @if console.service.gateway().is_none() {
            p.muted { "this serve runs no gateway ([gateway] serve = true in levelhost.toml)" }
        }
        @if clients.is_empty() { p.muted { "no client has a key" } }
        @for c in &clients {
            @let counts = console.service.metrics().client_counts(&c.name);
            section.card {
                h2 { (c.name) }
                dl {
                    dt { "Last use" } dd {
                        @match &c.last_used {
                            Some(at) => (when(&level_api::clock::timestamp(*at))),
                            None => "not since start",
                        }
                    }
                    dt { "Key expires" } dd {
                        @match &c.expires {
                            Some(at) => (when(&level_api::clock::timestamp(*at))),
                            None => "never",
                        }
                    }
                    dt { "Since start" } dd {
                        (counts.allowed) " allowed, " (counts.denied) " denied, " (counts.other) " refused or failed"
                    }
                }
                h3 { "Grant" }
                ul { @for line in &c.grant { li { (line) } } }
            }
        }
    };
    page(&console, "Clients", body).await
}

async fn denials_page(State(console): State<Arc<Console>>) -> Response {
    let mut denied = console
        .audit(AuditFilter {
            denied: true,
            ..AuditFilter::default()
        })
        .await
        .unwrap_or_default();
    denied.reverse();
    denied.truncate(200);
    let limited = match history(&console, |h| async move {
        let mut rows = h.list(None, Some(RunStatus::LimitExceeded), 100).await?;
        rows.extend(h.list(None, Some(RunStatus::TimedOut), 100).await?);
        rows.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        Ok(rows)
    })
    .await
    {
        Ok(rows) => rows,
        Err(page) => return page,
    };
    let body = html! {
        h2 { "Denied calls" }
        @if denied.is_empty() { p.muted { "no call was denied" } }
        @else {
            div.wrap { table {
                thead { tr { th { "Time" } th { "Plugin" } th { "Run" } th { "Call" } th { "Why" } } }
                tbody { @for c in &denied { tr {
                    td { (when(&c.time)) } td { (c.plugin) }
                    td { a href={ "/runs/" (c.run_id) } { (short_id(&c.run_id)) } }
                    td { code { (c.operation) } }
                    td { (c.reason.as_deref().unwrap_or_default()) }
                } } }
            } }
        }
        h2 { "Limit hits" }
        @if limited.is_empty() { p.muted { "no run hit a limit" } }
        @else {
            div.wrap { table {
                thead { tr { th { "Run" } th { "Plugin" } th { "Status" } th { "Why" } } }
                tbody { @for r in &limited { tr {
                    td { a href={ "/runs/" (r.id) } { (short_id(&r.id)) } }
                    td { (r.plugin) } td { (status(&r.status)) }
                    td { (r.error.as_deref().unwrap_or_default()) }
                } } }
            } }
        }
    };
    page(&console, "Denials and limits", body).await
}

async fn approvals_page(State(console): State<Arc<Console>>) -> Response {
    let waiting = match history(&console, |h| {
        h.list(None, Some(RunStatus::AwaitingApproval), 200)
    })
    .await
    {
        Ok(rows) => rows,
        Err(page) => return page,
    };
    let csrf = console.csrf.clone();
    let body = html! {
        @if waiting.is_empty() { p.muted { "no plan waits for approval" } }
        @for r in &waiting {
            section.card {
                h2 { a href={ "/runs/" (r.id) } { (r.plugin) " · " (short_id(&r.id)) } }
                @if let Some(a) = &r.approval {
                    p { "Waits because " (a.needed.join("; ")) ". Expires " (when(&a.expires_at)) "." }
                }
                ul { @for line in levelhost_core::plan::in_words(&plan_of(&r.plan)) { li { (line) } } }
                form.decide method="post" action={ "/approvals/" (r.id) "/decide" } {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="text" name="by" placeholder="your name" required aria-label="who decides";
                    input type="text" name="reason" placeholder="why" aria-label="why";
                    button.approve type="submit" name="decision" value="approve" { "Approve" }
                    button.reject type="submit" name="decision" value="reject" { "Reject" }
                }
            }
        }
    };
    page(&console, "Approvals", body).await
}

#[derive(serde::Deserialize)]
struct DecideForm {
    csrf: String,
    by: String,
    #[serde(default)]
    reason: String,
    /// `approve` or `reject`, from the button pressed (posted to `/approvals/ID/decide`).
    #[serde(default)]
    decision: Option<String>,
}

async fn decide_form(
    State(console): State<Arc<Console>>,
    Path((id, decision)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<DecideForm>,
) -> Response {
    let same_origin = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://").map(|(_, rest)| rest.to_owned()))
            .is_some_and(|o| host.to_str().is_ok_and(|h| h == o)),
        (None, _) => true,
        (Some(_), None) => false,
    };
    if !same_origin || !same(&digest(&form.csrf), &digest(&console.csrf)) {
        return failure(
            StatusCode::FORBIDDEN,
            "this form did not come from the console".to_owned(),
        );
    }
    let decision = match decision.as_str() {
        "decide" => form.decision.clone().unwrap_or_default(),
        _ => decision,
    };
    let decision = match decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return failure(StatusCode::NOT_FOUND, format!("no decision {decision:?}")),
    };
    let Some(audit) = console.service.executor().audit().cloned() else {
        return failure(StatusCode::INTERNAL_SERVER_ERROR, "no audit log".to_owned());
    };
    let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
    let by = form.by.trim();
    let history = &console.service.history;
    match decide(history, &audit, &id, decision, by, reason.as_deref()).await {
        Ok(()) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(e) => failure(StatusCode::CONFLICT, levelhost_core::Chain(&e).to_string()),
    }
}
