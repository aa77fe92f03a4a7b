//! The host side of the `level:api` interfaces: one file per WIT interface.
//!
//! [`LevelCtx`] is the per-run state every host function works on: the
//! plugin's Level client (which alone holds the API key), the run's [`Gate`],
//! its audit trail, its log and, in a dry run, its plan. Every host function
//! has the same shape, written once in [`host_call!`]: the gate admits the
//! call (capability, argument size), the body learns the call's targets and
//! asks the gate again (scopes, budgets), then calls Level through
//! [`LevelCtx::fetch`] or [`LevelCtx::write`]; the outcome is audited.

mod alerts;
mod automations;
mod custom_field_values;
mod custom_fields;
mod devices;
mod error;
mod groups;
mod log;
mod mirror;
mod state;
mod tags;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker};

use crate::audit::{AuditLog, AuditRecord};
use crate::bindings::types::PageRequest;
pub use error::{LevelError, LimitExceeded, describe};
use level_api::model::Page;
use level_api::{ClientError, LevelClient, PageParams};
use levelhost_core::audit::Stage;
use levelhost_core::capability::Operation;
use levelhost_core::gate::{Facts, Gate, Refusal};
pub use log::{LogLine, LogSink};
use transport::Transport;

/// The run's one [`Gate`], shared by the `level:api` host functions and
/// the requests to other systems ([`crate::outbound`]), whose answers
/// arrive on their own task. Locked only for a decision, never across a wait.
#[derive(Debug, Clone)]
pub struct SharedGate(Arc<std::sync::Mutex<Gate>>);

impl SharedGate {
    /// Shares `gate`.
    pub fn new(gate: Gate) -> Self {
        Self(Arc::new(std::sync::Mutex::new(gate)))
    }

    /// The gate, for one decision. A panic while it was held leaves it
    /// as the panic found it; its counters stay what they were.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Who is running, for the audit log. Every record of the run shares these
/// strings instead of copying them.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The plugin.
    pub plugin: Arc<str>,
    /// Its version.
    pub version: Arc<str>,
    /// Its component's digest.
    pub digest: Arc<str>,
    /// The run.
    pub run_id: Arc<str>,
}

impl RunInfo {
    /// An audit record of this run, allowed, with no upstream status and not a dry-run write.
    pub fn record(
        &self,
        operation: impl Into<std::borrow::Cow<'static, str>>,
        targets: Vec<String>,
        reason: Option<String>,
        took: Duration,
    ) -> AuditRecord {
        AuditRecord {
            time: level_api::clock::now(),
            plugin: self.plugin.clone(),
            version: self.version.clone(),
            digest: self.digest.clone(),
            run_id: self.run_id.clone(),
            operation: operation.into(),
            targets,
            names: Default::default(),
            allowed: true,
            reason,
            upstream_status: None,
            latency_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            dry_run: false,
            requests: 0,
            bytes: None,
            stage: Stage::Done,
        }
    }
}

/// `record` of a request still out when its run ended: cut off, with
/// `with` (Level, or another system) named as not known to have received it.
pub(crate) fn cut_off(record: AuditRecord, with: &str) -> AuditRecord {
    AuditRecord {
        time: level_api::clock::now(),
        reason: Some(format!(
            "cut off when the run ended while its request was out with {with}; \
             whether {with} received it is unknown"
        )),
        stage: Stage::CutOff,
        ..record
    }
}

use levelhost_core::plan::Named;
pub use levelhost_core::plan::PlanEntry;

/// One host call in progress: its operation, the objects it touches, what
/// the gate said and what Level answered. [`host_call!`] opens it and hands
/// it to every step of the call ([`LevelCtx::require`], [`LevelCtx::fetch`],
/// [`LevelCtx::write`] and the helpers that look things up), and
/// [`LevelCtx::end`] consumes it and writes its audit record, so no request
/// reaches Level outside an open call and no call ends unaudited.
#[derive(Debug)]
pub(crate) struct Call {
    op: Operation,
    started: Instant,
    targets: Vec<String>,
    /// Capabilities the call's effect needs besides its operation's own.
    needs: Vec<String>,
    refused: Option<String>,
    status: Option<u16>,
    dry_run: bool,
    requests: u32,
}

/// Per-run state of the `level:api` host functions.
#[derive(Debug)]
pub struct LevelCtx {
    transport: Transport,
    /// The run's gate.
    gate: SharedGate,
    run: Arc<RunInfo>,
    audit: Option<AuditLog>,
    /// Every audited call of the run.
    pub audit_records: Vec<AuditRecord>,
    /// Log lines the plugin wrote.
    pub log: LogSink,
    /// Time spent waiting for Level.
    pub api_time: Duration,
    /// The group of each device the run has read, and when it was read.
    device_groups: HashMap<String, (Option<String>, Instant)>,
    /// The record of the call whose request is out with Level, written as
    /// cut off if the run ends before the request does.
    in_flight: Option<AuditRecord>,
    /// The hostname or name of each device and group the run has read, so
    /// a plan names them as a person would.
    names: HashMap<String, Named>,
    /// Where the plugin's committed state is read; an empty state in
    /// memory, made at the first read, when `None`.
    state_store: Option<Arc<dyn crate::state::StateStore>>,
    /// The run's own state writes, committed only with a run recorded `ok`.
    pub state: crate::state::StateChanges,
}

/// The shape of every host function: open the call, admit it (capability,
/// and the size of every argument, listed in `[...]`), run the body with the
/// call (named `$call` in it), and end the call, which audits it. `?` in the
/// body returns from the body only, so the end always runs.
macro_rules! host_call {
    ($ctx:ident, $call:ident, $op:expr, [$($arg:expr),* $(,)?], $body:block) => {{
        let mut open = $ctx.begin($op);
        let bytes = 0 $(+ $crate::level::arg_bytes($arg))*;
        let result = match $ctx.admit(&mut open, bytes) {
            Err(e) => Err(e),
            Ok(()) => {
                let $call = &mut open;
                async { $body }.await
            }
        };
        $ctx.end(open, result).await
    }};
}
pub(crate) use host_call;

/// The size of one argument of a host call, as JSON: every field of every
/// record, list and option counts, so no part of a call escapes
/// `max_call_kb`. Measured without building the text.
pub(crate) fn arg_bytes<T: serde::Serialize + ?Sized>(arg: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing plain data into a counter cannot fail; if it ever did, count
    // the call as too large rather than as free.
    match serde_json::to_writer(&mut count, arg) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

impl LevelCtx {
    /// A context whose calls go through `client` and `gate`.
    pub fn new(
        client: LevelClient,
        gate: SharedGate,
        run: impl Into<Arc<RunInfo>>,
        audit: Option<AuditLog>,
        log: LogSink,
        dry_run: bool,
    ) -> Self {
        Self {
            transport: Transport::new(client, dry_run),
            gate,
            run: run.into(),
            audit,
            audit_records: Vec::new(),
            log,
            api_time: Duration::ZERO,
            device_groups: HashMap::new(),
            in_flight: None,
            names: HashMap::new(),
            state_store: None,
            state: crate::state::StateChanges::default(),
        }
    }

    /// The run's gate, for one decision.
    pub fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock()
    }

    /// Reads the plugin's committed state from `store` (by default, an empty
    /// state in memory).
    pub fn with_state(mut self, store: Arc<dyn crate::state::StateStore>) -> Self {
        self.state_store = Some(store);
        self
    }

    /// Where the plugin's committed state is read. Most runs never read
    /// state, so the empty one is made only when one does.
    fn state_store(&mut self) -> Arc<dyn crate::state::StateStore> {
        self.state_store
            .get_or_insert_with(|| Arc::new(crate::state::MemoryState::default()))
            .clone()
    }

    /// Whether this run plans its writes instead of sending them.
    fn plans_writes(&self) -> bool {
        self.transport.plans_writes()
    }

    /// The writes a dry run planned (none in a live run).
    pub fn take_plan(&mut self) -> Vec<PlanEntry> {
        self.transport.take_plan()
    }

    fn begin(&self, op: Operation) -> Call {
        Call {
            op,
            started: Instant::now(),
            targets: Vec::new(),
            needs: Vec::new(),
            refused: None,
            status: None,
            dry_run: false,
            requests: 0,
        }
    }

    fn admit(&mut self, call: &mut Call, arg_bytes: usize) -> Result<(), LevelError> {
        self.gate()
            .admit(call.op, arg_bytes)
            .map_err(|r| refuse(call, r))
    }

    /// Asks the gate about the call's targets: scopes, then budgets.
    fn require(&mut self, call: &mut Call, facts: Facts) -> Result<(), LevelError> {
        call.targets.extend(facts.targets());
        call.needs
            .extend(facts.needs.iter().map(ToString::to_string));
        self.gate()
            .authorize(call.op, &facts)
            .map_err(|r| refuse(call, r))
    }

    async fn end<T>(
        &mut self,
        current: Call,
        result: Result<T, LevelError>,
    ) -> Result<T, LevelError> {
        let reason = current.refused.clone().or_else(|| match &result {
            Err(LevelError::Guest(e)) => Some(describe(e)),
            Err(LevelError::Trap(e)) => Some(format!("{e:#}")),
            Ok(_) => None,
        });
        let record = AuditRecord {
            reason,
            ..self.record(&current, Stage::Done)
        };
        if let Err(e) = self.append(record).await {
            // An audit that cannot be written stops the run: nothing goes unrecorded.
            return Err(LevelError::Trap(wasmtime::Error::msg(
                levelhost_core::Chain(&e).to_string(),
            )));
        }
        result
    }

    /// The audit record of `call` as it stands, at `stage`.
    fn record(&self, call: &Call, stage: Stage) -> AuditRecord {
        let mut targets = call.targets.clone();
        targets.dedup();
        let names = targets
            .iter()
            .filter_map(|t| self.names.get(t).map(|n| (t.clone(), n.name.clone())))
            .collect();
        AuditRecord {
            allowed: call.refused.is_none(),
            // A write about to leave, or cut off, has no answer yet: an
            // earlier look-up's status is not its own.
            upstream_status: call.status.filter(|_| stage.is_done()),
            dry_run: call.dry_run,
            requests: call.requests,
            stage,
            names,
            ..self
                .run
                .record(call.op.as_str(), targets, None, call.started.elapsed())
        }
    }

    /// Keeps a record with the run and appends it to the audit log, if there
    /// is one. ([`Stage::Sending`] records go to the file only.)
    async fn append(&mut self, record: AuditRecord) -> Result<(), crate::audit::AuditError> {
        let written = match &self.audit {
            Some(audit) => audit.append(&record).await,
            None => Ok(()),
        };
        self.audit_records.push(record);
        written
    }

    /// Audits the end of the run itself, so a run that failed without calling
    /// Level (a loop, a memory bomb) is on record too.
    /// A call whose request was still out with Level is recorded first, as cut off.
    pub async fn record_run_end(&mut self, failure: Option<String>, duration: Duration) {
        if let Some(cut) = self.in_flight.take()
            && let Err(e) = self.append(cut_off(cut, "Level")).await
        {
            tracing::error!("{}", levelhost_core::Chain(&e));
        }
        let record = self.run.record("run", Vec::new(), failure, duration);
        if let Err(e) = self.append(record).await {
            tracing::error!("{}", levelhost_core::Chain(&e));
        }
    }

    /// Sends one request to Level, counted against the run's call budget. A
    /// write is audited as [`Stage::Sending`] before it leaves, and until its
    /// answer arrives the call's record waits in `in_flight`, so a request cut
    /// off by the end of the run is on record either way.
    async fn fetch<T, F>(
        &mut self,
        call: &mut Call,
        f: impl FnOnce(LevelClient) -> F,
    ) -> Result<T, LevelError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        self.send(call, false, f).await
    }

    async fn send<T, F>(
        &mut self,
        call: &mut Call,
        changes_level: bool,
        f: impl FnOnce(LevelClient) -> F,
    ) -> Result<T, LevelError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        self.gate().spend_call().map_err(|r| refuse(call, r))?;
        call.requests += 1;
        if changes_level && let Some(audit) = &self.audit {
            // To the file only: the run's own list keeps one record per call.
            audit
                .append(&self.record(call, Stage::Sending))
                .await
                .map_err(|e| {
                    LevelError::Trap(wasmtime::Error::msg(levelhost_core::Chain(&e).to_string()))
                })?;
        }
        self.in_flight = Some(self.record(call, Stage::CutOff));
        let started = Instant::now();
        let result = self.transport.send(f).await;
        self.in_flight = None;
        self.api_time += started.elapsed();
        call.status = Some(match &result {
            Ok(_) => 200,
            Err(e) => e.status().unwrap_or(0),
        });
        result.map_err(LevelError::from)
    }

    /// Sends a write, or in a dry run records it in the plan and returns `planned` instead.
    async fn write<T, F>(
        &mut self,
        call: &mut Call,
        request: serde_json::Value,
        planned: impl FnOnce() -> T,
        f: impl FnOnce(LevelClient) -> F,
    ) -> Result<T, LevelError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        if self.transport.plans_writes() {
            call.dry_run = true;
            let names = call
                .targets
                .iter()
                .filter_map(|t| self.names.get(t).map(|n| (t.clone(), n.clone())))
                .collect();
            self.transport.plan(PlanEntry {
                operation: call.op.name(),
                targets: call.targets.clone(),
                request,
                names,
                needs: call.needs.clone(),
            });
            return Ok(planned());
        }
        self.gate()
            .check_planned(call.op, &call.targets, &request)
            .map_err(|r| refuse(call, r))?;
        self.send(call, true, f).await
    }

    /// The group a device is in, as the host last read it within the
    /// grant's `fact_max_age_secs` (read again when older), and only when the
    /// grant has group scopes.
    async fn device_group(
        &mut self,
        call: &mut Call,
        id: &str,
    ) -> Result<Option<String>, LevelError> {
        if self.gate().scopes().group_ids.is_none() {
            return Ok(None);
        }
        let fresh = self.gate().grant().limits.fact_max_age();
        if let Some((group, read)) = self.device_groups.get(id)
            && read.elapsed() <= fresh
        {
            return Ok(group.clone());
        }
        let id_owned = id.to_owned();
        let device = self
            .fetch(call, |c| async move {
                c.get_device(&id_owned, &Default::default()).await
            })
            .await?;
        self.note_device(&device.id, device.group_id.clone());
        Ok(device.group_id)
    }

    /// Remembers which group a device is in, as just read from Level or
    /// changed by this run, so scope checks reuse what the run already knows.
    fn note_device(&mut self, id: &str, group: Option<String>) {
        if self.gate().scopes().group_ids.is_some() {
            self.device_groups
                .insert(id.to_owned(), (group, Instant::now()));
        }
    }

    /// Remembers what a person calls a device or group the run has read.
    fn note_name(&mut self, id: &str, kind: &str, name: &str) {
        self.names.insert(
            id.to_owned(),
            Named {
                kind: kind.to_owned(),
                name: name.to_owned(),
            },
        );
    }

    /// Remembers where devices are after a live write of this run moved them
    /// to `group` (a dry run moved nothing).
    fn note_moved(&mut self, devices: impl IntoIterator<Item = String>, group: Option<String>) {
        if self.plans_writes() {
            return;
        }
        for device in devices {
            self.note_device(&device, group.clone());
        }
    }

    /// Every device `query` matches, with its group: the indirect targets of
    /// a call whose effect reaches devices it does not name (a deleted tag's
    /// carriers, the devices below a forced value, an automation left to pick
    /// its own). Asks the gate first whether `early` is in scope at all, so a
    /// call that would be refused anyway reads nothing.
    async fn devices_reached(
        &mut self,
        call: &mut Call,
        early: &Facts,
        query: level_api::DeviceQuery,
    ) -> Result<Vec<(String, Option<String>)>, LevelError> {
        self.gate()
            .check_scopes(call.op, early)
            .map_err(|r| refuse(call, r))?;
        let mut out = Vec::new();
        let mut page = PageParams {
            limit: Some(100),
            ..PageParams::default()
        };
        loop {
            let (q, p) = (query.clone(), page.clone());
            let batch = self
                .fetch(call, |c| async move { c.list_devices(&q, &p).await })
                .await?;
            for device in &batch.data {
                self.note_device(&device.id, device.group_id.clone());
                self.note_name(&device.id, "device", &device.hostname);
            }
            let last = batch.data.last().map(|d| d.id.clone());
            out.extend(batch.data.into_iter().map(|d| (d.id, d.group_id)));
            match last {
                Some(id) if batch.has_more => page.starting_after = Some(id),
                _ => return Ok(out),
            }
        }
    }

    /// `(id, group)` for each device id, for [`Facts::devices`].
    async fn device_facts(
        &mut self,
        call: &mut Call,
        ids: &[String],
    ) -> Result<Vec<(String, Option<String>)>, LevelError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push((id.clone(), self.device_group(call, id).await?));
        }
        Ok(out)
    }

    /// Fetches pages until `limit` items pass `keep` or Level has no more,
    /// so a scoped list never returns an empty page while more in-scope items exist.
    async fn filtered_page<T, F, Fut>(
        &mut self,
        call: &mut Call,
        page: PageParams,
        id: impl Fn(&T) -> String,
        keep: impl Fn(&Gate, &T) -> bool,
        mut fetch: F,
    ) -> Result<Page<T>, LevelError>
    where
        F: FnMut(LevelClient, PageParams) -> Fut,
        Fut: Future<Output = Result<Page<T>, ClientError>>,
    {
        let limit = page.limit.unwrap_or(20).clamp(1, 100) as usize;
        let backward = page.starting_after.is_none() && page.ending_before.is_some();
        let mut request = page;
        let mut kept: Vec<T> = Vec::new();
        loop {
            let this = request.clone();
            let raw = self.fetch(call, |c| fetch(c, this)).await?;
            let edge = if backward {
                raw.data.first().map(&id)
            } else {
                raw.data.last().map(&id)
            };
            let mut visible: Vec<T> = raw
                .data
                .into_iter()
                .filter(|item| keep(&self.gate(), item))
                .collect();
            if backward {
                visible.append(&mut kept);
                kept = visible;
            } else {
                kept.append(&mut visible);
            }
            let more = raw.has_more;
            if kept.len() >= limit || !more {
                let overflow = kept.len() > limit;
                if overflow {
                    if backward {
                        kept.drain(..kept.len() - limit);
                    } else {
                        kept.truncate(limit);
                    }
                }
                return Ok(Page {
                    data: kept,
                    has_more: more || overflow,
                });
            }
            let Some(edge) = edge else {
                return Ok(Page {
                    data: kept,
                    has_more: false,
                });
            };
            if backward {
                request.ending_before = Some(edge);
            } else {
                request.starting_after = Some(edge);
            }
        }
    }
}

/// Records a refusal on the call and turns it into the guest's error.
fn refuse(call: &mut Call, refusal: Refusal) -> LevelError {
    call.refused = Some(refusal.to_string());
    match refusal {
        Refusal::Denied { capability, reason } => LevelError::denied(capability, reason),
        Refusal::Limit { limit, detail } => LevelError::limit(limit, detail),
    }
}

/// The [`HasData`] marker that projects a store's data to its [`LevelCtx`].
pub struct Level;

impl HasData for Level {
    type Data<'a> = &'a mut LevelCtx;
}

/// Links every `level:api` interface into `linker`, reading the context with `get`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut LevelCtx,
) -> wasmtime::Result<()> {
    use crate::bindings::level::api;
    api::types::add_to_linker::<T, Level>(linker, get)?;
    api::alerts::add_to_linker::<T, Level>(linker, get)?;
    api::custom_fields::add_to_linker::<T, Level>(linker, get)?;
    api::custom_field_values::add_to_linker::<T, Level>(linker, get)?;
    api::devices::add_to_linker::<T, Level>(linker, get)?;
    api::groups::add_to_linker::<T, Level>(linker, get)?;
    api::tags::add_to_linker::<T, Level>(linker, get)?;
    api::automations::add_to_linker::<T, Level>(linker, get)?;
    api::log::add_to_linker::<T, Level>(linker, get)?;
    api::state::add_to_linker::<T, Level>(linker, get)?;
    Ok(())
}

fn page(page: &PageRequest) -> PageParams {
    PageParams {
        limit: page.limit,
        starting_after: page.starting_after.clone(),
        ending_before: page.ending_before.clone(),
    }
}
