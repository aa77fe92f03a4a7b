//! The audit log: one JSON line per host call, appended to a file as the
//! call finishes. The record type is in `levelhost-core`; this is the file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use levelhost_core::audit::AuditRecord;

/// Where audit records go: a JSON-lines file, shared by every run of the process.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
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
}

impl AuditLog {
    /// Opens (or creates) the log for appending.
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
            file: Arc::new(Mutex::new(file)),
            syncs: Arc::new(syncs),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a single write, so concurrent runs never interleave within a line.
    pub fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
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

    /// Makes everything appended so far durable. A sync that another one,
    /// begun after these appends, already covered returns without its own.
    pub fn sync(&self) -> Result<(), AuditError> {
        let syncs = &self.syncs;
        let wanted = syncs.appended.load(Ordering::SeqCst);
        let _one_at_a_time = syncs
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if syncs.synced.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        let covered = syncs.appended.load(Ordering::SeqCst);
        syncs.file.sync_data().map_err(|e| AuditError {
            path: self.path.clone(),
            source: e.into(),
        })?;
        syncs.synced.fetch_max(covered, Ordering::SeqCst);
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

/// Reads the records matching `filter`. A line that is not a record (a torn
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
        if filter.plugin.as_ref().is_some_and(|p| *p != record.plugin)
            || (filter.denied && record.allowed)
            || filter.run_id.as_ref().is_some_and(|r| *r != record.run_id)
        {
            continue;
        }
        records.push(record);
    }
    Ok((records, skipped))
}
