//! The audit log: one record per host call, written as the call finishes
//! (and, for a write, before it leaves). By default a JSON-lines file; a
//! [`AuditStore`] can keep the same records elsewhere (the database `serve`
//! replicas share). The record type is in `levelhost-core`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use levelhost_core::audit::AuditRecord;

/// Where audit records are kept. Its callers are async (host calls, the
/// executor, the console), so a database keeps the records on the caller's
/// runtime.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Where the records are (a file, a database), for messages.
    fn location(&self) -> &Path;
    /// Keeps one record; once this returns, a crash of the process does not lose it.
    async fn append(&self, record: &AuditRecord) -> Result<(), AuditError>;
    /// Makes everything appended so far durable against a crash of the machine.
    async fn sync(&self) -> Result<(), AuditError>;
    /// The records matching `filter`, oldest first, and how many unreadable
    /// ones were skipped.
    async fn read(&self, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, usize), AuditError>;
}

/// The audit log every run of a process writes to.
#[derive(Debug, Clone)]
pub struct AuditLog {
    store: Arc<dyn AuditStore>,
}

impl AuditLog {
    /// Opens (or creates) a JSON-lines file for appending.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Ok(Self::with_store(Arc::new(AuditFile::open(path)?)))
    }

    /// A log kept in `store`.
    pub fn with_store(store: Arc<dyn AuditStore>) -> Self {
        Self { store }
    }

    /// Where the records are.
    pub fn path(&self) -> &Path {
        self.store.location()
    }

    /// Keeps one record.
    pub async fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        self.store.append(record).await
    }

    /// Makes everything appended so far durable.
    pub async fn sync(&self) -> Result<(), AuditError> {
        self.store.sync().await
    }

    /// The records matching `filter`, and how many unreadable ones were skipped.
    pub async fn read(
        &self,
        filter: &AuditFilter,
    ) -> Result<(Vec<AuditRecord>, usize), AuditError> {
        self.store.read(filter).await
    }
}

/// The audit log as a JSON-lines file, shared by every run of the process.
#[derive(Debug)]
pub struct AuditFile {
    path: PathBuf,
    file: Mutex<File>,
    syncs: Arc<Syncs>,
}

/// Group fsync: one `sync_data` makes every append before it durable, so
/// runs ending together share one, and an fsync never holds up appends (it
/// runs on its own handle of the file, not under the append lock).
#[derive(Debug)]
struct Syncs {
    file: File,
    lock: Mutex<()>,
    appended: AtomicU64,
    synced: AtomicU64,
}

/// An audit log that cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[error("audit log {}", path.display())]
pub struct AuditError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: AuditCause,
}

/// What went wrong with the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditCause {
    /// The file could not be opened, written, synced or read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A record could not be encoded.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The store that keeps the records refused or could not be reached.
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

impl AuditFile {
    /// Opens (or creates) the file for appending.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| AuditError {
                path: path.to_owned(),
                source: e.into(),
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| AuditError {
                path: path.to_owned(),
                source: e.into(),
            })?;
        let syncs = Syncs {
            file: file.try_clone().map_err(|e| AuditError {
                path: path.to_owned(),
                source: e.into(),
            })?,
            lock: Mutex::new(()),
            appended: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        };
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            syncs: Arc::new(syncs),
        })
    }
}

#[async_trait::async_trait]
impl AuditStore for AuditFile {
    fn location(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a single write, so concurrent runs never
    /// interleave within a line; once written, it is in the kernel's hands.
    async fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError {
            path: self.path.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&line).map_err(|e| AuditError {
            path: self.path.clone(),
            source: e.into(),
        })?;
        // Counted while the append lock is held, so a sync that reads the count covers this line.
        self.syncs.appended.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Makes everything appended so far durable, on the blocking pool. A
    /// sync that another one, begun after these appends, already covered
    /// returns without its own.
    async fn sync(&self) -> Result<(), AuditError> {
        let syncs = self.syncs.clone();
        let synced = tokio::task::spawn_blocking(move || syncs.sync()).await;
        let failed = |source: AuditCause| AuditError {
            path: self.path.clone(),
            source,
        };
        match synced {
            Ok(done) => done.map_err(|e| failed(e.into())),
            Err(e) => Err(failed(AuditCause::Store(Box::new(e)))),
        }
    }

    async fn read(&self, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, usize), AuditError> {
        let (path, filter) = (self.path.clone(), filter.clone());
        match tokio::task::spawn_blocking(move || read(&path, &filter)).await {
            Ok(found) => found,
            Err(e) => Err(AuditError {
                path: self.path.clone(),
                source: AuditCause::Store(Box::new(e)),
            }),
        }
    }
}

impl Syncs {
    /// One `sync_data` covering every append counted before it.
    fn sync(&self) -> std::io::Result<()> {
        let wanted = self.appended.load(Ordering::SeqCst);
        let _one_at_a_time = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.synced.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        let covered = self.appended.load(Ordering::SeqCst);
        self.file.sync_data()?;
        self.synced.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }
}

/// Which records to read back.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this plugin.
    pub plugin: Option<String>,
    /// Only refused calls.
    pub denied: bool,
    /// Only this run.
    pub run_id: Option<String>,
}

impl AuditFilter {
    /// Whether `record` is one of those asked for.
    pub fn admits(&self, record: &AuditRecord) -> bool {
        self.plugin.as_ref().is_none_or(|p| **p == *record.plugin)
            && (!self.denied || !record.allowed)
            && self.run_id.as_ref().is_none_or(|r| **r == *record.run_id)
    }
}

/// Reads the records of the file at `path` matching `filter`. A line that is not a record (a torn
/// last line after a crash) is skipped and counted, never fatal.
pub fn read(path: &Path, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, usize), AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => {
            return Err(AuditError {
                path: path.to_owned(),
                source: e.into(),
            });
        }
    };
    let mut records = Vec::new();
    let mut skipped = 0;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| AuditError {
            path: path.to_owned(),
            source: e.into(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(record) = serde_json::from_str::<AuditRecord>(&line) else {
            skipped += 1;
            continue;
        };
        if filter.admits(&record) {
            records.push(record);
        }
    }
    Ok((records, skipped))
}
