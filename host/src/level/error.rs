use crate::bindings::types::Error;

/// Error of a `level:api` host function: either a WIT `error` for the guest, or a host fault that traps.
#[derive(Debug)]
pub enum LevelError {
    /// Returned to the plugin.
    Guest(Error),
    /// Traps the plugin.
    Trap(wasmtime::Error),
}
