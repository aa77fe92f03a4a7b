//! levelhost's policy, with no I/O beyond reading a file, no async and no wasmtime:
//!
//! - [`capability`]: what a plugin may ask for (`devices:read`, `tags:write`, ...) and
//!   which WIT interface and operation each belongs to;
//! - [`grant`]: what an operator gives a plugin: capabilities, scopes and limits;
//! - [`gate::Gate`]: the one place that decides every call a plugin makes;
//! - [`manifest`]: reading `plugin.toml`;
//! - [`plan`]: dry-run plans, approval policies, and approved plans the gate holds a run to;
//! - [`location`]: errors that name a file, line and column;
//! - [`route`]: a grant's connections to other systems, their routes and request paths;
//! - [`audit`]: the record written for every host call.

pub mod audit;
pub mod capability;
pub mod gate;
pub mod grant;
pub mod location;
pub mod manifest;
pub mod plan;
pub mod route;

use sha2::{Digest, Sha256};

/// The digest levelhost names components, manifests and packages by: `sha256:<hex>`.
///
/// ```
/// assert_eq!(
///     levelhost_core::digest(b""),
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Shows an error with its causes, `outer: inner: innermost`, for logs and
/// records that hold text. (At the CLI edge anyhow's `{:#}` does the same.)
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// #[error("cannot read levelhost.toml")]
/// struct ReadConfig(#[source] std::io::Error);
///
/// let e = ReadConfig(std::io::Error::other("disk full"));
/// assert_eq!(
///     levelhost_core::Chain(&e).to_string(),
///     "cannot read levelhost.toml: disk full"
/// );
/// ```
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut shown = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Some errors repeat their cause in their own message: show it once.
            if !shown.ends_with(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            source = cause.source();
        }
        Ok(())
    }
}
