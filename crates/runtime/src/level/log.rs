//! `level:api/log`: bounded, structured plugin logs.

use crate::bindings::log::{Host, Level};

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message.
    pub message: String,
    /// Key/value fields.
    pub fields: Vec<(String, String)>,
}

/// Where a run's log lines go: kept with the run, and echoed to the host's
/// own log (stderr) as they arrive when `echo` is set. The total size is
/// bounded; a plugin that logs more ends its run.
#[derive(Debug, Default)]
pub struct LogSink {
    /// The lines kept.
    pub lines: Vec<LogLine>,
    /// Echo lines to the host's tracing output.
    pub echo: bool,
    /// Largest total size of messages and fields, in bytes.
    pub max_bytes: usize,
    /// Bytes logged so far.
    pub used: usize,
}

fn name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl Host for super::LevelCtx {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let bytes = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if self.log.used.saturating_add(bytes) > self.log.max_bytes {
            return Err(wasmtime::Error::new(super::LimitExceeded {
                limit: "max_log_kb",
                detail: format!("the plugin logged more than {} bytes", self.log.max_bytes),
            }));
        }
        self.log.used += bytes;
        let line = LogLine {
            level: name(level),
            message,
            fields,
        };
        if self.log.echo {
            let fields: String = line
                .fields
                .iter()
                .map(|(k, v)| format!(" {k}={v}"))
                .collect();
            match level {
                Level::Trace => tracing::trace!(target: "plugin", "{}{fields}", line.message),
                Level::Debug => tracing::debug!(target: "plugin", "{}{fields}", line.message),
                Level::Info => tracing::info!(target: "plugin", "{}{fields}", line.message),
                Level::Warn => tracing::warn!(target: "plugin", "{}{fields}", line.message),
                Level::Error => tracing::error!(target: "plugin", "{}{fields}", line.message),
            }
        }
        self.log.lines.push(line);
        Ok(())
    }
}
