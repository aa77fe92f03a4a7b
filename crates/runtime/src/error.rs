//! Errors of the levelhost library.

use std::path::PathBuf;

/// Why a plugin could not be loaded or run. Each message says what failed
/// and where, so an operator can act on it without reading code.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The component file could not be read.
    #[error("cannot read plugin {path}")]
    ReadPlugin {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component wasmtime accepts.
    #[error("{name} is not a valid WebAssembly component")]
    InvalidComponent {
        /// The plugin's name or path.
        name: String,
        /// Why: wasmtime's error, or what the bytes are instead.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The component does not fit the `level:api` plugin world.
    #[error("{name} does not fit the level:api plugin world")]
    WorldMismatch {
        /// The plugin's name or path.
        name: String,
        /// Which import or export did not match (wasmtime's error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The run's input is not JSON.
    #[error("the input is not valid JSON")]
    InvalidInput(#[source] serde_json::Error),
    /// A grant's scope does not match Level (a missing group), or Level could not be asked.
    #[error("plugin {plugin}: {error}")]
    Scope {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        error: levelhost_core::grant::ScopeError,
    },
    /// Level could not be asked for its groups, to resolve a grant's group scope.
    #[error("plugin {plugin}: cannot list Level's groups to resolve the scope")]
    ScopeLookup {
        /// The plugin.
        plugin: String,
        /// Why Level did not answer.
        #[source]
        source: level_api::ClientError,
    },
    /// The audit log could not be written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A task of the host's own (an audit sync on the blocking pool) ended without an answer.
    #[error("a host task stopped")]
    Task(#[from] tokio::task::JoinError),
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {what}")]
    Engine {
        /// What could not be done.
        what: String,
        /// Why (wasmtime's error, or the system's).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl HostError {
    /// The engine could not do `what`, because of `source`.
    pub(crate) fn engine(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Engine {
            what: what.into(),
            source: source.into(),
        }
    }
}
