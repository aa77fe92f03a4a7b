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
    #[error("{name} is not a valid WebAssembly component: {message}")]
    InvalidComponent {
        /// The plugin's name or path.
        name: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// The component does not fit the `level:api` plugin world.
    #[error("{name} does not fit the level:api plugin world: {message}")]
    WorldMismatch {
        /// The plugin's name or path.
        name: String,
        /// Which import or export did not match.
        message: String,
    },
    /// The run's input is not JSON.
    #[error("the input is not valid JSON: {0}")]
    InvalidInput(String),
    /// A grant's scope does not match Level (a missing group), or Level could not be asked.
    #[error("plugin {plugin}: {error}")]
    Scope {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        error: levelhost_core::grant::ScopeError,
    },
    /// The audit log could not be written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A task of the host's own (an audit sync on the blocking pool) ended without an answer.
    #[error("a host task stopped")]
    Task(#[from] tokio::task::JoinError),
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}
